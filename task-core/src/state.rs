//! Task states and the stored record of a task run ([`TaskMeta`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a task is in its life, as Celery names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Unknown to the backend: queued, not yet taken (or an unknown id).
    #[default]
    Pending,
    /// Taken by a worker.
    Received,
    /// Running.
    Started,
    /// Running, and reported progress.
    Progress,
    /// Failed, and waits for another try.
    Retry,
    /// Finished; the result is stored.
    Success,
    /// Failed for good; the error is stored.
    Failure,
    /// Revoked or expired; will not run.
    Revoked,
}

impl TaskState {
    /// True when the task will not change state again.
    pub fn is_ready(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Revoked)
    }

    /// The state's name, as stored (`SUCCESS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Received => "RECEIVED",
            Self::Started => "STARTED",
            Self::Progress => "PROGRESS",
            Self::Retry => "RETRY",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::Revoked => "REVOKED",
        }
    }

    /// Every state, in life order.
    pub const ALL: [TaskState; 8] = [
        Self::Pending,
        Self::Received,
        Self::Started,
        Self::Progress,
        Self::Retry,
        Self::Success,
        Self::Failure,
        Self::Revoked,
    ];
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| crate::Error::Config(format!("unknown task state `{s}`")))
    }
}

/// The stored record of one task run. As an *update* given to
/// [`ResultBackend::store`](crate::ResultBackend::store), fields left `None` keep
/// their stored value (a Redis `HSET` of the fields that are set).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TaskMeta {
    /// The state.
    pub state: TaskState,
    /// The task name.
    pub task: Option<String>,
    /// The MessagePack-encoded result, on `SUCCESS`.
    pub result: Option<Vec<u8>>,
    /// The error text, on `FAILURE` and `RETRY` (the last error), or why `REVOKED`.
    pub error: Option<String>,
    /// The MessagePack-encoded progress meta, from `ctx.set_progress`.
    pub progress: Option<Vec<u8>>,
    /// The id of the worker that ran it.
    pub worker: Option<String>,
    /// Retries so far.
    pub retries: Option<u32>,
    /// When a worker started it (Unix ms).
    pub started_ms: Option<i64>,
    /// When it ended (Unix ms).
    pub finished_ms: Option<i64>,
    /// Its arguments (a MessagePack map keyed by parameter name), kept from its start so
    /// that it can be shown, searched and sent again.
    pub args: Option<Vec<u8>>,
    /// The queue it was taken from.
    pub queue: Option<String>,
    /// How long its last run took (ms), once it ended after running.
    pub runtime_ms: Option<u64>,
}

impl TaskMeta {
    /// An update that sets only the state.
    pub fn state(state: TaskState) -> Self {
        Self { state, ..Self::default() }
    }

    /// The fencing rule every backend applies: an update that names its worker is
    /// refused when another worker has since claimed the task, unless it is itself a
    /// claim (`STARTED`).
    pub fn fenced_against(&self, update: &TaskMeta) -> bool {
        update.state != TaskState::Started
            && matches!((&self.worker, &update.worker), (Some(owner), Some(writer)) if owner != writer)
    }

    /// Applies `update` on top of `self` (fields set in `update` win).
    pub fn merge(&mut self, update: TaskMeta) {
        self.state = update.state;
        macro_rules! take {
            ($($f:ident),*) => { $( if update.$f.is_some() { self.$f = update.$f; } )* };
        }
        take!(task, result, error, progress, worker, retries, started_ms, finished_ms, args, queue, runtime_ms);
    }
}

impl TaskState {
    /// Whether a write of `update` may land on a record in state `self` (the rule the
    /// drivers hold, `store_many.lua` for Redis): a revoke is final, so over `REVOKED`
    /// only `REVOKED` lands (a terminated run adding its end); and a finished run takes
    /// no late progress, so `PROGRESS` does not land on `SUCCESS` or `FAILURE`. A new run
    /// of a finished task (a redelivery) may still claim it and end it again.
    pub fn admits(self, update: TaskState) -> bool {
        match self {
            TaskState::Revoked => update == TaskState::Revoked,
            TaskState::Success | TaskState::Failure => update != TaskState::Progress,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_agree() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
        }
        assert!("DONE".parse::<TaskState>().is_err());
        assert!(TaskState::Revoked.is_ready() && !TaskState::Retry.is_ready());
    }

    #[test]
    fn a_revoke_is_final_and_a_finished_run_takes_no_late_progress() {
        use TaskState::*;
        for update in TaskState::ALL {
            assert_eq!(Revoked.admits(update), update == Revoked, "{update} over REVOKED");
            assert_eq!(Success.admits(update), update != Progress, "{update} over SUCCESS");
            assert_eq!(Failure.admits(update), update != Progress, "{update} over FAILURE");
            for open in [Pending, Received, Started, Progress, Retry] {
                assert!(open.admits(update), "{update} over {open}");
            }
        }
    }

    #[test]
    fn merge_keeps_unset_fields() {
        let mut meta =
            TaskMeta { task: Some("t".into()), error: Some("boom".into()), ..TaskMeta::state(TaskState::Retry) };
        meta.merge(TaskMeta { result: Some(vec![1]), ..TaskMeta::state(TaskState::Success) });
        assert_eq!(meta.state, TaskState::Success);
        assert_eq!(meta.task.as_deref(), Some("t"));
        assert_eq!(meta.error.as_deref(), Some("boom"));
        assert_eq!(meta.result, Some(vec![1]));
    }
}
