//! [`Signature`]: a task call with its arguments and per-call options, not yet sent.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::app::App;
use crate::broker::{MAX_PRIORITY, Message};
use crate::envelope::Envelope;
use crate::error::{CodecError, Error};
use crate::id::TaskId;
use crate::private::encode_args;
use crate::result::AsyncResult;
use crate::task::TaskOptions;

/// A typed task call: `add::signature(1, 2)` is a `Signature<i64>`.
///
/// Options set here win over the task's `#[task(..)]` defaults, which win over the
/// app's. Nothing is sent until [`apply_async`](Signature::apply_async).
///
/// ```
/// use std::time::Duration;
/// use task_core::{task, App, TaskResult};
///
/// #[task]
/// async fn add(x: i64, y: i64) -> TaskResult<i64> { Ok(x + y) }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), task_core::Error> {
/// let app = App::memory();
/// let res = add::signature(1, 2)
///     .countdown(Duration::from_secs(10))
///     .queue("math")
///     .priority(7)
///     .apply_async(&app)
///     .await?;
/// let stats = app.broker().inspect().unwrap().queue_stats("math").await?;
/// assert_eq!(stats.scheduled, 1); // waits in the broker for 10 s
/// # Ok(()) }
/// ```
#[must_use = "a signature does nothing until `apply_async`"]
pub struct Signature<T> {
    task: &'static str,
    args: Result<Vec<u8>, CodecError>,
    defaults: TaskOptions,
    id: Option<TaskId>,
    queue: Option<String>,
    priority: Option<u8>,
    eta: Option<SystemTime>,
    max_retries: Option<u32>,
    time_limit: Option<Duration>,
    result_ttl: Option<Duration>,
    _output: PhantomData<fn() -> T>,
}

impl<T> Signature<T> {
    /// A call of task `task` with `args` (a struct with one field per parameter).
    /// `#[task]` generates `name::signature(..)`, which calls this.
    pub fn new<A: Serialize>(task: &'static str, args: &A, defaults: TaskOptions) -> Self {
        Self {
            task,
            args: encode_args(task, args),
            defaults,
            id: None,
            queue: None,
            priority: None,
            eta: None,
            max_retries: None,
            time_limit: None,
            result_ttl: None,
            _output: PhantomData,
        }
    }

    /// The task name.
    pub fn task_name(&self) -> &'static str {
        self.task
    }

    /// Sends to this queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Priority 0 (default) to 9; higher runs first. Out of range is an error at
    /// `apply_async`.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Runs no sooner than `delay` from now.
    pub fn countdown(mut self, delay: Duration) -> Self {
        self.eta = Some(SystemTime::now() + delay);
        self
    }

    /// Runs no sooner than `at`.
    pub fn eta(mut self, at: impl Into<SystemTime>) -> Self {
        self.eta = Some(at.into());
        self
    }

    /// Overrides the task's `max_retries`.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Overrides the task's hard `time_limit`.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Keeps the result this long (overrides the task's and the app's TTL).
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = Some(ttl);
        self
    }

    /// Uses this id instead of a random one.
    pub fn task_id(mut self, id: TaskId) -> Self {
        self.id = Some(id);
        self
    }

    /// The envelope and broker message this signature sends on `app`.
    fn into_message(self, app: &App) -> Result<Message, Error> {
        let priority = self.priority.unwrap_or(0);
        if priority > MAX_PRIORITY {
            return Err(Error::Config(format!(
                "priority must be 0 to {MAX_PRIORITY}, got {priority} (task `{}`)",
                self.task
            )));
        }
        if self.time_limit == Some(Duration::ZERO) {
            return Err(Error::Config(format!("time_limit must be above zero (task `{}`)", self.task)));
        }
        let queue = self
            .queue
            .or_else(|| self.defaults.queue.map(str::to_owned))
            .unwrap_or_else(|| app.default_queue().to_owned());
        if queue.trim().is_empty() {
            return Err(Error::Config(format!("the queue name cannot be empty (task `{}`)", self.task)));
        }
        let mut envelope = Envelope::new(self.task, self.args?, queue);
        if let Some(id) = self.id {
            envelope.id = id;
        }
        envelope.priority = priority;
        envelope.max_retries = self.max_retries;
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        envelope.time_limit_ms = self.time_limit.map(millis);
        envelope.result_ttl_ms = self.result_ttl.or(self.defaults.result_ttl).map(millis);
        envelope.eta_ms = self.eta.map(|t| chrono::DateTime::<chrono::Utc>::from(t).timestamp_millis());
        let payload = envelope.encode()?;
        Ok(Message::new(envelope.id, envelope.queue, payload).with_priority(priority).with_eta(self.eta))
    }

    /// Sends the task; returns the handle to its result at once.
    pub async fn apply_async(self, app: &App) -> Result<AsyncResult<T>, Error> {
        let message = self.into_message(app)?;
        let id = message.id.clone();
        app.broker().enqueue(message).await?;
        Ok(AsyncResult::new(id, app.clone()))
    }
}

impl App {
    /// Sends many signatures of one task in one broker call (a pipelined batch on
    /// Redis); returns their result handles in order.
    pub async fn send_batch<T>(
        &self,
        signatures: impl IntoIterator<Item = Signature<T>>,
    ) -> Result<Vec<AsyncResult<T>>, Error> {
        let messages = signatures.into_iter().map(|s| s.into_message(self)).collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<TaskId> = messages.iter().map(|m| m.id.clone()).collect();
        self.broker().enqueue_batch(messages).await?;
        Ok(ids.into_iter().map(|id| AsyncResult::new(id, self.clone())).collect())
    }
}

impl<T> fmt::Debug for Signature<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signature")
            .field("task", &self.task)
            .field("queue", &self.queue)
            .field("priority", &self.priority)
            .field("eta", &self.eta)
            .finish_non_exhaustive()
    }
}
