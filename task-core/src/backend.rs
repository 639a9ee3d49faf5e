//! The [`ResultBackend`] trait: where task states and results are kept.
//!
//! One record per task id ([`TaskMeta`]), merged field by field, expired after a TTL.
//! [`ResultBackend::wait`] wakes when the task reaches a ready state; it never polls.

use std::fmt;
use std::time::Duration;

use crate::broker::{BoxFuture, Broker, ConsumerId, Delivery};
use crate::error::BackendError;
use crate::events::{Event, TaskStats};
use crate::id::TaskId;
use crate::state::TaskMeta;

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

    /// Whether [`store_and_ack`](Self::store_and_ack) stores and acks in one step with
    /// `broker` (they share a store). Workers then settle a plain success in one
    /// round trip; otherwise they store, then ack, each with its own tries.
    fn stores_acks_of(&self, broker: &dyn Broker) -> bool {
        let _ = broker;
        false
    }

    /// Stores `update` (a final state, in the name of `ack.consumer`) and acknowledges
    /// the delivery the task came from. A backend for which
    /// [`stores_acks_of`](Self::stores_acks_of) holds does both atomically, and the
    /// acknowledgement is the fence: when the delivery is no longer the consumer's
    /// (another worker recovered it), nothing is stored and the error is
    /// [`ErrorKind::Fenced`](crate::ErrorKind::Fenced). The default stores, then acks.
    fn store_and_ack<'a>(
        &'a self,
        id: &'a TaskId,
        update: TaskMeta,
        ttl: Duration,
        ack: Ack<'a>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(store_then_ack(self, id, update, ttl, ack))
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

    /// Requests to terminate running tasks, for workers to listen to.
    fn terminations(&self) -> Option<tokio::sync::broadcast::Receiver<TaskId>> {
        None
    }

    /// The recent tasks and per-minute counts, when the backend keeps them.
    fn history(&self) -> Option<&dyn TaskHistory> {
        None
    }
}

/// [`ResultBackend::revoked`] from the task's record: the default, and what a driver
/// with a faster check of its own reads once that check says "revoked".
pub async fn revoked_by_record<B: ResultBackend + ?Sized>(
    backend: &B,
    id: &TaskId,
) -> Result<Option<String>, BackendError> {
    let meta = backend.get(id).await?.filter(|m| m.state == crate::TaskState::Revoked);
    Ok(meta.map(|m| m.error.unwrap_or_else(|| "revoked".into())))
}

/// [`ResultBackend::store_and_ack`] in two steps, store then ack: the default, and what
/// a driver does when the broker is not one it can ack for.
pub async fn store_then_ack<B: ResultBackend + ?Sized>(
    backend: &B,
    id: &TaskId,
    update: TaskMeta,
    ttl: Duration,
    ack: Ack<'_>,
) -> Result<(), BackendError> {
    backend.store(id, update, ttl).await?;
    ack.broker
        .ack(ack.consumer, ack.delivery)
        .await
        .map_err(|e| BackendError::new(e.kind(), format!("stored task {id}, but the ack failed")).with_source(e))
}

/// The delivery that [`ResultBackend::store_and_ack`] acknowledges.
#[derive(Debug, Clone, Copy)]
pub struct Ack<'a> {
    /// The broker the delivery came from.
    pub broker: &'a dyn Broker,
    /// The worker that holds it.
    pub consumer: &'a ConsumerId,
    /// The delivery.
    pub delivery: &'a Delivery,
}

/// How many task ids the recent-tasks index keeps, newest first.
pub const HISTORY_CAP: usize = 100_000;

/// Which recent tasks to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskFilter {
    /// Only tasks in this state.
    pub state: Option<crate::TaskState>,
    /// Only this task name.
    pub task: Option<String>,
    /// Only tasks whose record changed at or after this time (Unix ms).
    pub since_ms: Option<i64>,
}

impl TaskFilter {
    /// Every recent task.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only tasks in `state`.
    pub fn state(mut self, state: crate::TaskState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only tasks named `task`.
    pub fn task(mut self, task: impl Into<String>) -> Self {
        self.task = Some(task.into());
        self
    }

    /// Only tasks changed at or after `ms` (Unix ms).
    pub fn since_ms(mut self, ms: i64) -> Self {
        self.since_ms = Some(ms);
        self
    }

    /// True when `meta`, changed at `at_ms`, passes.
    pub fn matches(&self, meta: &TaskMeta, at_ms: i64) -> bool {
        self.state.is_none_or(|s| s == meta.state)
            && self.task.as_deref().is_none_or(|t| meta.task.as_deref() == Some(t))
            && self.since_ms.is_none_or(|since| at_ms >= since)
    }
}

/// Finished tasks in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MinuteCount {
    /// The minute's start (Unix ms).
    pub minute_ms: i64,
    /// Tasks that ended `SUCCESS` in it.
    pub succeeded: u64,
    /// Tasks that ended `FAILURE` in it.
    pub failed: u64,
}

impl MinuteCount {
    /// For backend authors.
    pub fn new(minute_ms: i64, succeeded: u64, failed: u64) -> Self {
        Self { minute_ms, succeeded, failed }
    }
}

/// A recent task: its id, when its record last changed (Unix ms), and the record.
pub type RecentTask = (TaskId, i64, TaskMeta);

/// What the dashboard lists: the tasks that started lately, or ended without starting
/// (bounded by [`HISTORY_CAP`]; records past their TTL drop out), and finished tasks
/// per minute.
pub trait TaskHistory: Send + Sync {
    /// Up to `limit` tasks that pass `filter`, newest first by when they entered the
    /// history (their start, or their end if they never started), each with when its
    /// record last changed.
    fn recent<'a>(
        &'a self,
        filter: &'a TaskFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecentTask>, BackendError>>;
    /// The last `minutes` minutes, oldest first (the current one last).
    fn throughput(&self, minutes: usize) -> BoxFuture<'_, Result<Vec<MinuteCount>, BackendError>>;
    /// Adds an event the store does not make by itself (a dead letter, a worker's
    /// online / heartbeat / offline) to the event stream.
    fn record_event<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BackendError>>;
    /// The newest `limit` events, newest first. State writes add theirs (started,
    /// progress, retried, succeeded, failed, revoked) as they are stored.
    fn events(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Event>, BackendError>>;
    /// Counts by task name and state, and run-time histograms by task name.
    fn task_stats(&self) -> BoxFuture<'_, Result<TaskStats, BackendError>>;
    /// Workers that stopped (a `worker-offline` event) at or after `since_ms`, newest first:
    /// `(worker id, when)`. Kept a day.
    fn workers_offline(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<(String, i64)>, BackendError>>;
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
