//! [`RedisConfig`]: the URL and the knobs of the Redis driver.

use std::time::Duration;

/// The namespace variable read by [`RedisConfig::from_url`].
pub const ENV_NAMESPACE: &str = "CELERITY_REDIS_NAMESPACE";
/// The variable naming a PEM file of the CA that signed the server's certificate
/// (`rediss://` with a private CA), read by [`RedisConfig::from_url`].
pub const ENV_CA_CERT: &str = "CELERITY_REDIS_CA_CERT";
/// The variable setting [`RedisConfig::events_cap`] (`0` turns the event stream off),
/// read by [`RedisConfig::from_url`].
pub const ENV_EVENTS_CAP: &str = "CELERITY_EVENTS_CAP";
/// The variable setting [`RedisConfig::wait_for_replicas`] (a number of replicas; the
/// time-out is the operation time-out), read by [`RedisConfig::from_url`].
pub const ENV_WAIT_REPLICAS: &str = "CELERITY_REDIS_WAIT_REPLICAS";
/// The variable declaring partitioned queues, `emails=8,reports=4` (see
/// [`RedisConfig::partitions`]), read by [`RedisConfig::from_url`].
pub const ENV_PARTITIONS: &str = "CELERITY_REDIS_PARTITIONS";
/// The variable naming the queues a worker also serves in Celery's layout (see
/// [`RedisConfig::celery_queues`]), read by [`RedisConfig::from_url`].
pub const ENV_CELERY_QUEUES: &str = "CELERITY_CELERY_QUEUES";

/// How to reach Redis and how to lay out and treat what is kept there.
///
/// ```
/// use std::time::Duration;
/// let config = task_redis::RedisConfig::from_url("redis://:secret@127.0.0.1:6379/2")
///     .namespace("billing")
///     .op_timeout(Duration::from_secs(2))
///     .max_deliveries(5);
/// assert_eq!(config.namespace_name(), "billing");
/// ```
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) namespace: String,
    pub(crate) op_timeout: Duration,
    pub(crate) max_deliveries: u32,
    pub(crate) dead_letter_cap: usize,
    pub(crate) ca_cert: Option<std::path::PathBuf>,
    pub(crate) events_cap: usize,
    /// Replicas a send waits for, and for how long at most.
    pub(crate) wait_replicas: Option<(usize, Option<Duration>)>,
    /// Partitioned queues declared in code.
    pub(crate) partitions: Vec<(String, u16)>,
    /// `CELERITY_REDIS_PARTITIONS`, read at connect (where a bad value is an error).
    pub(crate) partitions_env: Option<String>,
    /// Queues also served in Celery's layout (kombu's lists), their results also kept in
    /// Celery's format.
    pub(crate) celery_queues: Vec<String>,
}

impl RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://…` (TLS), or
    /// `redis+sentinel://[user:password@]s1:26379[,s2:26379…]/MASTER[/db]` (the primary
    /// that these Sentinels watch as `MASTER`). The namespace is
    /// `CELERITY_REDIS_NAMESPACE` when set, else `celerity`.
    pub fn from_url(url: impl Into<String>) -> Self {
        let namespace = std::env::var(ENV_NAMESPACE).ok().filter(|n| !n.trim().is_empty());
        Self {
            url: url.into(),
            namespace: namespace.unwrap_or_else(|| "celerity".into()),
            op_timeout: Duration::from_secs(5),
            max_deliveries: 5,
            dead_letter_cap: 10_000,
            ca_cert: std::env::var_os(ENV_CA_CERT).filter(|p| !p.is_empty()).map(Into::into),
            events_cap: std::env::var(ENV_EVENTS_CAP)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(task_core::EVENTS_CAP),
            wait_replicas: std::env::var(ENV_WAIT_REPLICAS)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .map(|n| (n, None)),
            partitions: Vec::new(),
            partitions_env: std::env::var(ENV_PARTITIONS).ok().filter(|v| !v.trim().is_empty()),
            celery_queues: std::env::var(ENV_CELERY_QUEUES)
                .map(|v| v.split(',').map(str::trim).filter(|q| !q.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }

    /// Serves these queues in Celery's layout too (the first part of Celery interop): a
    /// worker of `celery` takes what Python's `task.delay()` put in kombu's lists
    /// (`celery`, and its priority lists, highest first), runs the Rust task registered
    /// under the Celery task's name (`#[task(name = "proj.tasks.add")]`), its
    /// positional and keyword arguments mapped onto the task's parameters, and stores
    /// every task's state in Celery's result format as well (`celery-task-meta-<id>`,
    /// published on the key), so Python's `AsyncResult(id).get()` returns the value or
    /// raises with the Rust error's text. One Redis only (kombu's keys have no hash
    /// tag). Also `CELERITY_CELERY_QUEUES=celery,emails`.
    pub fn celery_queues(mut self, queues: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.celery_queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Spreads `queue` over `n` partitions (1 to 1,024), each of its own hash tag
    /// (`{queue#0}`..): on Redis Cluster its messages then spread over the nodes that
    /// own those slots, and one hot queue is no longer bound by one node. Producers send
    /// each task to one partition (by its `partition_key`, so that one key's tasks stay
    /// in order; round robin without), workers of `queue` fetch from all of them, and
    /// inspection, purges, pauses and dead letters treat them as one queue. The count
    /// is kept in Redis (`NS:partitions`) by the first process that declares it; a
    /// process that does not declare it follows Redis, and one that declares another
    /// count fails to connect. Also `CELERITY_REDIS_PARTITIONS=emails=8,reports=4`.
    pub fn partitions(mut self, queue: impl Into<String>, n: u16) -> Self {
        let queue = queue.into();
        self.partitions.retain(|(q, _)| *q != queue);
        self.partitions.push((queue, n));
        self
    }

    /// The partitioned queues declared in code and in `CELERITY_REDIS_PARTITIONS` (the
    /// code's count wins for a queue named in both).
    pub(crate) fn declared_partitions(&self) -> Result<Vec<(String, u16)>, String> {
        let mut all = match &self.partitions_env {
            Some(setting) => crate::broker::partitions::parse(setting).map_err(|e| format!("{ENV_PARTITIONS}: {e}"))?,
            None => Vec::new(),
        };
        for (queue, n) in &self.partitions {
            crate::broker::partitions::check(queue, *n)?;
            all.retain(|(q, _)| q != queue);
            all.push((queue.clone(), *n));
        }
        Ok(all)
    }

    /// Every plain send (`delay`, `apply_async`, a batch) waits until `replicas`
    /// replicas have it (Redis `WAIT`, in one request with the send, on a connection of
    /// its own), at most `timeout` (default: the operation time-out), and fails when
    /// fewer did. Behind Sentinel a send that succeeded then survives the loss of its
    /// primary, if no replica short of it is promoted (wait for all of them to be sure).
    /// A send that fails this way is queued all the same: sent again, it runs twice (at
    /// least once). The worker's own sends (callbacks, chain and chord steps, retries)
    /// and the guarded send of unique tasks do not wait. Off by default; also
    /// `CELERITY_REDIS_WAIT_REPLICAS=N`.
    pub fn wait_for_replicas(mut self, replicas: usize, timeout: Option<Duration>) -> Self {
        self.wait_replicas = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// For `rediss://`: trust the CA in this PEM file instead of the system's roots
    /// (also `CELERITY_REDIS_CA_CERT`).
    pub fn ca_cert(mut self, pem_file: impl Into<std::path::PathBuf>) -> Self {
        self.ca_cert = Some(pem_file.into());
        self
    }

    /// The prefix of every key (default `celerity`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The name of the store these settings address: one Redis (its URL without the
    /// password) and one namespace. A broker and a backend of equal names share their
    /// keys, so a result can be stored with its ack in one script.
    pub(crate) fn store_id(&self) -> String {
        format!("{} namespace={}", task_core::redact_url(&self.url), self.namespace)
    }

    /// The namespace in use.
    pub fn namespace_name(&self) -> &str {
        &self.namespace
    }

    /// How long any one Redis call may take, connecting included, before it fails with
    /// a time-out error (default 5 s). This bounds how long `delay` waits when Redis is
    /// down.
    pub fn op_timeout(mut self, limit: Duration) -> Self {
        self.op_timeout = limit;
        self
    }

    /// Deliveries after which a message that keeps losing its worker goes to the dead
    /// letters (default 5).
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n.clamp(1, 999);
        self
    }

    /// Dead letters kept per queue, newest first (default 10,000).
    pub fn dead_letter_cap(mut self, n: usize) -> Self {
        self.dead_letter_cap = n.max(1);
        self
    }

    /// Events the stream `NS:events` keeps at most, about (default 100,000). An entry holds
    /// up to 100 events (those of a quarter second of one process's writes), and the
    /// stream keeps `cap / 100` entries (`MAXLEN ~`): under load about `cap` events, when
    /// quiet fewer. `0` writes no task events (counts and run times are still kept).
    pub fn events_cap(mut self, n: usize) -> Self {
        self.events_cap = n;
        self
    }
}
