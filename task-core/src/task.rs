//! The [`Task`] trait that `#[task]` implements, and per-task [`TaskOptions`].

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The queue a task goes to when nothing else says.
pub const DEFAULT_QUEUE: &str = "default";

/// How many times a failing task is retried when nothing else says (Celery's default).
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// A task known at compile time. `#[task] fn add(..)` implements it for `add::Task`.
///
/// You rarely name it: `add::delay` and `add::signature` are generated for you. It is
/// what lets [`App::send`](crate::App::send) take a task as a type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task",
    label = "not a task",
    note = "put `#[task]` on a module-level `fn` or `async fn`, and use its generated `<name>::Task` type"
)]
pub trait Task: Send + Sync + 'static {
    /// The registered name (by default `module_path!()::fn_name`).
    const NAME: &'static str;
    /// The default options given in `#[task(..)]`.
    const OPTIONS: TaskOptions;
    /// The arguments, a struct with one field per parameter.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// What the task returns on success.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

/// The defaults a task declares in `#[task(..)]`; a [`Signature`](crate::Signature)
/// can override each per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskOptions {
    /// The queue (else [`DEFAULT_QUEUE`]).
    pub queue: Option<&'static str>,
    /// Retries after a retryable error (else [`DEFAULT_MAX_RETRIES`]).
    pub max_retries: Option<u32>,
    /// Hard time limit: the run is aborted and ends `FAILURE`.
    pub time_limit: Option<Duration>,
    /// How long the result is kept (else the app's result TTL, one day by default).
    pub result_ttl: Option<Duration>,
}

impl TaskOptions {
    /// No option set.
    pub const fn new() -> Self {
        Self { queue: None, max_retries: None, time_limit: None, result_ttl: None }
    }

    /// Sets the default queue.
    pub const fn queue(mut self, queue: &'static str) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Sets the default number of retries.
    pub const fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Sets how long the result is kept.
    pub const fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = Some(ttl);
        self
    }

    /// Sets the hard time limit.
    pub const fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }
}

impl Default for TaskOptions {
    fn default() -> Self {
        Self::new()
    }
}
