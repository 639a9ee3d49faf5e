//! Inspection and administration of queues: depths, peeks, purges and dead letters.
//! What the CLI and the dashboard use, so that neither knows a driver's layout.

use crate::error::BrokerError;
use crate::future::BoxFuture;
use crate::id::TaskId;

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
    /// Paused: no worker takes from it ([`QueuePause`](crate::capability::QueuePause)).
    pub paused: bool,
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
                if crate::envelope::Envelope::decode(&letter.payload).is_ok_and(|e| &e.id == id) {
                    return self.retry_dead_letter(&letter).await;
                }
            }
            Ok(false)
        })
    }
}
