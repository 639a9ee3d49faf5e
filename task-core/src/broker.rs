//! The [`Broker`] trait: moving encoded tasks between producers and workers.
//!
//! The trait speaks in queue concepts only (enqueue, fetch a batch with a blocking
//! wait, ack, retry later, release, dead-letter, heartbeat, recover) so that the
//! in-memory broker and Redis give the same guarantees:
//!
//! - **At least once.** A fetched message is held for its consumer until acked. If the
//!   consumer stops heartbeating, [`Broker::recover`] (run by any live worker) puts the
//!   message back; a message delivered more than the broker's limit goes to the dead
//!   letters instead, with the reason.
//! - **No sleep-polling.** `fetch` waits in the broker until a message is ready or
//!   `wait` passes.
//! - **Delay in the broker.** A message with an `eta` waits in the broker, never in a
//!   worker's memory.
//!
//! Optional powers live in capability traits reached from the broker
//! ([`Broker::inspect`] → [`Inspect`]), in the style of apalis, so the CLI and the
//! dashboard never depend on a driver.
//!
//! The traits are dyn-compatible (boxed futures) because [`App`](crate::App) picks a
//! driver from a URL at run time.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use crate::beat::ScheduledEntry;
use crate::envelope::ChordMember;
use crate::error::BrokerError;
use crate::id::TaskId;
use crate::task::RateLimit;

/// A boxed, `Send` future: what the dyn-compatible driver traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The id of one worker process's consumer (a UUID, never the host name).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerId(String);

impl ConsumerId {
    /// A new random consumer id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ConsumerId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for ConsumerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ConsumerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConsumerId({})", self.0)
    }
}

impl From<String> for ConsumerId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// A message to enqueue: an encoded envelope and where it goes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Message {
    /// The task id (for logs and inspection; the broker does not interpret it).
    pub id: TaskId,
    /// The queue.
    pub queue: String,
    /// 0 to 9; higher is served first.
    pub priority: u8,
    /// Not before this time; `None` is now.
    pub eta: Option<SystemTime>,
    /// The encoded [`Envelope`](crate::Envelope).
    pub payload: Vec<u8>,
}

impl Message {
    /// A message for `queue`, due now, priority 0.
    pub fn new(id: TaskId, queue: impl Into<String>, payload: Vec<u8>) -> Self {
        Self { id, queue: queue.into(), priority: 0, eta: None, payload }
    }

    /// Sets the priority (0–9, higher first; larger values are clamped to 9).
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = priority.min(MAX_PRIORITY);
        self
    }

    /// Sets the time it becomes due.
    pub fn with_eta(mut self, eta: Option<SystemTime>) -> Self {
        self.eta = eta;
        self
    }
}

/// The highest priority.
pub const MAX_PRIORITY: u8 = 9;

/// What the broker needs back to ack a delivery. Opaque to the worker.
#[derive(Clone, PartialEq, Eq)]
pub struct Receipt(Vec<u8>);

impl Receipt {
    /// For driver authors: wraps the driver's own handle.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// For driver authors: the handle given to [`Receipt::new`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Receipt({} bytes)", self.0.len())
    }
}

/// A fetched message, held for its consumer until acked.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery {
    /// The queue it came from.
    pub queue: String,
    /// Its priority.
    pub priority: u8,
    /// The encoded envelope (possibly garbage: the worker checks).
    pub payload: Vec<u8>,
    /// 1 on the first delivery, more after a recovery.
    pub delivery_count: u32,
    /// The broker's handle for ack and friends.
    pub receipt: Receipt,
}

impl Delivery {
    /// For driver authors.
    pub fn new(queue: String, priority: u8, payload: Vec<u8>, delivery_count: u32, receipt: Receipt) -> Self {
        Self { queue, priority, payload, delivery_count, receipt }
    }
}

/// The transport: queues of encoded tasks with reliable, at-least-once delivery.
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Adds a message to its queue (or to the delayed set when its `eta` is ahead).
    fn enqueue(&self, message: Message) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Adds many messages; drivers pipeline them (one round trip for the batch).
    fn enqueue_batch(&self, messages: Vec<Message>) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            for message in messages {
                self.enqueue(message).await?;
            }
            Ok(())
        })
    }

    /// Takes up to `max` due messages from `queues` (earlier queues and higher
    /// priorities first) for `consumer`, waiting up to `wait` for the first one.
    /// Returns an empty batch when `wait` passes. Cancel-safe: a dropped call holds
    /// nothing.
    fn fetch<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        queues: &'a [String],
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BrokerError>>;

    /// The task finished: forget the message.
    fn ack<'a>(&'a self, consumer: &'a ConsumerId, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Atomically acks `delivery` and enqueues `retry` (normally with an `eta`).
    fn retry<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
        retry: Message,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Gives back a delivery that was not started, to the front of its queue, without
    /// counting it as a delivery (graceful shutdown).
    fn release<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Moves a delivery to the dead letters, with the reason.
    fn dead_letter<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Says `consumer` is alive for `ttl` more.
    fn heartbeat<'a>(&'a self, consumer: &'a ConsumerId, ttl: Duration) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Returns the messages held by consumers whose heartbeat expired to their queues
    /// (or to the dead letters past the delivery limit); returns how many moved.
    fn recover(&self) -> BoxFuture<'_, Result<usize, BrokerError>>;

    /// A clean stop of `consumer`: releases whatever it still holds, forgets it.
    fn deregister<'a>(&'a self, consumer: &'a ConsumerId) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Inspection and administration, when the driver offers it.
    fn inspect(&self) -> Option<&dyn Inspect> {
        None
    }

    /// Cluster-wide rate limits and uniqueness locks, when the driver offers them.
    fn coordination(&self) -> Option<&dyn Coordination> {
        None
    }

    /// Where workers say who they are, when the driver offers it.
    fn directory(&self) -> Option<&dyn WorkerDirectory> {
        None
    }

    /// This broker as [`Any`](std::any::Any), for a result backend of the same driver
    /// to recognise it (see [`ResultBackend::stores_acks_of`](crate::ResultBackend::stores_acks_of)).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// What a worker says about itself, for `celerity status` and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's id.
    pub id: String,
    /// The machine it runs on.
    pub hostname: String,
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

/// What every worker and producer of one broker must agree on: rate limits and
/// uniqueness locks. Kept in the broker (Redis for `redis://`), so they hold across
/// processes and machines.
pub trait Coordination: Send + Sync {
    /// Reserves the next start slot of `key` under `limit` (GCRA: starts spaced by
    /// `limit.interval()`). `None`: start now. `Some(t)`: the slot is at `t`; the task
    /// waits in the delayed set until then, holding no worker slot.
    fn reserve_rate<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
    ) -> BoxFuture<'a, Result<Option<SystemTime>, BrokerError>>;

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

    /// Opens the join of a chord of `size` members whose callback (an encoded
    /// [`Callback`](crate::Callback), still without the results) has the id `chord` and
    /// goes to `queue`. Kept for `ttl`.
    fn chord_open<'a>(
        &'a self,
        chord: &'a TaskId,
        queue: &'a str,
        size: u32,
        callback: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Records a member's encoded result, once per member however often it is
    /// delivered (a member's first result counts; a redelivered one does not count
    /// again). When every member is in and the chord is still open, returns the
    /// results in member order with the callback.
    fn chord_join<'a>(
        &'a self,
        member: &'a ChordMember,
        result: &'a [u8],
    ) -> BoxFuture<'a, Result<ChordJoin, BrokerError>>;

    /// Sends the callback `message` and closes the chord, in one step; false (nothing
    /// sent) when it was closed already (sent, or failed).
    fn chord_fire<'a>(&'a self, member: &'a ChordMember, message: Message) -> BoxFuture<'a, Result<bool, BrokerError>>;

    /// Closes the chord as failed, so its callback is never sent; true when this call
    /// closed it (false: closed already).
    fn chord_fail<'a>(&'a self, member: &'a ChordMember) -> BoxFuture<'a, Result<bool, BrokerError>>;

    /// Enqueues `message` unless a message with its id was sent this way within `ttl`,
    /// in one atomic step; false when it was sent before. How callbacks and chain steps
    /// (whose ids are fixed when their parent is sent) are sent once, even when their
    /// parent runs twice (a worker died before acking it).
    fn enqueue_once(&self, message: Message, ttl: Duration) -> BoxFuture<'_, Result<bool, BrokerError>>;

    /// Claims tick `tick_ms` (Unix ms) of the periodic entry `entry`: true for the one
    /// caller that sends it, the first to claim a tick later than the entry's last
    /// claimed tick (so a tick is sent once, whatever the number of schedulers and
    /// however far apart their clocks are).
    fn claim_tick<'a>(&'a self, entry: &'a str, tick_ms: i64) -> BoxFuture<'a, Result<bool, BrokerError>>;

    /// The last tick of `entry` that any scheduler claimed.
    fn last_tick<'a>(&'a self, entry: &'a str) -> BoxFuture<'a, Result<Option<i64>, BrokerError>>;

    /// Records the entries a scheduler runs, for `celerity schedule` and the dashboard;
    /// each record lasts until its `expires_ms`.
    fn announce_schedule<'a>(&'a self, entries: &'a [ScheduledEntry]) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// The periodic entries announced by running schedulers, by name.
    fn schedules(&self) -> BoxFuture<'_, Result<Vec<ScheduledEntry>, BrokerError>>;
}

/// Where a chord stands after a member reported ([`Coordination::chord_join`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChordJoin {
    /// Members are still running: this many.
    Waiting(u32),
    /// Every member is in: the callback (as given to `chord_open`) and the results in
    /// member order. The caller sends the callback with [`Coordination::chord_fire`].
    Complete {
        /// The encoded callback.
        callback: Vec<u8>,
        /// Each member's encoded result, in member order.
        results: Vec<Vec<u8>>,
    },
    /// The callback was sent or the chord failed already; or the join is unknown
    /// (expired): nothing to do.
    Closed,
}

/// Depths of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Due and waiting.
    pub ready: usize,
    /// Waiting for their eta.
    pub scheduled: usize,
    /// Held by consumers.
    pub in_flight: usize,
    /// In the dead letters.
    pub dead: usize,
}

/// A message seen by [`Inspect::peek`], not taken.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Peeked {
    /// The encoded envelope.
    pub payload: Vec<u8>,
    /// When it is due (Unix ms), for a scheduled message.
    pub due_ms: Option<i64>,
    /// The worker holding it, for a message in flight.
    pub worker: Option<String>,
}

impl Peeked {
    /// For driver authors.
    pub fn new(payload: Vec<u8>, due_ms: Option<i64>, worker: Option<String>) -> Self {
        Self { payload, due_ms, worker }
    }
}

/// Which messages [`Inspect::peek`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeekAt {
    /// Waiting for their due time.
    Scheduled,
    /// Held by workers (running or about to).
    InFlight,
}

/// A message in the dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The queue it came from.
    pub queue: String,
    /// Why it is here.
    pub reason: String,
    /// The payload as it was received.
    pub payload: Vec<u8>,
    /// When (Unix ms).
    pub at_ms: i64,
}

impl DeadLetter {
    /// For driver authors.
    pub fn new(queue: String, reason: String, payload: Vec<u8>, at_ms: i64) -> Self {
        Self { queue, reason, payload, at_ms }
    }
}

/// Inspection and administration: what the CLI and the dashboard use.
pub trait Inspect: Send + Sync {
    /// Depths of `queue`.
    fn queue_stats<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<QueueStats, BrokerError>>;
    /// The queues that hold or held messages.
    fn queues(&self) -> BoxFuture<'_, Result<Vec<String>, BrokerError>>;
    /// The newest `limit` dead letters, newest first.
    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, BrokerError>>;
    /// Removes every ready and scheduled message of `queue`; returns how many.
    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>>;
    /// Up to `limit` messages of `queue` of one kind, without taking them.
    fn peek<'a>(&'a self, queue: &'a str, at: PeekAt, limit: usize) -> BoxFuture<'a, Result<Vec<Peeked>, BrokerError>>;
    /// Puts up to `limit` dead letters of `queue` back in the queue (oldest first, as new
    /// messages); returns how many.
    fn retry_dead<'a>(&'a self, queue: &'a str, limit: usize) -> BoxFuture<'a, Result<usize, BrokerError>>;
    /// Deletes the dead letters of `queue`; returns how many.
    fn purge_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>>;
    /// Puts this one dead letter (as listed by [`dead_letters`](Inspect::dead_letters))
    /// back in its queue as a new message; false when it is no longer a dead letter
    /// (retried or purged meanwhile).
    fn retry_dead_letter<'a>(&'a self, letter: &'a DeadLetter) -> BoxFuture<'a, Result<bool, BrokerError>>;

    /// Puts the dead letter of task `id` back in its queue; false when none of the newest
    /// 10,000 dead letters is that task (or its envelope does not decode: use
    /// [`retry_dead`](Inspect::retry_dead) for those).
    fn retry_dead_task<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<bool, BrokerError>> {
        Box::pin(async move {
            for letter in self.dead_letters(10_000).await? {
                if crate::Envelope::decode(&letter.payload).is_ok_and(|e| &e.id == id) {
                    return self.retry_dead_letter(&letter).await;
                }
            }
            Ok(false)
        })
    }
}
