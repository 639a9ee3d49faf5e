//! Pausing a queue (BullMQ's `pause`): producers may still send to it, and no worker
//! takes from it until it is resumed. Kept in the broker, so it holds for every worker.

use crate::error::BrokerError;
use crate::future::BoxFuture;

/// Pauses and resumes queues.
pub trait QueuePause: Send + Sync {
    /// Stops every worker from taking messages of `queue` (those running go on).
    fn pause<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Lets workers take messages of `queue` again.
    fn resume<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<(), BrokerError>>;
}
