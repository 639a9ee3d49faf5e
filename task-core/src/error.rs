//! Errors of the public API.
//!
//! Two layers, as in sqlx: [`Error`] is what callers of [`App`](crate::App),
//! [`AsyncResult`](crate::AsyncResult) and the worker see; drivers report
//! [`BrokerError`] / [`BackendError`], which carry an [`ErrorKind`] to match on and
//! the driver's own error as a boxed `source`, so no driver type (`redis::RedisError`)
//! ever appears in this crate's API. [`TaskError`] is different: it is what a *task*
//! returns, and can be made from any `std::error::Error` with `?`.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::id::TaskId;

/// A boxed error, the `source` of driver errors.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What the caller of the public API gets back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker failed (connection, timeout, protocol).
    #[error("broker error: {0}")]
    Broker(#[from] BrokerError),
    /// The result backend failed.
    #[error("result backend error: {0}")]
    Backend(#[from] BackendError),
    /// A value could not be encoded to or decoded from MessagePack.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// No driver is registered for the scheme of a broker or backend URL.
    #[error(
        "unsupported {role} URL `{url}`: no driver for scheme `{scheme}` (supported: {supported}); \
         link the driver crate (for redis://, add task-redis and `use task_redis as _;`)"
    )]
    UnsupportedScheme {
        /// `broker` or `result backend`.
        role: &'static str,
        /// The URL as given.
        url: String,
        /// The scheme that was not found.
        scheme: String,
        /// The schemes that are registered, comma separated.
        supported: String,
    },
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The task ran and failed; `error` is the task's own error text.
    #[error("task {task} [{id}] failed: {error}")]
    TaskFailed {
        /// The task id.
        id: TaskId,
        /// The task name.
        task: String,
        /// The error text the task returned (or the panic message).
        error: String,
    },
    /// The task was revoked (or expired) and will not run.
    #[error("task [{id}] was revoked: {reason}")]
    TaskRevoked {
        /// The task id.
        id: TaskId,
        /// Why.
        reason: String,
    },
    /// Waiting for a result took longer than allowed.
    #[error("timed out after {waited:?} waiting for the result of task [{id}] (state {state})")]
    Timeout {
        /// The task id.
        id: TaskId,
        /// How long we waited.
        waited: Duration,
        /// The last state seen.
        state: crate::TaskState,
    },
    /// A task's message would be larger than the app allows
    /// ([`AppBuilder::max_message_size`](crate::AppBuilder::max_message_size)): nothing
    /// was sent.
    #[error("task {task}: its message is {size} bytes, over the limit of {limit} bytes; nothing was sent")]
    TooLarge {
        /// The task name.
        task: String,
        /// The encoded message's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Two registered tasks share a name; the worker refuses to start.
    #[error("{0}")]
    DuplicateTasks(String),
}

/// The class of a driver failure, to match on without knowing the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server could not be reached or the connection broke.
    Connection,
    /// The operation did not finish in time.
    Timeout,
    /// The server answered something we did not expect.
    Protocol,
    /// The broker or backend was shut down.
    Closed,
    /// The operation is not supported by this driver.
    Unsupported,
    /// The delivery is no longer this consumer's: it missed its heartbeat and the
    /// message was recovered (fencing). The ack or result is refused.
    Fenced,
    /// Anything else.
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connection => "connection",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
            Self::Closed => "closed",
            Self::Unsupported => "unsupported",
            Self::Fenced => "fenced",
            Self::Other => "other",
        })
    }
}

macro_rules! driver_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            kind: ErrorKind,
            context: String,
            source: Option<BoxError>,
        }

        impl $name {
            /// An error of `kind`, with a sentence saying what was being done.
            pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
                Self { kind, context: context.into(), source: None }
            }

            /// Attaches the driver's own error as the source.
            pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
                self.source = Some(source.into());
                self
            }

            /// The class of the failure.
            pub fn kind(&self) -> ErrorKind {
                self.kind
            }

            /// What was being done when it failed.
            pub fn context(&self) -> &str {
                &self.context
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} ({} error)", self.context, self.kind)?;
                if let Some(source) = &self.source {
                    write!(f, ": {source}")?;
                }
                Ok(())
            }
        }

        impl StdError for $name {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
            }
        }
    };
}

driver_error!(
    /// A broker failed: the kind, what was being done, and the driver's error.
    BrokerError
);
driver_error!(
    /// A result backend failed: the kind, what was being done, and the driver's error.
    BackendError
);

/// A value could not be encoded or decoded (MessagePack).
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {what}: {source}")]
pub struct CodecError {
    op: &'static str,
    what: String,
    #[source]
    source: BoxError,
}

impl CodecError {
    pub(crate) fn encode(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self { op: "encode", what: what.into(), source: source.into() }
    }

    pub(crate) fn decode(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self { op: "decode", what: what.into(), source: source.into() }
    }
}

/// The error a task returns: `TaskResult<T>` is `Result<T, TaskError>`.
///
/// Any `std::error::Error + Send + Sync + 'static` converts with `?`, keeping its text
/// (and the text of its sources); that text is what [`AsyncResult::get`] reports.
/// An error is retried (up to the task's `max_retries`) unless made with
/// [`TaskError::fatal`]. Like `anyhow::Error`, `TaskError` does not itself implement
/// `std::error::Error`, which is what lets the blanket `From` exist.
///
/// ```
/// use task_core::{TaskError, TaskResult};
///
/// fn parse(s: &str) -> TaskResult<i64> {
///     let n: i64 = s.parse()?; // ParseIntError -> TaskError, retryable
///     if n < 0 {
///         return Err(TaskError::fatal("negative input")); // never retried
///     }
///     Ok(n)
/// }
/// assert_eq!(parse("x").unwrap_err().to_string(), "invalid digit found in string");
/// assert!(parse("-1").unwrap_err().is_fatal());
/// ```
///
/// [`AsyncResult::get`]: crate::AsyncResult::get
pub struct TaskError {
    message: String,
    disposition: Disposition,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Disposition {
    /// Retried with the task's back-off while retries remain.
    Retryable,
    /// Never retried.
    Fatal,
    /// Retried after exactly this delay, whatever the back-off says (`ctx.retry`).
    RetryIn(Duration),
}

impl TaskError {
    /// A retryable error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self { message: message.to_string(), disposition: Disposition::Retryable }
    }

    /// An error that is never retried.
    pub fn fatal(message: impl fmt::Display) -> Self {
        Self { message: message.to_string(), disposition: Disposition::Fatal }
    }

    pub(crate) fn retry_in(message: impl fmt::Display, delay: Duration) -> Self {
        Self { message: message.to_string(), disposition: Disposition::RetryIn(delay) }
    }

    /// The error text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True for errors made with [`TaskError::fatal`].
    pub fn is_fatal(&self) -> bool {
        self.disposition == Disposition::Fatal
    }

    pub(crate) fn disposition(&self) -> Disposition {
        self.disposition
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(inner) = source {
            let text = inner.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = inner.source();
        }
        Self::new(message)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError").field("message", &self.message).field("fatal", &self.is_fatal()).finish()
    }
}

/// What a task returns.
pub type TaskResult<T> = Result<T, TaskError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_error_display_has_context_kind_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = BrokerError::new(ErrorKind::Connection, "enqueue to `default`").with_source(io);
        assert_eq!(e.to_string(), "enqueue to `default` (connection error): refused");
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert!(e.source().is_some());
        let top: Error = e.into();
        assert!(top.to_string().starts_with("broker error: enqueue to `default`"));
    }

    #[test]
    fn task_error_keeps_source_chain_text() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e: TaskError = Outer(std::io::Error::other("inner cause")).into();
        assert_eq!(e.message(), "outer: inner cause");
        assert!(!e.is_fatal());
    }
}
