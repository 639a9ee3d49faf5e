//! The [`ResultBackend`] trait: where task states and results are kept.
//!
//! One record per task id ([`TaskMeta`]), merged field by field, expired after a TTL.
//! [`ResultBackend::wait`] wakes when the task reaches a ready state; it never polls.

use std::fmt;
use std::time::Duration;

use crate::capability::{RemoteControl, SettleAtomically, TaskHistory, Terminations};
use crate::error::BackendError;
use crate::future::BoxFuture;
use crate::id::TaskId;
use crate::state::{TaskMeta, TaskState};

/// How long results are kept when nothing else says: one day, as Celery.
pub const DEFAULT_RESULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The result store.
pub trait ResultBackend: Send + Sync + fmt::Debug + 'static {
    /// Merges `update` into the record of `id` (fields left `None` keep their value)
    /// and sets its time to live. Wakes waiters when the state is ready.
    fn store<'a>(&'a self, id: &'a TaskId, update: TaskMeta, ttl: Duration) -> BoxFuture<'a, Result<(), BackendError>>;

    /// The record of `id`, `None` when unknown (pending) or expired.
    fn get<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<Option<TaskMeta>, BackendError>>;

    /// Waits until `id` is ready or `timeout` passes; returns the record as it then is.
    fn wait<'a>(&'a self, id: &'a TaskId, timeout: Duration) -> BoxFuture<'a, Result<Option<TaskMeta>, BackendError>>;

    /// Deletes the record of `id`.
    fn forget<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Stores `update` (a `STARTED` claim by a worker) unless the task was revoked,
    /// which it reports instead: the revoke check costs no extra round trip.
    fn claim<'a>(
        &'a self,
        id: &'a TaskId,
        update: TaskMeta,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Claim, BackendError>>;

    /// Why `id` was revoked, if it was: the start check of a task whose `STARTED` is
    /// not stored (see [`AppBuilder::track_started`](crate::AppBuilder::track_started)),
    /// where [`claim`](Self::claim) would report it. The default reads the record.
    fn revoked<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<Option<String>, BackendError>> {
        Box::pin(revoked_by_record(self, id))
    }

    /// Revokes `id`: unless it already ended, its state becomes `REVOKED` with
    /// `reason` (kept for `ttl`, so a worker that dequeues it later skips it). With
    /// `terminate`, the worker running it is told to abort it.
    fn revoke<'a>(
        &'a self,
        id: &'a TaskId,
        reason: &'a str,
        terminate: bool,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Terminate requests relayed to the workers that run the tasks, when offered.
    fn terminations(&self) -> Option<&dyn Terminations> {
        None
    }

    /// Commands to the live workers and their answers, when offered.
    fn remote_control(&self) -> Option<&dyn RemoteControl> {
        None
    }

    /// The recent tasks, per-minute counts and events, when the backend keeps them.
    fn history(&self) -> Option<&dyn TaskHistory> {
        None
    }

    /// A final state stored and its delivery acked in one step, when the backend shares
    /// the broker's store (see [`capability::pair`](crate::capability::pair)).
    fn settle_atomically(&self) -> Option<&dyn SettleAtomically> {
        None
    }
}

/// [`ResultBackend::revoked`] from the task's record: the default, and what a driver
/// with a faster check of its own reads once that check says "revoked".
pub async fn revoked_by_record<B: ResultBackend + ?Sized>(
    backend: &B,
    id: &TaskId,
) -> Result<Option<String>, BackendError> {
    let meta = backend.get(id).await?.filter(|m| m.state == TaskState::Revoked);
    Ok(meta.map(|m| m.error.unwrap_or_else(|| "revoked".into())))
}

/// What a worker's claim of a task found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// The task is now `STARTED` by this worker.
    Claimed,
    /// The task was revoked (the reason): do not run it.
    Revoked(String),
}
