//! Events and task statistics: what the dashboard's live feed and `/metrics` read.
//!
//! Task events come from the result backend's state writes (the Redis backend gathers
//! the events and counts of its stored writes and sends them every quarter second in one
//! pipeline: an `XADD` to a capped stream and a few `HINCRBY`s, so they cost the write
//! path nothing and Redis little); worker events and dead letters are recorded by the
//! worker. Counts by task name and state, and run-time histograms, are kept beside them.

use std::fmt;
use std::str::FromStr;

use crate::id::TaskId;
use crate::state::TaskState;

/// How many events the stream keeps (approximately, for Redis), newest last.
pub const EVENTS_CAP: usize = 100_000;

/// The upper bounds of the run-time histogram buckets, in milliseconds (then `+Inf`).
pub const RUNTIME_BUCKETS_MS: [u64; 13] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A worker claimed the task and started it.
    TaskStarted,
    /// The task reported progress.
    TaskProgress,
    /// The task failed and will be retried.
    TaskRetried,
    /// The task succeeded.
    TaskSucceeded,
    /// The task failed for good.
    TaskFailed,
    /// The task was revoked or expired.
    TaskRevoked,
    /// The message went to the dead letters (the detail says why).
    TaskDeadLettered,
    /// A worker started.
    WorkerOnline,
    /// A worker's heartbeat (the detail has its counts).
    WorkerHeartbeat,
    /// A worker stopped.
    WorkerOffline,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 10] = [
        Self::TaskStarted,
        Self::TaskProgress,
        Self::TaskRetried,
        Self::TaskSucceeded,
        Self::TaskFailed,
        Self::TaskRevoked,
        Self::TaskDeadLettered,
        Self::WorkerOnline,
        Self::WorkerHeartbeat,
        Self::WorkerOffline,
    ];

    /// The name, as Flower and Celery's events spell them (`task-succeeded`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskStarted => "task-started",
            Self::TaskProgress => "task-progress",
            Self::TaskRetried => "task-retried",
            Self::TaskSucceeded => "task-succeeded",
            Self::TaskFailed => "task-failed",
            Self::TaskRevoked => "task-revoked",
            Self::TaskDeadLettered => "task-dead-lettered",
            Self::WorkerOnline => "worker-online",
            Self::WorkerHeartbeat => "worker-heartbeat",
            Self::WorkerOffline => "worker-offline",
        }
    }

    /// The event a state write makes, if any.
    pub fn of_state(state: TaskState) -> Option<Self> {
        match state {
            TaskState::Started => Some(Self::TaskStarted),
            TaskState::Progress => Some(Self::TaskProgress),
            TaskState::Retry => Some(Self::TaskRetried),
            TaskState::Success => Some(Self::TaskSucceeded),
            TaskState::Failure => Some(Self::TaskFailed),
            TaskState::Revoked => Some(Self::TaskRevoked),
            _ => None,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = crate::Error;

    /// Reads a kind's name, or a state name (how state writes are stored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(kind) = Self::ALL.into_iter().find(|k| k.as_str() == s) {
            return Ok(kind);
        }
        s.parse::<TaskState>()
            .ok()
            .and_then(Self::of_state)
            .ok_or_else(|| crate::Error::Config(format!("unknown event kind `{s}`")))
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Where it sits in the stream (Redis: the stream entry id and the line in it).
    pub id: String,
    /// When (Unix ms).
    pub at_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// The task id, for task events.
    pub task_id: Option<TaskId>,
    /// The task name, for task events.
    pub task: Option<String>,
    /// The worker.
    pub worker: Option<String>,
    /// More: the dead-letter reason, a heartbeat's counts.
    pub detail: Option<String>,
}

impl Event {
    /// An event of `kind` now, for recording.
    pub fn new(kind: EventKind) -> Self {
        Self {
            id: String::new(),
            at_ms: crate::time::now_ms(),
            kind,
            task_id: None,
            task: None,
            worker: None,
            detail: None,
        }
    }

    /// Of this task.
    pub fn task(mut self, id: &TaskId, name: &str) -> Self {
        self.task_id = Some(id.clone());
        self.task = Some(name.to_owned());
        self
    }

    /// By this worker.
    pub fn worker(mut self, worker: impl Into<String>) -> Self {
        self.worker = Some(worker.into());
        self
    }

    /// With this detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The one-line form drivers store: `kind \t task id \t task \t worker \t detail`
    /// (tabs and newlines in the parts become spaces).
    pub fn to_line(&self) -> String {
        let mut line = String::new();
        let parts = [
            self.task_id.as_ref().map(TaskId::as_str),
            self.task.as_deref(),
            self.worker.as_deref(),
            self.detail.as_deref(),
        ];
        Self::push_line(&mut line, self.kind.as_str(), parts.map(|p| p.unwrap_or("")));
        line
    }

    /// Appends that line to `out` from its parts, without building an `Event` (a driver
    /// writing an event per stored write): `kind` is a kind's name or a state's name, the
    /// parts are task id, task name, worker and detail (empty for none).
    pub fn push_line(out: &mut String, kind: &str, parts: [&str; 4]) {
        out.push_str(kind);
        for part in parts {
            out.push('\t');
            if part.contains(['\t', '\n']) {
                out.push_str(&part.replace(['\t', '\n'], " "));
            } else {
                out.push_str(part);
            }
        }
    }

    /// Reads a line written by [`to_line`](Self::to_line) (or by a driver's script, with
    /// a state name as the kind); `None` for a line it does not understand.
    pub fn from_line(id: String, at_ms: i64, line: &str) -> Option<Self> {
        let mut parts = line.split('\t');
        let kind = parts.next()?.parse().ok()?;
        let part = |p: Option<&str>| p.filter(|s| !s.is_empty()).map(str::to_owned);
        let task_id = part(parts.next()).and_then(|s| s.parse().ok());
        Some(Self {
            id,
            at_ms,
            kind,
            task_id,
            task: part(parts.next()),
            worker: part(parts.next()),
            detail: part(parts.next()),
        })
    }
}

/// How many times tasks of one name entered one state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskCount {
    /// The task name.
    pub task: String,
    /// The state.
    pub state: TaskState,
    /// How many times.
    pub count: u64,
}

/// The run times of one task name.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RuntimeHistogram {
    /// The task name.
    pub task: String,
    /// For each bound of [`RUNTIME_BUCKETS_MS`] (in seconds), how many runs took at most
    /// that long (cumulative, as Prometheus wants).
    pub buckets: Vec<(f64, u64)>,
    /// All runs' time added up, in seconds.
    pub sum_secs: f64,
    /// How many runs.
    pub count: u64,
}

/// Counts by task name and state, and run-time histograms (since the counters were
/// created: they are not reset).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TaskStats {
    /// By task name and state.
    pub counts: Vec<TaskCount>,
    /// By task name.
    pub runtimes: Vec<RuntimeHistogram>,
}

impl TaskStats {
    /// Builds the stats from raw counters: `(name, state, count)` and
    /// `(name, bucket, value)` where bucket is a bound in ms, `+Inf`, `sum` (ms) or `count`.
    pub fn from_counters(
        counts: impl IntoIterator<Item = (String, TaskState, u64)>,
        runtime: impl IntoIterator<Item = (String, String, u64)>,
    ) -> Self {
        let mut counts: Vec<TaskCount> =
            counts.into_iter().map(|(task, state, count)| TaskCount { task, state, count }).collect();
        counts.sort_by(|a, b| (&a.task, a.state.as_str()).cmp(&(&b.task, b.state.as_str())));
        let mut by_task: std::collections::BTreeMap<String, (Vec<u64>, u64, u64)> = Default::default();
        for (task, bucket, value) in runtime {
            let entry = by_task.entry(task).or_insert_with(|| (vec![0; RUNTIME_BUCKETS_MS.len()], 0, 0));
            match bucket.as_str() {
                "sum" => entry.1 = value,
                "count" => entry.2 = value,
                "+Inf" => {}
                le => {
                    if let Some(i) =
                        le.parse::<u64>().ok().and_then(|ms| RUNTIME_BUCKETS_MS.iter().position(|b| *b == ms))
                    {
                        entry.0[i] = value;
                    }
                }
            }
        }
        let runtimes = by_task
            .into_iter()
            .map(|(task, (per_bucket, sum_ms, count))| {
                let mut total = 0;
                let buckets = RUNTIME_BUCKETS_MS
                    .iter()
                    .zip(per_bucket)
                    .map(|(le, n)| {
                        total += n;
                        (*le as f64 / 1000.0, total)
                    })
                    .collect();
                RuntimeHistogram { task, buckets, sum_secs: sum_ms as f64 / 1000.0, count }
            })
            .collect();
        Self { counts, runtimes }
    }

    /// The bucket a run of `ms` counts in: a bound of [`RUNTIME_BUCKETS_MS`], or `+Inf`.
    pub fn bucket_of(ms: u64) -> String {
        RUNTIME_BUCKETS_MS.iter().find(|b| ms <= **b).map_or_else(|| "+Inf".to_owned(), u64::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_state_names_read_as_kinds() {
        let id = TaskId::new();
        let e = Event::new(EventKind::TaskDeadLettered).task(&id, "m::t").worker("w1").detail("bad\targs\nhere");
        let back = Event::from_line("1-0".into(), e.at_ms, &e.to_line()).unwrap();
        assert_eq!(back.kind, EventKind::TaskDeadLettered);
        assert_eq!(back.task_id, Some(id.clone()));
        assert_eq!(back.detail.as_deref(), Some("bad args here"));
        let from_script = Event::from_line("2-0".into(), 5, &format!("SUCCESS\t{id}\tm::t\tw1")).unwrap();
        assert_eq!((from_script.kind, from_script.detail), (EventKind::TaskSucceeded, None));
        assert!(Event::from_line("3-0".into(), 5, "NOPE\tx").is_none());
    }

    #[test]
    fn histograms_are_cumulative_in_seconds() {
        assert_eq!(TaskStats::bucket_of(3), "5");
        assert_eq!(TaskStats::bucket_of(5), "5");
        assert_eq!(TaskStats::bucket_of(6), "10");
        assert_eq!(TaskStats::bucket_of(61_000), "+Inf");
        let raw = [("5", 2), ("100", 3), ("+Inf", 1), ("sum", 1_234), ("count", 6)];
        let stats = TaskStats::from_counters(
            [("t".to_owned(), TaskState::Success, 6)],
            raw.map(|(b, v)| ("t".to_owned(), b.to_owned(), v)),
        );
        let h = &stats.runtimes[0];
        assert_eq!(h.buckets[0], (0.005, 2));
        assert_eq!(h.buckets[4], (0.1, 5));
        assert_eq!(h.buckets.last().unwrap().1, 5, "+Inf is the count, not a bucket");
        assert_eq!((h.count, h.sum_secs), (6, 1.234));
        assert_eq!(stats.counts[0].count, 6);
    }
}
