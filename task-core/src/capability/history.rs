//! What a result backend may keep beside the records: the recent tasks, the finished
//! tasks per minute, the event stream and the counts the dashboard shows.

use crate::error::BackendError;
use crate::events::{Event, TaskStats};
use crate::future::BoxFuture;
use crate::id::TaskId;
use crate::state::{TaskMeta, TaskState};

/// How many task ids the recent-tasks index keeps, newest first.
pub const HISTORY_CAP: usize = 100_000;

/// Which recent tasks to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskFilter {
    /// Only tasks in this state.
    pub state: Option<TaskState>,
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
    pub fn state(mut self, state: TaskState) -> Self {
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
