//! A process pool's child: a worker of one slot that reports to its supervisor.
//!
//! It connects to the supervisor's socket and says who it is; runs with a hard time
//! limit are announced as they start and as they are settled, so that the supervisor
//! knows when to kill it; after each run it checks `max_tasks_per_child` and
//! `max_memory_per_child`. It stops on its own signal, when the supervisor says so or
//! goes away (no orphan outlives its pool), when it should be recycled, or on
//! `celerity control shutdown`; it says why, then returns as a worker returns.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{info, warn};

use super::wire::{self, ToChild, ToSupervisor, Why};
use crate::error::Error;
use crate::id::TaskId;
use crate::message::Delivery;
use crate::worker::{Worker, WorkerReport};

/// How long a report to the supervisor may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The child's side of its runs, held by the runner.
///
/// Frames are written at once, blocking, from the thread of the run that sends them:
/// a task that never yields may block that runtime thread right after, and a frame
/// left to another task of the runtime might never go out.
#[derive(Debug)]
pub(crate) struct Link {
    socket: Mutex<UnixStream>,
    done: AtomicU64,
    max_tasks: Option<u64>,
    max_memory_kib: Option<u64>,
    /// Raised when the child should stop taking work, with why.
    recycle: Notify,
    why: Mutex<Option<Why>>,
}

impl Link {
    fn send(&self, frame: &ToSupervisor) {
        let mut socket = self.socket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = wire::write_blocking(&mut *socket, frame) {
            warn!(error = %e, "cannot report to the pool's supervisor");
        }
    }

    /// A run with hard limit `hard` starts on `delivery`.
    pub(crate) fn started(&self, task: &TaskId, hard: Duration, delivery: &Delivery) {
        let hard_ms = u64::try_from(hard.as_millis()).unwrap_or(u64::MAX);
        self.send(&ToSupervisor::Started {
            task: task.to_string(),
            hard_ms,
            started_ms: crate::time::now_ms(),
            delivery: delivery.into(),
        });
    }

    /// A run's body ended: `watched`, it was announced by [`started`](Self::started),
    /// and the supervisor no longer waits to kill for it. Sent before the run is
    /// settled, so that a slow store cannot get a run that did end killed.
    pub(crate) fn ran(&self, task: &TaskId, watched: bool) {
        if watched {
            self.send(&ToSupervisor::Ran { task: task.to_string() });
        }
    }

    /// A run is settled (stored, acked); `stranded`: its body still runs. Decides
    /// whether the child takes more work.
    pub(crate) fn settled(&self, task: &TaskId, stranded: bool) {
        if stranded {
            self.send(&ToSupervisor::Stranded { task: task.to_string() });
        }
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let rss = self.max_memory_kib.and_then(|_| super::resident_kib());
        let why =
            if stranded { Some(Why::Stranded) } else { super::recycle(done, self.max_tasks, rss, self.max_memory_kib) };
        if let Some(why) = why {
            self.why.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(why);
            self.recycle.notify_one();
        }
    }
}

/// Runs `worker` as child `index` of the pool at `socket`, in the name of `id`.
pub(crate) async fn run<F>(
    mut worker: Worker,
    id: String,
    index: usize,
    socket: &Path,
    signal: F,
) -> Result<WorkerReport, Error>
where
    F: std::future::Future<Output = ()> + Send,
{
    let stream = connect(socket).await?;
    // A supervisor that stopped reading must not hang a run that reports to it.
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let input = stream.try_clone().map_err(|e| Error::Config(format!("cannot read from the pool's socket: {e}")))?;
    // The supervisor says stop, or goes away: either way this child stops. A thread
    // of its own waits for that, whatever the runtime is busy with; if the child has
    // not ended by itself well after the grace period (a task that never yields, its
    // supervisor killed and no one left to kill it), the thread ends the process.
    let told = Arc::new(Notify::new());
    {
        let told = told.clone();
        let deadline = worker.grace_period + WRITE_TIMEOUT * 2;
        let spawned = std::thread::Builder::new().name("celerity-pool-child".into()).spawn(move || {
            let mut input = input;
            // Stop is the one thing it says.
            if let Err(e) = wire::read_blocking::<_, ToChild>(&mut input) {
                warn!(error = %e, "the pool's supervisor sent garbage; stopping");
            }
            told.notify_one();
            std::thread::sleep(deadline);
            warn!(after = ?deadline, "this pool child did not stop after its supervisor left; exiting");
            std::process::exit(1);
        });
        spawned.map_err(|e| Error::Config(format!("cannot start the pool child's listener thread: {e}")))?;
    }

    let link = Arc::new(Link {
        socket: Mutex::new(stream),
        done: AtomicU64::new(0),
        max_tasks: worker.max_tasks_per_child,
        max_memory_kib: worker.max_memory_per_child,
        recycle: Notify::new(),
        why: Mutex::default(),
    });
    link.send(&ToSupervisor::Hello { id: id.clone() });
    worker.id = crate::id::ConsumerId::from(id);
    worker.name = super::child_name(&worker.name, index);
    // One task at a time, nothing fetched ahead: a kill takes one run and no more.
    (worker.concurrency, worker.prefetch, worker.autoscale) = (1, Some(1), None);
    worker.link = Some(link.clone());
    // Ready once its first heartbeat is in: a child that cannot get there is restarted
    // with a back-off, not in a loop.
    let ready = link.clone();
    worker = worker.on_ready(move |_| ready.send(&ToSupervisor::Ready));

    let stopped_by = Arc::new(Mutex::new(Why::Signal));
    let stop = {
        let (stopped_by, link) = (stopped_by.clone(), link.clone());
        async move {
            let why = tokio::select! {
                () = signal => Why::Signal,
                () = told.notified() => Why::Supervisor,
                () = link.recycle.notified() => {
                    link.why.lock().unwrap_or_else(std::sync::PoisonError::into_inner).unwrap_or(Why::MaxTasks)
                }
            };
            *stopped_by.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = why;
        }
    };
    let (report, remote) = crate::worker::pool::run(worker, stop).await?;
    let why = if remote { Why::Remote } else { *stopped_by.lock().unwrap_or_else(std::sync::PoisonError::into_inner) };
    info!(?why, "pool child stopping");
    link.send(&ToSupervisor::Bye { why, report: report.into() });
    Ok(report)
}

/// Connects to the supervisor's socket (it listens before it starts any child; a
/// few tries cover a slow start).
async fn connect(socket: &Path) -> Result<UnixStream, Error> {
    let mut last = None;
    for _ in 0..50 {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = last.map_or_else(String::new, |e| e.to_string());
    Err(Error::Config(format!(
        "this process was started as a pool child, but cannot reach its supervisor at {}: {e}",
        socket.display()
    )))
}
