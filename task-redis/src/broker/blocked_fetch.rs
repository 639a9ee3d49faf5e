//! The wait of an idle worker on one queue with its fetch sent behind it.
//!
//! An idle worker blocks on its queue's wake list (`BLPOP`) and, once woken, runs the
//! fetch script: two round trips before a task that was enqueued into an idle queue can
//! start. Sent in one write on the blocking connection, the fetch waits in Redis behind
//! the `BLPOP` and runs the moment it returns (a token taken, or its time up), so the
//! woken worker finds its messages in the same reply.

use std::time::Duration;

use redis::Value;
use task_core::broker::{ConsumerId, Delivery};

use super::{RedisBroker, fetched};
use crate::error::{Failure, timed};

/// What a wait on a wake list with its fetch behind it gave: the deliveries and the due
/// time of the next delayed message (as [`fetched`]), or `None` when the fetch did not
/// run (Redis had lost the script: the caller fetches as usual, which loads it).
pub(super) type Fetched = Option<(Vec<Delivery>, Option<i64>)>;

impl RedisBroker {
    /// Whether a wait on `queues` may carry its fetch: one queue of this broker's own
    /// format (Celery's producers leave no token) on one server (a cluster's connection
    /// routes each command by itself, with no promise of their order).
    pub(super) fn fetch_follows_wait(&self, queues: &[String]) -> bool {
        matches!(queues, [queue] if !self.is_celery(queue)) && !self.inner.conns.is_cluster()
    }

    /// Blocks on `queue`'s wake list up to `wait`, with the fetch of up to `max` of its
    /// messages for `consumer` right behind. Cancel-safe as a plain wait is: a call
    /// dropped while it waits drops its connection, and Redis, closing it, drops the
    /// fetch queued on it unrun (a stopped worker's fetch must not take messages after
    /// its lists were given back). A fetch that ran just before has its messages found
    /// by the caller's check of the processing lists (it marks the consumer unsure first).
    pub(super) async fn wait_then_fetch(
        &self,
        consumer: &ConsumerId,
        queue: &str,
        wait: Duration,
        max: usize,
    ) -> Result<Fetched, Failure> {
        let mut blocking = self.inner.conns.blocking().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("BLPOP").arg(self.inner.keys.wake(queue)).arg(wait.as_secs_f64().max(0.01));
        pipe.invoke_script(&self.fetch_invocation(consumer, queue, max));
        // Each reply on its own: a lost script fails the fetch alone, not the wait.
        let replies: Result<Vec<redis::RedisResult<Value>>, Failure> =
            timed(wait + self.limit(), pipe.ignore_errors().query_async(&mut blocking.con)).await;
        let mut replies = self.inner.conns.ended(blocking, replies)?;
        let fetch = replies.pop().ok_or(Failure::Closed)?;
        match fetch.map_err(Failure::Redis) {
            Ok(reply) => {
                let reply: Vec<Vec<u8>> = redis::from_redis_value(reply).map_err(|e| Failure::Redis(e.into()))?;
                Ok(Some(fetched(queue, reply)))
            }
            Err(e) if e.is_noscript() => Ok(None),
            Err(e) => Err(e),
        }
    }
}
