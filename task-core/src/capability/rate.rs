//! Rate limits that hold across every worker of one broker (Celery's `rate_limit`,
//! made cluster-wide): a start slot is reserved in the broker, so many workers on many
//! machines share one limit.

use std::time::SystemTime;

use crate::error::BrokerError;
use crate::future::BoxFuture;
use crate::task::RateLimit;

/// Reserves start slots under a rate limit kept in the broker (GCRA).
pub trait RateLimits: Send + Sync {
    /// Reserves the next start slot of `key` under `limit` (GCRA: starts spaced by
    /// `limit.interval()`). `None`: start now. `Some(t)`: the slot is at `t`; the task
    /// waits in the delayed set until then, holding no worker slot.
    fn reserve_rate<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
    ) -> BoxFuture<'a, Result<Option<SystemTime>, BrokerError>>;
}
