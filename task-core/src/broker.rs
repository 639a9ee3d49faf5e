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
//! What only some drivers can do is a [capability](crate::capability) of one concern,
//! asked for by an accessor here that answers `None` by default (apalis's habit), so
//! the CLI, the dashboard and the worker never depend on a driver and never downcast.

use std::fmt;
use std::time::Duration;

use crate::capability::{
    ChordStore, DeadLetter, Inspect, QueuePause, RateLimits, SendOnce, SharedStore, TickStore, UniqueLocks,
    WorkerDirectory,
};
use crate::error::BrokerError;
use crate::future::BoxFuture;
pub use crate::id::ConsumerId;
pub use crate::message::{Delivery, MAX_PRIORITY, Message, Receipt};

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
    /// (or to the dead letters past the delivery limit); says how many moved and which
    /// went to the dead letters, so that the caller can end their tasks.
    fn recover(&self) -> BoxFuture<'_, Result<Recovery, BrokerError>>;

    /// A clean stop of `consumer`: releases whatever it still holds, forgets it.
    fn deregister<'a>(&'a self, consumer: &'a ConsumerId) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// `consumer` is known dead (a process pool's child that exited): returns what it
    /// held now, without waiting for its heartbeat to expire, counted as deliveries as
    /// [`recover`](Self::recover) counts them (so a message that kills every process
    /// that takes it ends in the dead letters), and forgets the consumer.
    ///
    /// The default releases uncounted, by [`deregister`](Self::deregister).
    fn recover_consumer<'a>(&'a self, consumer: &'a ConsumerId) -> BoxFuture<'a, Result<Recovery, BrokerError>> {
        Box::pin(async move {
            self.deregister(consumer).await?;
            Ok(Recovery::default())
        })
    }

    /// Inspection and administration (depths, peeks, dead letters), when offered.
    fn inspect(&self) -> Option<&dyn Inspect> {
        None
    }

    /// Where workers say who they are, when offered.
    fn directory(&self) -> Option<&dyn WorkerDirectory> {
        None
    }

    /// Rate limits that hold across every worker of this broker, when offered.
    fn rate_limits(&self) -> Option<&dyn RateLimits> {
        None
    }

    /// Uniqueness locks (`unique_for`), when offered.
    fn unique_locks(&self) -> Option<&dyn UniqueLocks> {
        None
    }

    /// Enqueue-once by message id (how callbacks and chain steps are sent once), when offered.
    fn send_once(&self) -> Option<&dyn SendOnce> {
        None
    }

    /// The joins of chords, when offered.
    fn chord_store(&self) -> Option<&dyn ChordStore> {
        None
    }

    /// Pausing and resuming queues, when offered.
    fn pausing(&self) -> Option<&dyn QueuePause> {
        None
    }

    /// Periodic ticks claimed once and the running schedules, when offered.
    fn tick_store(&self) -> Option<&dyn TickStore> {
        None
    }

    /// The store this broker keeps its messages in, when a result backend may ack its
    /// deliveries there (see [`SettleAtomically`](crate::capability::SettleAtomically)).
    fn shared_store(&self) -> Option<&dyn SharedStore> {
        None
    }
}

/// What [`Broker::recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Messages moved: back to their queues, or to the dead letters.
    pub moved: usize,
    /// The messages of them that went to the dead letters (delivered too many times),
    /// as they were buried: their tasks never ended, and the caller ends them.
    pub buried: Vec<DeadLetter>,
}

impl Recovery {
    /// For driver authors.
    pub fn new(moved: usize, buried: Vec<DeadLetter>) -> Self {
        Self { moved, buried }
    }
}
