//! [`TaskContext`]: what a running task may know and do about its own run.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::backend::{DEFAULT_RESULT_TTL, ResultBackend};
use crate::codec;
use crate::error::{Error, TaskError};
use crate::id::TaskId;
use crate::memory::InMemoryBackend;
use crate::state::{TaskMeta, TaskState};

/// Given to a task that takes `ctx: TaskContext` as its first parameter.
///
/// ```
/// use std::time::Duration;
/// use task_core::{task, TaskContext, TaskResult};
///
/// #[task]
/// async fn import(ctx: TaskContext, rows: u32) -> TaskResult<u32> {
///     for done in (0..=rows).step_by(100) {
///         ctx.set_progress(&(done, rows)).await?;
///     }
///     if ctx.attempt() < 2 && rows == 0 {
///         return Err(ctx.retry(Duration::from_secs(1))); // try again in 1 s
///     }
///     Ok(rows)
/// }
/// # fn main() {}
/// ```
#[derive(Clone)]
pub struct TaskContext {
    inner: Arc<Inner>,
}

struct Inner {
    id: TaskId,
    task: String,
    queue: String,
    retries: u32,
    max_retries: u32,
    worker: Option<String>,
    backend: Arc<dyn ResultBackend>,
    result_ttl: Duration,
    /// Raised at the soft time limit, or when the task is revoked with terminate.
    cancel: CancelSignal,
    /// The run has stored its progress: a `STARTED` written later would set the state
    /// back, so the worker leaves it to the run's end (see `started_after`).
    progressed: AtomicBool,
}

/// A run's cancel signal: raised at most once, read by the task any number of times.
/// It lives in the context itself: nothing to allocate per run, and nothing to notify
/// when a run ends without it (a watch channel did both, for every task).
#[derive(Default)]
struct CancelSignal {
    raised: AtomicBool,
    notify: tokio::sync::Notify,
}

impl TaskContext {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: TaskId,
        task: String,
        queue: String,
        retries: u32,
        max_retries: u32,
        worker: Option<String>,
        backend: Arc<dyn ResultBackend>,
        result_ttl: Duration,
    ) -> Self {
        let (cancel, progressed) = (CancelSignal::default(), AtomicBool::new(false));
        let inner = Inner { id, task, queue, retries, max_retries, worker, backend, result_ttl, cancel, progressed };
        Self { inner: Arc::new(inner) }
    }

    /// Asks the task to stop: [`is_cancelled`](Self::is_cancelled) turns true and
    /// [`cancelled`](Self::cancelled) completes. For the worker running it.
    pub(crate) fn cancel(&self) {
        self.inner.cancel.raised.store(true, Ordering::Release);
        self.inner.cancel.notify.notify_waiters();
    }

    /// A context for calling a task function directly, outside a worker (tests, scripts):
    /// a fresh id, first attempt, progress kept in a private in-memory backend.
    pub fn detached(task: &str) -> Self {
        Self::new(
            TaskId::new(),
            task.to_owned(),
            String::new(),
            0,
            0,
            None,
            Arc::new(InMemoryBackend::new()),
            DEFAULT_RESULT_TTL,
        )
    }

    /// The id of this run (the key of its result).
    pub fn id(&self) -> &TaskId {
        &self.inner.id
    }

    /// The registered task name.
    pub fn task_name(&self) -> &str {
        &self.inner.task
    }

    /// The queue it came from.
    pub fn queue(&self) -> &str {
        &self.inner.queue
    }

    /// Retries so far: 0 on the first run.
    pub fn retries(&self) -> u32 {
        self.inner.retries
    }

    /// The attempt number: 1 on the first run.
    pub fn attempt(&self) -> u32 {
        self.inner.retries + 1
    }

    /// How many retries this run may have in all.
    pub fn max_retries(&self) -> u32 {
        self.inner.max_retries
    }

    /// The id of the worker running it, if any.
    pub fn worker_id(&self) -> Option<&str> {
        self.inner.worker.as_deref()
    }

    /// True once the task is asked to stop: its soft time limit passed, or it was
    /// revoked with terminate. A long task checks it between steps and cleans up.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.raised.load(Ordering::Acquire)
    }

    /// Completes when the task is asked to stop (see [`is_cancelled`](Self::is_cancelled));
    /// never, outside a worker. Use it in a `tokio::select!` against the work.
    pub async fn cancelled(&self) {
        let signal = &self.inner.cancel;
        loop {
            // Listening before the check: a raise between the two still wakes it.
            let notified = signal.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Stores state `PROGRESS` with `meta`, which callers read with
    /// [`AsyncResult::progress`](crate::AsyncResult::progress).
    pub async fn set_progress<M: Serialize + ?Sized>(&self, meta: &M) -> Result<(), Error> {
        let progress = codec::encode(meta, "the progress meta")?;
        let update = TaskMeta {
            progress: Some(progress),
            task: Some(self.inner.task.clone()),
            ..TaskMeta::state(TaskState::Progress)
        };
        self.inner.progressed.store(true, Ordering::Release);
        self.inner.backend.store(&self.inner.id, update, self.inner.result_ttl).await?;
        Ok(())
    }

    /// Whether the run has stored (or is storing) its progress.
    pub(crate) fn has_progressed(&self) -> bool {
        self.inner.progressed.load(Ordering::Acquire)
    }

    /// An error that, returned from the task, retries it after exactly `countdown`
    /// (while retries remain), whatever the task's back-off says.
    pub fn retry(&self, countdown: Duration) -> TaskError {
        TaskError::retry_in(format!("retry requested by the task (in {countdown:?})"), countdown)
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("id", &self.inner.id)
            .field("task", &self.inner.task)
            .field("attempt", &self.attempt())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cancel_signal_reaches_waiters_before_and_after_it_is_raised() {
        let ctx = TaskContext::detached("t");
        assert!(!ctx.is_cancelled());
        // Never raised (as outside a worker): the wait does not end.
        assert!(tokio::time::timeout(Duration::from_millis(50), ctx.cancelled()).await.is_err());

        let waiting = tokio::spawn({
            let ctx = ctx.clone();
            async move { ctx.cancelled().await }
        });
        tokio::task::yield_now().await;
        ctx.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("a waiter wakes").unwrap();
        assert!(ctx.is_cancelled());
        // Raised already: a new wait ends at once.
        tokio::time::timeout(Duration::from_secs(5), ctx.cancelled()).await.expect("ends at once");
    }
}
