//! The embedded in-memory broker and result backend (`memory://`).
//!
//! They are real implementations, not test doubles: at-least-once delivery with acks,
//! heartbeats and recovery, delayed messages, dead letters, result TTLs, and waiting
//! that wakes on completion. What they are not is shared between processes: a
//! producer and its workers must use the same [`App`](crate::App) (clone it).
//!
//! Both offer inspection helpers for tests (queue lengths, dead letters, and
//! [`InMemoryBroker::fail_next`] to inject a failure into the next operation), in the
//! style of tower-test's `Handle`.

mod backend;
mod broker;

pub use backend::InMemoryBackend;
pub use broker::{BrokerOp, DEFAULT_MAX_DELIVERIES, InMemoryBroker};
