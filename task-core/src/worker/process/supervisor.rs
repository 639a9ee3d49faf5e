//! The supervisor of a process pool: starts `concurrency` children of this program,
//! kills one whose run is past its hard time limit, and replaces any that exits.
//!
//! It fetches nothing and runs nothing. What it does with a child's runs:
//! - a run with a hard limit is announced by the child; if it is not settled one
//!   [`KILL_GRACE`] after the limit (an `async fn` that never yields, a child that hangs),
//!   the child is killed and, once it is gone, the supervisor ends the run FAILURE "time
//!   limit exceeded" in the child's name, acks it and sends its workflow on, as the
//!   child would have;
//! - a run settled with its body still running (a plain `fn` past its limit: the child
//!   stored the FAILURE already) gets its child killed at once;
//! - whatever a child held when it exited goes back to its queue at once, counted.
//!
//! A child that exits is replaced at once (after a back-off if children at its place
//! keep dying before they report in), unless the pool is stopping or remote control
//! said shutdown, which stops the pool.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::wire::{self, Counts, ToChild, ToSupervisor, Why};
use super::{AfterExit, CHILD_ENV, SOCKET_ENV};
use crate::broker::ConsumerId;
use crate::error::Error;
use crate::message::Delivery;
use crate::worker::execute::Runner;
use crate::worker::{Worker, WorkerReport};

/// How long past its hard limit a run may take to be settled by its child before the
/// supervisor kills the child: the child ends a run that yields at the limit itself.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(1);

/// What happens to the children, as the supervisor hears of it.
#[derive(Debug)]
enum Event {
    /// A child reported in; the write half is how to tell it to stop.
    Connected(String, OwnedWriteHalf),
    /// A child said something.
    Said(String, ToSupervisor),
    /// A child's stream ended: all it said is in; `garbage` if it ended on a bad frame.
    Closed(String, bool),
    /// A child exited.
    Exited(String, std::io::Result<std::process::ExitStatus>),
}

/// How long an exited child's last frames may take to arrive after its exit is seen.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// A run the supervisor watches: announced with a hard limit, not settled yet.
#[derive(Debug)]
struct Watch {
    task: String,
    hard: Duration,
    started_ms: i64,
    began: Instant,
    deadline: Instant,
    delivery: Delivery,
}

/// A child the supervisor started.
#[derive(Debug)]
struct Child {
    id: ConsumerId,
    index: usize,
    pid: Option<u32>,
    to_child: Option<OwnedWriteHalf>,
    /// Said hello: its stream ends with a `Closed` event.
    connected: bool,
    /// Its stream ended.
    closed: bool,
    /// Said it is ready (its first heartbeat is in).
    ready: bool,
    /// Exited, and when to stop waiting for its last frames.
    exited: Option<(std::io::Result<std::process::ExitStatus>, Instant)>,
    kill: Option<oneshot::Sender<()>>,
    watch: Option<Watch>,
    bye: Option<(Why, Counts)>,
    /// Killed by the supervisor for a run past its limit, not yet settled.
    killed_for_limit: bool,
    /// Killed by the supervisor, for whatever reason.
    killed: bool,
    /// Told to stop by autoscale: not replaced.
    retiring: bool,
}

impl Child {
    /// Tells it to stop after its run (the stream then closes: that says it too).
    async fn tell_stop(&mut self) {
        if let Some(mut output) = self.to_child.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), wire::write(&mut output, &ToChild::Stop)).await;
        }
    }

    fn kill(&mut self) {
        self.killed = true;
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

/// The socket file, removed when the pool stops.
struct Socket(PathBuf);

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `worker` as a process pool until `signal` (or remote control's shutdown).
pub(crate) async fn run<F>(worker: Worker, signal: F) -> Result<WorkerReport, Error>
where
    F: std::future::Future<Output = ()> + Send,
{
    check(&worker)?;
    let socket = Socket(std::env::temp_dir().join(format!(
        "celerity-pool-{}-{}.sock",
        std::process::id(),
        &ConsumerId::new().as_str()[..8]
    )));
    let listener = UnixListener::bind(&socket.0)
        .map_err(|e| Error::Config(format!("cannot listen for pool children at {}: {e}", socket.0.display())))?;
    restrict(&socket.0);
    let exe = std::env::current_exe()
        .map_err(|e| Error::Config(format!("cannot find this program to start children: {e}")))?;
    let mut pool = Supervisor {
        worker,
        exe,
        args: std::env::args_os().skip(1).collect(),
        socket: socket.0.clone(),
        children: HashMap::new(),
        events: mpsc::unbounded_channel(),
        early: Vec::new(),
        starts: Vec::new(),
        total: WorkerReport::default(),
        stopping: None,
        scaling: None,
    };
    let accepting = tokio::spawn(accept(listener, pool.events.0.clone()));
    // `concurrency` places; with autoscale, `min` children to start with.
    let places = pool.worker.concurrency;
    pool.early = vec![0; places];
    let first = match pool.worker.autoscale {
        Some(((min, max), keepalive)) => {
            let now = Instant::now();
            pool.scaling = Some(Scaling { bounds: (min, max), keepalive, idle_since: now, next_check: now });
            min
        }
        None => places,
    };
    info!(children = first, places, queues = ?pool.worker.queues, "process pool starting");
    for index in 0..first {
        pool.start(index);
    }
    tokio::pin!(signal);
    let report = pool.supervise(&mut signal).await;
    accepting.abort();
    drop(socket);
    info!(report = ?report, "process pool stopped");
    Ok(report)
}

/// A pool needs a broker that its processes share, and a fixed size.
fn check(worker: &Worker) -> Result<(), Error> {
    worker.app.registry().check()?;
    if worker.queues.is_empty() || worker.queues.iter().any(|q| q.trim().is_empty()) {
        return Err(Error::Config(format!(
            "a worker needs at least one queue, and no empty queue name (got {:?})",
            worker.queues
        )));
    }
    if worker.app.broker_url().starts_with("memory:") {
        return Err(Error::Config(
            "the process pool needs a broker its processes share (redis://…): memory:// lives in one process".into(),
        ));
    }
    if worker.autoscale.is_some() && worker.app.broker().inspect().is_none() {
        return Err(Error::Config(
            "autoscale of a process pool reads the queues' backlog, which this broker does not show (Inspect)".into(),
        ));
    }
    Ok(())
}

/// Only this user may talk to the pool's socket.
fn restrict(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        warn!(error = %e, path = %path.display(), "cannot restrict the pool's socket to this user");
    }
}

/// Takes children's connections: reads each one's hello, then forwards what it says.
async fn accept(listener: UnixListener, events: mpsc::UnboundedSender<Event>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(listen(stream, events.clone()));
            }
            Err(e) => {
                warn!(error = %e, "cannot accept a pool child's connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn listen(stream: UnixStream, events: mpsc::UnboundedSender<Event>) {
    let (mut input, output) = stream.into_split();
    let id = match tokio::time::timeout(Duration::from_secs(10), wire::read(&mut input)).await {
        Ok(Ok(Some(ToSupervisor::Hello { id }))) => id,
        other => {
            warn!(got = ?other, "a connection to the pool's socket did not say hello; closed");
            return;
        }
    };
    let _ = events.send(Event::Connected(id.clone(), output));
    let garbage = loop {
        match wire::read(&mut input).await {
            Ok(Some(frame)) => {
                let _ = events.send(Event::Said(id.clone(), frame));
            }
            Ok(None) => break false,
            Err(e) => {
                warn!(child = %id, error = %e, "a pool child sent garbage; killing it");
                break true;
            }
        }
    };
    let _ = events.send(Event::Closed(id, garbage));
}

struct Supervisor {
    worker: Worker,
    exe: PathBuf,
    args: Vec<std::ffi::OsString>,
    socket: PathBuf,
    children: HashMap<String, Child>,
    events: (mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>),
    /// Per place: children in a row that died before they reported in.
    early: Vec<u32>,
    /// Places to start a child at, and when.
    starts: Vec<(Instant, usize)>,
    total: WorkerReport,
    /// Once stopping: when the children still running are killed.
    stopping: Option<Instant>,
    /// Autoscale, when asked for.
    scaling: Option<Scaling>,
}

/// Autoscale of a process pool: the same decision as the thread pool's
/// ([`decide::scale`](crate::worker::decide::scale)), on the backlog of its queues.
struct Scaling {
    bounds: (usize, usize),
    keepalive: Duration,
    /// Since when no message has waited in the pool's queues.
    idle_since: Instant,
    next_check: Instant,
}

/// How often autoscale looks at the backlog.
const SCALE_EVERY: Duration = Duration::from_millis(500);

impl Supervisor {
    async fn supervise<F>(&mut self, signal: &mut std::pin::Pin<&mut F>) -> WorkerReport
    where
        F: std::future::Future<Output = ()>,
    {
        let far = Instant::now() + crate::time::FAR;
        loop {
            if self.stopping.is_some() && self.children.is_empty() {
                return self.total;
            }
            let overdue = self
                .children
                .values()
                .filter(|c| !c.killed_for_limit && c.exited.is_none())
                .filter_map(|c| c.watch.as_ref().map(|w| w.deadline))
                .min();
            let start = self.starts.iter().map(|(at, _)| *at).min().filter(|_| self.stopping.is_none());
            let last_words = self.children.values().filter_map(|c| c.exited.as_ref().map(|(_, by)| *by)).min();
            let rescale = self.scaling.as_ref().map(|s| s.next_check).filter(|_| self.stopping.is_none());
            tokio::select! {
                biased;
                () = signal.as_mut(), if self.stopping.is_none() => {
                    info!("process pool: stopping the children");
                    self.stop_all().await;
                }
                Some(event) = self.events.1.recv() => self.on(event).await,
                () = tokio::time::sleep_until(overdue.unwrap_or(far)), if overdue.is_some() => self.kill_overdue(),
                () = tokio::time::sleep_until(start.unwrap_or(far)), if start.is_some() => self.start_due(),
                () = tokio::time::sleep_until(last_words.unwrap_or(far)), if last_words.is_some() => self.finish_overdue().await,
                () = tokio::time::sleep_until(rescale.unwrap_or(far)), if rescale.is_some() => self.rescale().await,
                () = tokio::time::sleep_until(self.stopping.unwrap_or(far)), if self.stopping.is_some() => {
                    warn!(still_running = self.children.len(), "process pool: grace period over; killing the children left");
                    for child in self.children.values_mut() {
                        child.kill();
                    }
                    self.stopping = Some(far);
                }
            }
        }
    }

    /// Starts a child at place `index`; on failure, tries again later.
    fn start(&mut self, index: usize) {
        let id = ConsumerId::new();
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .args(&self.args)
            .env(SOCKET_ENV, &self.socket)
            .env(CHILD_ENV, format!("{id}/{index}"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut process = match command.spawn() {
            Ok(process) => process,
            Err(e) => {
                error!(error = %e, program = %self.exe.display(), "cannot start a pool child; trying again");
                self.early[index] = self.early[index].saturating_add(1);
                self.starts.push((Instant::now() + super::restart_delay(self.early[index]), index));
                return;
            }
        };
        let pid = process.id();
        let (kill, killed) = oneshot::channel::<()>();
        let events = self.events.0.clone();
        let key = id.to_string();
        tokio::spawn({
            let key = key.clone();
            async move {
                let status = tokio::select! {
                    status = process.wait() => status,
                    Ok(()) = killed => {
                        let _ = process.start_kill();
                        process.wait().await
                    }
                };
                let _ = events.send(Event::Exited(key, status));
            }
        });
        info!(child = %id, pid, index, "pool child started");
        let child = Child {
            id,
            index,
            pid,
            to_child: None,
            connected: false,
            closed: false,
            ready: false,
            exited: None,
            kill: Some(kill),
            watch: None,
            bye: None,
            killed_for_limit: false,
            killed: false,
            retiring: false,
        };
        self.children.insert(key, child);
    }

    /// The children that count toward the pool's size: live and not retiring, or due to
    /// start.
    fn size(&self) -> usize {
        let live = self.children.values().filter(|c| !c.retiring && c.exited.is_none()).count();
        live + self.starts.len()
    }

    /// Autoscale: grows the pool at once by the backlog of its queues (up to `max`),
    /// retires one child after the queues stayed empty for the keepalive (down to `min`).
    async fn rescale(&mut self) {
        let Some(scaling) = self.scaling.as_mut() else { return };
        scaling.next_check = Instant::now() + SCALE_EVERY;
        let Some(inspect) = self.worker.app.broker().inspect() else { return };
        let mut waiting = 0;
        for queue in &self.worker.queues {
            match inspect.queue_stats(queue).await {
                Ok(stats) => waiting += stats.ready,
                Err(e) => {
                    warn!(error = %e, queue, "autoscale cannot read the backlog");
                    return;
                }
            }
        }
        let current = self.size();
        let Some(scaling) = self.scaling.as_mut() else { return };
        if waiting > 0 {
            scaling.idle_since = Instant::now();
        }
        let (bounds, keepalive, idle_for) = (scaling.bounds, scaling.keepalive, scaling.idle_since.elapsed());
        let target = crate::worker::decide::scale(current, bounds, waiting, idle_for, keepalive);
        if target == current {
            return;
        }
        info!(from = current, to = target, waiting, "autoscale: the process pool resized");
        scaling.idle_since = Instant::now();
        for _ in current..target {
            let used: Vec<usize> = self
                .children
                .values()
                .filter(|c| c.exited.is_none())
                .map(|c| c.index)
                .chain(self.starts.iter().map(|(_, i)| *i))
                .collect();
            if let Some(index) = super::free_place(&used, self.early.len()) {
                self.start(index);
            }
        }
        for _ in target..current {
            self.retire_one().await;
        }
    }

    /// Tells one child to stop after its run, for good.
    async fn retire_one(&mut self) {
        let Some(child) =
            self.children.values_mut().find(|c| !c.retiring && c.exited.is_none() && c.to_child.is_some())
        else {
            return;
        };
        child.retiring = true;
        child.tell_stop().await;
    }

    fn start_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.starts.drain(..).partition(|(at, _)| *at <= now);
        self.starts = later;
        for (_, index) in due {
            self.start(index);
        }
    }

    async fn on(&mut self, event: Event) {
        match event {
            Event::Connected(id, output) => {
                let stopping = self.stopping.is_some();
                let Some(child) = self.children.get_mut(&id) else { return };
                if child.connected {
                    // A second hello with the same id: not our child (a process it
                    // started, with its environment). Dropping the stream closes it.
                    warn!(child = %id, "a second connection in the name of a pool child; refused");
                    return;
                }
                child.connected = true;
                // Stopping already: closing the stream tells it to stop.
                if !stopping {
                    child.to_child = Some(output);
                }
            }
            Event::Said(id, frame) => {
                let Some(child) = self.children.get_mut(&id) else { return };
                match frame {
                    ToSupervisor::Hello { .. } => {}
                    ToSupervisor::Ready => {
                        child.ready = true;
                        self.early[child.index] = 0;
                    }
                    ToSupervisor::Started { task, hard_ms, started_ms, delivery } => {
                        let (hard, began) = (Duration::from_millis(hard_ms), Instant::now());
                        let deadline = began + hard.min(crate::time::FAR) + KILL_GRACE;
                        let delivery = delivery.into();
                        child.watch = Some(Watch { task, hard, started_ms, began, deadline, delivery });
                    }
                    ToSupervisor::Ran { task } => {
                        if child.watch.as_ref().is_some_and(|w| w.task == task) {
                            child.watch = None;
                        }
                    }
                    ToSupervisor::Stranded { task } => {
                        warn!(child = %child.id, pid = child.pid, task = %task, "a plain `fn` runs on past its hard time limit: killing its child");
                        child.kill();
                    }
                    ToSupervisor::Bye { why, report } => child.bye = Some((why, report)),
                }
            }
            Event::Closed(id, garbage) => {
                let Some(child) = self.children.get_mut(&id) else { return };
                child.closed = true;
                if garbage {
                    child.kill();
                }
                if child.exited.is_some() {
                    self.finish(&id).await;
                }
            }
            Event::Exited(id, status) => {
                let Some(child) = self.children.get_mut(&id) else { return };
                // Its last frames (a Bye, a Ran) may still be on their way: a child is
                // done with once its stream has ended too, or after a short wait.
                let wait = child.connected && !child.closed;
                child.exited = Some((status, Instant::now() + LAST_WORDS));
                if !wait {
                    self.finish(&id).await;
                }
            }
        }
    }

    /// Done with child `id`: it exited and all it said is in.
    async fn finish(&mut self, id: &str) {
        if let Some(mut child) = self.children.remove(id)
            && let Some((status, _)) = child.exited.take()
        {
            self.exited(child, status).await;
        }
    }

    /// Done with the exited children whose last frames are overdue.
    async fn finish_overdue(&mut self) {
        let now = Instant::now();
        let overdue: Vec<String> = self
            .children
            .iter()
            .filter(|(_, c)| c.exited.as_ref().is_some_and(|(_, by)| *by <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in overdue {
            self.finish(&id).await;
        }
    }

    /// Kills the children whose watched run is past its limit and grace.
    fn kill_overdue(&mut self) {
        let now = Instant::now();
        for child in self.children.values_mut() {
            let Some(watch) = &child.watch else { continue };
            if child.killed_for_limit || child.exited.is_some() || watch.deadline > now {
                continue;
            }
            warn!(child = %child.id, pid = child.pid, task = %watch.task, limit = ?watch.hard, "a run is past its hard time limit: killing its child (SIGKILL)");
            child.killed_for_limit = true;
            child.kill();
        }
    }

    /// Tells every child to stop; those not gone when the grace period ends are killed.
    async fn stop_all(&mut self) {
        self.stopping = Some(Instant::now() + self.worker.grace_period + KILL_GRACE * 5);
        self.starts.clear();
        for child in self.children.values_mut() {
            child.tell_stop().await;
        }
    }

    /// A child is gone: ends the run it was killed for, returns what it held, and
    /// replaces it (or not).
    async fn exited(&mut self, mut child: Child, status: std::io::Result<std::process::ExitStatus>) {
        let app = self.worker.app.clone();
        let runner = Runner::new(app.clone(), child.id.clone());
        if child.killed_for_limit
            && let Some(watch) = child.watch.take()
        {
            let runtime_ms = u64::try_from(watch.began.elapsed().as_millis()).unwrap_or(u64::MAX);
            runner.end_killed(&watch.delivery, watch.hard, watch.started_ms, runtime_ms).await;
        }
        match app.broker().recover_consumer(&child.id).await {
            Ok(recovery) => {
                if recovery.moved > 0 {
                    info!(child = %child.id, recovered = recovery.moved, "returned the messages of an exited pool child to their queues");
                }
                for letter in &recovery.buried {
                    runner.end_buried(letter).await;
                }
            }
            Err(e) => {
                warn!(child = %child.id, error = %e, "cannot return an exited child's messages now; they return when its heartbeat expires");
            }
        }
        let why = child.bye.map(|(why, _)| why);
        if let Some((_, counts)) = child.bye {
            counts.add_to(&mut self.total);
        }
        wire::Counts::from(runner.counters.report()).add_to(&mut self.total);
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        match why {
            Some(why) => info!(child = %child.id, pid = child.pid, ?why, %status, "pool child stopped"),
            None if child.killed => info!(child = %child.id, pid = child.pid, %status, "pool child killed"),
            None => warn!(child = %child.id, pid = child.pid, %status, "pool child died"),
        }
        // A retired child's place stays empty.
        match super::after_exit(self.stopping.is_some() || child.retiring, why) {
            AfterExit::Gone => {}
            AfterExit::StopPool => {
                info!("process pool: shutting down, asked by remote control");
                self.stop_all().await;
            }
            AfterExit::Replace => {
                let index = child.index;
                // Dead before it was ready: the program cannot start (a bad setting, a
                // broker it cannot reach), and will not start at once either.
                let early = !child.ready;
                self.early[index] = if early { self.early[index].saturating_add(1) } else { 0 };
                if self.early[index] > 0 {
                    warn!(index, tries = self.early[index], "pool children keep dying at start-up; backing off");
                }
                self.starts.push((Instant::now() + super::restart_delay(self.early[index]), index));
            }
        }
    }
}
