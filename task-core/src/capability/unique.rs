//! Uniqueness locks (`#[task(unique_for = N)]`): while a call holds its key, an equal
//! call returns the pending twin instead of sending a second message.

use std::time::Duration;

use crate::error::BrokerError;
use crate::future::BoxFuture;
use crate::id::TaskId;

/// Locks by key, held by one task id at a time, with a time to live.
pub trait UniqueLocks: Send + Sync {
    /// Takes the uniqueness lock `key` for task `id` for up to `ttl`. `None`: taken.
    /// `Some(other)`: task `other` holds it (is pending or running).
    fn lock_unique<'a>(
        &'a self,
        key: &'a str,
        id: &'a TaskId,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<TaskId>, BrokerError>>;

    /// Releases the lock `key` if task `id` holds it.
    fn unlock_unique<'a>(&'a self, key: &'a str, id: &'a TaskId) -> BoxFuture<'a, Result<(), BrokerError>>;
}
