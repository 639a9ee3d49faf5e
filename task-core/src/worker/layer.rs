//! Code around every task run, in the manner of tower's layers (and of Celery's
//! `task_prerun` / `task_postrun` / `task_success` / `task_failure` / `task_retry`
//! signals): a [`TaskLayer`] gets the run and the rest of the chain ([`Next`]), may work
//! before and after it (open a transaction, set a task-local context, time it), and
//! sees how it ended ([`Outcome`]). Layers run in the order they were added, the first
//! outermost.

use std::fmt;
use std::sync::Arc;

use crate::future::BoxFuture;
use crate::id::TaskId;

use super::decide::Failure;

/// The run a layer wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Run {
    /// The registered task name.
    pub task: String,
    /// The task id.
    pub id: TaskId,
    /// 1 on the first run, more after retries.
    pub attempt: u32,
    /// The queue it came from.
    pub queue: String,
}

/// How a run ended, as a layer sees it (the worker decides what follows: a retry, the
/// dead letters, the result's store).
pub struct Outcome(pub(super) Result<Vec<u8>, Failure>);

impl Outcome {
    /// True when the task returned its value.
    pub fn succeeded(&self) -> bool {
        self.0.is_ok()
    }

    /// The error's text when it did not: the task's error, a panic, a time limit, a
    /// terminate.
    pub fn error(&self) -> Option<String> {
        match &self.0 {
            Ok(_) => None,
            Err(Failure::Task(e)) => Some(e.message().to_owned()),
            Err(Failure::Panic(text)) => Some(format!("task panicked: {text}")),
            Err(Failure::TimeLimit(limit)) => Some(format!("time limit exceeded ({limit:?})")),
            Err(Failure::Terminated) => Some("terminated".to_owned()),
        }
    }

    /// True when the task asked to be retried (a retryable error; the worker retries it
    /// while retries remain).
    pub fn wants_retry(&self) -> bool {
        matches!(&self.0, Err(Failure::Task(e)) if !e.is_fatal())
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error() {
            None => f.write_str("Outcome::Succeeded"),
            Some(error) => write!(f, "Outcome::Failed({error})"),
        }
    }
}

/// The rest of the chain: the next layers, then the task's body.
pub struct Next<'a>(BoxFuture<'a, Outcome>);

impl Next<'_> {
    /// Runs the rest of the chain to its end.
    pub async fn run(self) -> Outcome {
        self.0.await
    }
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Next")
    }
}

/// Code around every task run: call `next.run()` once, and return what it gave.
pub trait TaskLayer: Send + Sync + 'static {
    /// Wraps the run `run`.
    fn call<'a>(&'a self, run: &'a Run, next: Next<'a>) -> BoxFuture<'a, Outcome>;
}

/// The layers of a worker, the first outermost, and its start and stop hooks (Celery's
/// `worker_ready` and `worker_shutdown`).
#[derive(Clone, Default)]
pub(crate) struct Layers(pub(crate) Vec<Arc<dyn TaskLayer>>, pub(crate) Vec<ReadyHook>, pub(crate) Vec<ShutdownHook>);

/// Called when a worker is ready, with what it announces.
pub(crate) type ReadyHook = Arc<dyn Fn(&crate::capability::WorkerInfo) + Send + Sync>;
/// Called when a worker has stopped, with its report.
pub(crate) type ShutdownHook = Arc<dyn Fn(&super::WorkerReport) + Send + Sync>;

impl fmt::Debug for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} layers, {} ready hooks, {} shutdown hooks", self.0.len(), self.1.len(), self.2.len())
    }
}

/// `body` inside `layers`, the first outermost.
pub(super) fn wrap<'a>(
    layers: &'a [Arc<dyn TaskLayer>],
    run: &'a Run,
    body: BoxFuture<'a, Outcome>,
) -> BoxFuture<'a, Outcome> {
    match layers.split_first() {
        None => body,
        Some((outer, inner)) => outer.call(run, Next(wrap(inner, run, body))),
    }
}
