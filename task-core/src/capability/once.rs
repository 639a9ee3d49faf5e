//! Enqueue-once: a message whose id was sent this way before is not sent again. How a
//! callback or a chain step (whose id is fixed when its parent is sent) is sent once,
//! even when its parent runs twice.

use std::time::Duration;

use crate::error::BrokerError;
use crate::future::BoxFuture;
use crate::message::Message;

/// Sends a message unless its id was sent before.
pub trait SendOnce: Send + Sync {
    /// Enqueues `message` unless a message with its id was sent this way within `ttl`,
    /// in one atomic step; false when it was sent before. How callbacks and chain steps
    /// (whose ids are fixed when their parent is sent) are sent once, even when their
    /// parent runs twice (a worker died before acking it).
    fn enqueue_once(&self, message: Message, ttl: Duration) -> BoxFuture<'_, Result<bool, BrokerError>>;
}
