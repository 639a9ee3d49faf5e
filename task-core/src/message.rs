//! What crosses the broker: a [`Message`] to enqueue, a [`Delivery`] fetched for a
//! worker, and the [`Receipt`] the broker needs back to ack it (opaque to the worker).

use std::fmt;
use std::time::SystemTime;

use crate::id::TaskId;

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
    /// For a queue spread over partitions (a driver's setting, e.g. Redis Cluster):
    /// every message of one key goes to the same partition, so they keep their order.
    /// `None` spreads them round robin. Drivers without partitions ignore it.
    pub partition_key: Option<String>,
}

impl Message {
    /// A message for `queue`, due now, priority 0.
    pub fn new(id: TaskId, queue: impl Into<String>, payload: Vec<u8>) -> Self {
        Self { id, queue: queue.into(), priority: 0, eta: None, payload, partition_key: None }
    }

    /// Sets the partition key (see [`Message::partition_key`]).
    pub fn with_partition_key(mut self, key: Option<String>) -> Self {
        self.partition_key = key;
        self
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
