//! The directory of live workers: each announces itself with its heartbeat, for
//! `celerity status` and the dashboard.

use std::time::Duration;

use crate::error::BrokerError;
use crate::future::BoxFuture;

/// What a worker says about itself, for `celerity status` and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's id.
    pub id: String,
    /// The machine it runs on.
    pub hostname: String,
    /// Its name for people (`-n`, `Worker::name`: `celery@host` by default); empty from
    /// a worker of an earlier release.
    #[serde(default)]
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// How many tasks it runs at once.
    pub concurrency: usize,
    /// The queues it consumes.
    pub queues: Vec<String>,
    /// The tasks it can run.
    pub tasks: Vec<String>,
    /// When it started (Unix ms).
    pub started_ms: i64,
    /// Its last heartbeat (Unix ms).
    pub heartbeat_ms: i64,
    /// Tasks it finished successfully.
    pub succeeded: u64,
    /// Tasks that failed for good on it.
    pub failed: u64,
    /// Its last successful fetch, even an empty one (Unix ms): a worker that is up but
    /// cannot reach its queues shows here while its heartbeat looks fine.
    pub last_fetch_ms: i64,
    /// Tasks running on it at its last heartbeat.
    #[serde(default)]
    pub active: u64,
    /// The queue a call of each of its tasks goes to when the call names none (the
    /// task's own, else its app's route, else the default queue), by task name: where
    /// `celerity call` sends a task it does not know.
    #[serde(default)]
    pub task_queues: std::collections::BTreeMap<String, String>,
    /// Every slot was taken and the prefetch full at its last heartbeat: it does not
    /// fetch because it is busy, so an old `last_fetch_ms` is no sign of trouble.
    #[serde(default)]
    pub saturated: bool,
}

impl WorkerInfo {
    /// For driver authors and tests.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        hostname: String,
        pid: u32,
        concurrency: usize,
        queues: Vec<String>,
        tasks: Vec<String>,
        started_ms: i64,
    ) -> Self {
        Self {
            id,
            hostname,
            name: String::new(),
            pid,
            concurrency,
            queues,
            tasks,
            started_ms,
            heartbeat_ms: started_ms,
            succeeded: 0,
            failed: 0,
            last_fetch_ms: started_ms,
            active: 0,
            task_queues: std::collections::BTreeMap::new(),
            saturated: false,
        }
    }
}

/// The directory of live workers: each announces itself with every heartbeat.
pub trait WorkerDirectory: Send + Sync {
    /// Records `info`, kept for `ttl` unless announced again.
    fn announce<'a>(&'a self, info: &'a WorkerInfo, ttl: Duration) -> BoxFuture<'a, Result<(), BrokerError>>;
    /// The workers that announced themselves and have not expired, by id.
    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerInfo>, BrokerError>>;
}
