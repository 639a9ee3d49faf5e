//! `redis::RedisError` and time-outs → the core's driver errors, with a kind to match
//! on and the Redis error as the source. No Redis type leaves this crate.

use std::future::Future;
use std::time::Duration;

use task_core::{BackendError, BrokerError, ErrorKind};

/// Why a Redis call failed.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    Redis(redis::RedisError),
    TimedOut(Duration),
    /// The connection's own task is gone (the backend was dropped).
    Closed,
}

impl Failure {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            Self::TimedOut(_) => ErrorKind::Timeout,
            Self::Closed => ErrorKind::Closed,
            Self::Redis(e) if e.is_timeout() => ErrorKind::Timeout,
            Self::Redis(e) if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() => {
                ErrorKind::Connection
            }
            Self::Redis(_) => ErrorKind::Protocol,
        }
    }

    fn split(self, context: &str) -> (ErrorKind, String, Option<redis::RedisError>) {
        let kind = self.kind();
        match self {
            Self::TimedOut(limit) => (kind, format!("{context}: no answer from Redis within {limit:?}"), None),
            Self::Closed => (kind, format!("{context}: the connection's task has stopped"), None),
            Self::Redis(e) => (kind, context.to_owned(), Some(e)),
        }
    }

    pub(crate) fn broker(self, context: &str) -> BrokerError {
        let (kind, text, source) = self.split(context);
        let error = BrokerError::new(kind, text);
        match source {
            Some(source) => error.with_source(source),
            None => error,
        }
    }

    pub(crate) fn backend(self, context: &str) -> BackendError {
        let (kind, text, source) = self.split(context);
        let error = BackendError::new(kind, text);
        match source {
            Some(source) => error.with_source(source),
            None => error,
        }
    }

    /// True when Redis lost our scripts (it restarted): load them and try again.
    pub(crate) fn is_noscript(&self) -> bool {
        matches!(self, Self::Redis(e) if e.code() == Some("NOSCRIPT"))
    }
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e)
    }
}

/// Runs a Redis call with a bound on its time.
pub(crate) async fn timed<T>(limit: Duration, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, Failure> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(Failure::Redis),
        Err(_) => Err(Failure::TimedOut(limit)),
    }
}

/// Runs `pipe` within `limit`. A pipeline with no command is not sent (Redis would
/// answer "empty command"): its answer is the empty one, as for a list of no keys.
pub(crate) async fn timed_pipe<T: redis::FromRedisValue + Default>(
    limit: Duration,
    pipe: &redis::Pipeline,
    con: &mut crate::conn::Conn,
) -> Result<T, Failure> {
    if pipe.is_empty() {
        return Ok(T::default());
    }
    timed(limit, pipe.query_async(con)).await
}
