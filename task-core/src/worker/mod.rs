//! The worker pool: fetch → decode → look up → run → store → ack.
//!
//! - [`Worker`] is the builder (`app.worker().concurrency(8).queues(["a"])`).
//! - `pool` is the fetch loop: batches up to the prefetch, heartbeats and recovery,
//!   graceful shutdown; `inbox` holds what was fetched for the `concurrency` slots.
//! - `decide` holds the decisions as pure functions: may a delivery run, what does a
//!   run's end mean, and what is to be done about it.
//! - `execute` carries them out for one delivery: claim, run (`body`: the task's
//!   future, panics caught), store, hand on to a workflow, ack, retry or dead-letter.

mod body;
mod control;
mod decide;
mod eager;
mod execute;
mod inbox;
mod layer;
mod pool;
mod process;
mod tuning;
mod unrunnable;

pub use layer::{Next, Outcome, Run, TaskLayer};
pub use process::{Pool, is_pool_child};

use std::future::Future;
use std::time::Duration;

use crate::app::App;
use crate::broker::ConsumerId;
use crate::error::Error;

/// How long autoscale waits with idle slots before it gives one back, unless told.
pub const DEFAULT_AUTOSCALE_KEEPALIVE: Duration = Duration::from_secs(30);

/// A worker's name when nothing else says: `celery@` and the host name.
pub const DEFAULT_NODE_NAME: &str = "celery@%h";

/// `pattern` with `%h` (host), `%n` (its first label), `%d` (its domain) and `%%`
/// expanded for `host`; anything else is kept as written.
pub(crate) fn node_name(pattern: &str, host: &str) -> String {
    let (first, domain) = host.split_once('.').unwrap_or((host, ""));
    let mut out = String::with_capacity(pattern.len() + host.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(host),
            Some('n') => out.push_str(first),
            Some('d') => out.push_str(domain),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::node_name;

    #[test]
    fn node_names_expand_the_host_as_celery_does() {
        assert_eq!(node_name("celery@%h", "box.example.org"), "celery@box.example.org");
        assert_eq!(node_name("w1@%n", "box.example.org"), "w1@box");
        assert_eq!(node_name("%n-%d", "box.example.org"), "box-example.org");
        assert_eq!(node_name("%d", "box"), "");
        assert_eq!(node_name("100%% %x %", "h"), "100% %x %");
    }
}

/// How long a worker's heartbeat lives when nothing else says.
pub const DEFAULT_HEARTBEAT_TTL: Duration = Duration::from_secs(10);
/// How long running tasks may finish after shutdown begins, when nothing else says.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// A pool of task runners on one [`App`]. Made by [`App::worker`].
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), task_core::Error> {
/// let app = task_core::App::memory();
/// let report = app
///     .worker()
///     .concurrency(8)
///     .queues(["default", "math"])
///     .run_until(tokio::time::sleep(Duration::from_millis(50))) // any future: ctrl-c, a channel, …
///     .await?;
/// assert_eq!(report.succeeded, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Worker {
    pub(crate) app: App,
    pub(crate) id: ConsumerId,
    pub(crate) concurrency: usize,
    pub(crate) prefetch: Option<usize>,
    pub(crate) queues: Vec<String>,
    pub(crate) grace_period: Duration,
    pub(crate) heartbeat_ttl: Duration,
    pub(crate) fetch_wait: Duration,
    pub(crate) name: String,
    pub(crate) layers: layer::Layers,
    /// `(min, max)` slots, and how long slots stay idle before one is given back.
    pub(crate) autoscale: Option<((usize, usize), Duration)>,
    pub(crate) pool: Pool,
    pub(crate) max_tasks_per_child: Option<u64>,
    /// In KiB, as Celery's.
    pub(crate) max_memory_per_child: Option<u64>,
    /// Set in a process pool's child: its reports to the supervisor.
    pub(crate) link: Option<std::sync::Arc<process::Link>>,
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Tasks that ended `SUCCESS`.
    pub succeeded: u64,
    /// Tasks that ended `FAILURE` (errors after their retries, panics, time limits).
    pub failed: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Tasks not run or stopped: revoked, expired, or terminated.
    pub revoked: u64,
    /// Starts deferred to a later slot by a rate limit.
    pub rate_limited: u64,
    /// Messages sent to the dead letters (undecodable, unknown task, bad arguments).
    pub dead_lettered: u64,
    /// Unstarted messages given back to the broker at shutdown.
    pub released: u64,
    /// State writes refused: fenced (another worker took the task over), or over a final
    /// state (the task was revoked while it ran).
    pub refused: u64,
}

impl App {
    /// A worker pool for this app (configure it, then `run_until`).
    pub fn worker(&self) -> Worker {
        Worker::new(self.clone())
    }
}

impl Worker {
    pub(crate) fn new(app: App) -> Self {
        let default_queue = app.default_queue().to_owned();
        Self {
            app,
            id: ConsumerId::new(),
            concurrency: std::thread::available_parallelism().map_or(4, |n| n.get()),
            prefetch: None,
            queues: vec![default_queue],
            grace_period: DEFAULT_GRACE_PERIOD,
            heartbeat_ttl: DEFAULT_HEARTBEAT_TTL,
            fetch_wait: Duration::from_secs(5),
            name: node_name(DEFAULT_NODE_NAME, &crate::host::hostname()),
            layers: layer::Layers::default(),
            autoscale: None,
            pool: Pool::Threads,
            max_tasks_per_child: None,
            max_memory_per_child: None,
            link: None,
        }
    }

    /// How tasks run: [`Pool::Threads`] (the default) or [`Pool::Process`] (Celery's
    /// prefork, Unix): `concurrency` child processes of this program, started again with
    /// the same arguments, each a worker of one slot with its own id and heartbeat.
    /// A child whose run is past its hard time limit is killed (SIGKILL) and the run
    /// ends `FAILURE`; a child that exits is replaced at once and its message returns
    /// to its queue at once. Needs a broker the processes share (`redis://`). Code
    /// before the worker in `main` runs in every child too ([`is_pool_child`] tells).
    pub fn pool(mut self, pool: Pool) -> Self {
        self.pool = pool;
        self
    }

    /// In a process pool, a child gives its place to a fresh one after `n` tasks
    /// (Celery's `--max-tasks-per-child`): what leaks is given back.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n.max(1));
        self
    }

    /// In a process pool, a child whose resident memory is over `kib` KiB after a task
    /// gives its place to a fresh one (Celery's `--max-memory-per-child`; the task
    /// that went over completes first). Read from `/proc` (Linux).
    pub fn max_memory_per_child(mut self, kib: u64) -> Self {
        self.max_memory_per_child = Some(kib.max(1));
        self
    }

    /// Autoscale (Celery's `--autoscale MAX,MIN`): run `min` slots, grow at once toward
    /// `max` while messages wait for a slot, give one back after slots stayed idle for
    /// the keepalive (30 s; [`autoscale_keepalive`](Self::autoscale_keepalive)). The
    /// prefetch defaults to `max`. `celerity status` shows the current concurrency.
    pub fn autoscale(mut self, max: usize, min: usize) -> Self {
        let (min, max) = (min.max(1), max.max(min.max(1)));
        let keepalive = self.autoscale.map_or(DEFAULT_AUTOSCALE_KEEPALIVE, |(_, k)| k);
        self.autoscale = Some(((min, max), keepalive));
        self.concurrency = max;
        self
    }

    /// How long autoscale waits with idle slots before it gives one back.
    pub fn autoscale_keepalive(mut self, keepalive: Duration) -> Self {
        if let Some((bounds, _)) = self.autoscale {
            self.autoscale = Some((bounds, keepalive));
        }
        self
    }

    /// Calls `hook` once the worker is ready, before it takes its first message
    /// (Celery's `worker_ready`), with what it announces of itself.
    pub fn on_ready(mut self, hook: impl Fn(&crate::capability::WorkerInfo) + Send + Sync + 'static) -> Self {
        self.layers.1.push(std::sync::Arc::new(hook));
        self
    }

    /// Calls `hook` once the worker has stopped (Celery's `worker_shutdown`), with its
    /// report.
    pub fn on_shutdown(mut self, hook: impl Fn(&WorkerReport) + Send + Sync + 'static) -> Self {
        self.layers.2.push(std::sync::Arc::new(hook));
        self
    }

    /// Adds `layer` around every task run of this worker (see [`TaskLayer`]); layers
    /// run in the order added, the first outermost.
    pub fn layer(mut self, layer: impl TaskLayer) -> Self {
        self.layers.0.push(std::sync::Arc::new(layer));
        self
    }

    /// The name people see for this worker in `celerity status` and the dashboard
    /// (its id stays a UUID): `%h` is the host name, `%n` its first label, `%d` the
    /// rest (the domain), `%%` a `%`. Default `celery@%h`, as Celery's.
    pub fn name(mut self, name: &str) -> Self {
        self.name = node_name(name, &crate::host::hostname());
        self
    }

    /// The name given with [`name`](Self::name), expanded.
    pub fn node_name(&self) -> &str {
        &self.name
    }

    /// At most `n` tasks run at once (default: the number of CPUs; at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// At most `n` messages held at once, running or waiting for a slot
    /// (default: the concurrency; never below it).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = Some(n);
        self
    }

    /// The queues to consume, in order of preference (default: the app's default queue).
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// How long running tasks may finish once shutdown begins (default 30 s); tasks
    /// still running then are aborted and their messages go back to the queue.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// How long this worker's heartbeat lives (default 10 s; sent every third of it).
    /// A worker silent for longer is taken for dead and its messages are recovered.
    pub fn heartbeat_ttl(mut self, ttl: Duration) -> Self {
        self.heartbeat_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// This worker's unique id.
    pub fn id(&self) -> &ConsumerId {
        &self.id
    }

    /// The queues it consumes.
    pub fn queue_names(&self) -> &[String] {
        &self.queues
    }

    /// Its concurrency.
    pub fn concurrency_limit(&self) -> usize {
        self.concurrency
    }

    /// Runs until `signal` completes, then shuts down gracefully: stops fetching,
    /// gives back what it holds but has not started, lets running tasks finish within
    /// the grace period. Fails at once if two tasks share a name or the queue list is
    /// empty.
    pub async fn run_until<F>(self, signal: F) -> Result<WorkerReport, Error>
    where
        F: Future<Output = ()> + Send,
    {
        #[cfg(unix)]
        if let Some((id, index, socket)) = process::child_env() {
            return process::child::run(self, id, index, &socket, signal).await;
        }
        match self.pool {
            Pool::Threads => pool::run(self, signal).await.map(|(report, _)| report),
            #[cfg(unix)]
            Pool::Process => process::supervisor::run(self, signal).await,
            #[cfg(not(unix))]
            Pool::Process => Err(Error::Config("the process pool needs Unix (signals and Unix sockets)".into())),
        }
    }

    /// Runs on a tokio task of its own (embedded in a service, a test, a script) until
    /// [`WorkerHandle::shutdown`]. Call it inside a tokio runtime.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), task_core::Error> {
    /// let app = task_core::App::memory();
    /// let worker = app.worker().concurrency(4).spawn();
    /// // … enqueue, serve requests …
    /// let report = worker.shutdown().await?; // graceful: running tasks finish
    /// assert_eq!(report.failed, 0);
    /// # Ok(()) }
    /// ```
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let id = self.id.clone();
        let task = tokio::spawn(self.run_until(async {
            // A dropped handle also stops the worker, gracefully.
            let _ = stopped.await;
        }));
        WorkerHandle { id, stop, task }
    }
}

/// A worker running on its own tokio task; made by [`Worker::spawn`]. Dropping it stops
/// the worker gracefully in the background.
#[derive(Debug)]
pub struct WorkerHandle {
    id: ConsumerId,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<WorkerReport, Error>>,
}

impl WorkerHandle {
    /// The worker's unique id.
    pub fn id(&self) -> &ConsumerId {
        &self.id
    }

    /// True once the worker has stopped (after a shutdown, or an error at start-up).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops fetching, lets running tasks finish within the grace period, and returns
    /// what the worker did (or why it could not run).
    pub async fn shutdown(self) -> Result<WorkerReport, Error> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(result) => result,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(join) => Err(Error::Config(format!("the worker task was cancelled: {join}"))),
        }
    }
}
