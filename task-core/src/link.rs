//! The workflow links an envelope carries: callbacks to send when it ends, its place in
//! a chain, its place in a chord. Prepared when the first task is sent, so that a worker
//! only has to send what it was handed.

use serde::{Deserialize, Serialize};

use crate::id::TaskId;
use crate::message::Message;
use crate::time::{from_ms, to_ms};

/// When a callback is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOn {
    /// After the task succeeded (its result is stored).
    Success,
    /// After the task failed for good (no retry left, a fatal error, a panic, a time limit).
    Failure,
}

/// A task to send when another ends (`Signature::on_success` / `on_failure`), prepared
/// when the first was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Callback {
    /// When to send it.
    pub on: CallbackOn,
    /// Its task id.
    pub id: TaskId,
    /// Its queue.
    pub queue: String,
    /// Its priority.
    pub priority: u8,
    /// Not before this time (Unix ms), if it was given a countdown or ETA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_ms: Option<i64>,
    /// Its encoded envelope.
    #[serde(with = "serde_bytes")]
    pub envelope: Vec<u8>,
    /// The parameter that receives this task's result (a chain step), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<String>,
}

impl Callback {
    /// The callback that sends `message` when its parent ends as `on`.
    pub(crate) fn from_message(on: CallbackOn, arg: Option<String>, message: Message) -> Self {
        let eta_ms = message.eta.map(to_ms);
        Self {
            on,
            id: message.id,
            queue: message.queue,
            priority: message.priority,
            eta_ms,
            envelope: message.payload,
            arg,
        }
    }

    /// The message it sends, with `envelope` as the payload.
    pub(crate) fn message(&self, envelope: Vec<u8>) -> Message {
        let eta = self.eta_ms.map(from_ms);
        Message::new(self.id.clone(), self.queue.clone(), envelope).with_priority(self.priority).with_eta(eta)
    }
}

/// A step of a chain: where it stands, and the steps after it (which fail with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChainLink {
    /// This step's number, from 1.
    pub step: u32,
    /// How many steps the chain has.
    pub steps: u32,
    /// The ids of the steps after this one, in order (the last is the chain's result).
    pub rest: Vec<TaskId>,
}

/// A member of a chord: the join it reports to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChordMember {
    /// The chord's id: its callback's task id.
    pub chord: TaskId,
    /// The callback's queue (where the join lives, next to the queue it sends to).
    pub queue: String,
    /// This member's place, from 0.
    pub index: u32,
    /// How many members the chord has.
    pub size: u32,
}

impl ChordMember {
    /// A member's place in the chord `chord` of `size`, whose callback goes to `queue`.
    pub fn new(chord: TaskId, queue: impl Into<String>, index: u32, size: u32) -> Self {
        Self { chord, queue: queue.into(), index, size }
    }
}
