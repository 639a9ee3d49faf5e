//! The wire envelope: one MessagePack map per task, fields by name, with a version.
//!
//! Fields are read by name and unknown ones are ignored, so workers of an older and
//! a newer release can share a queue. The arguments are a nested MessagePack map
//! keyed by parameter name (carried as a `bin` field, so the envelope decodes without
//! knowing the task); they are decoded only into the registered task's own `Args`,
//! never into a type the message names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::CodecError;
use crate::id::TaskId;
use crate::link::{Callback, ChainLink, ChordMember};
use crate::message::Message;
use crate::time::now_ms;

/// The envelope version this release writes.
pub const ENVELOPE_VERSION: u32 = 1;

/// One queued task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Envelope {
    /// Format version ([`ENVELOPE_VERSION`]).
    pub v: u32,
    /// The task id (also the key of its result).
    pub id: TaskId,
    /// The registered task name.
    pub task: String,
    /// The arguments: a MessagePack map keyed by parameter name.
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
    /// The queue it was sent to.
    #[serde(default)]
    pub queue: String,
    /// How many times it has been retried (0 on the first run).
    #[serde(default)]
    pub retries: u32,
    /// Per-call override of the task's `max_retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Per-call override of the task's `time_limit`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_ms: Option<u64>,
    /// How long the result is kept, in milliseconds (else the app's TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_ttl_ms: Option<u64>,
    /// Per-call soft time limit, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_time_limit_ms: Option<u64>,
    /// Not run when dequeued after this time (Unix ms): ends `REVOKED` ("expired").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
    /// A start time reserved with the rate limiter (Unix ms): run then without asking again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_slot_ms: Option<i64>,
    /// The uniqueness lock this call holds, released when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Keep no state or result once the task ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_result: bool,
    /// Acknowledge before running (at most once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub acks_early: bool,
    /// Tasks to send when this one ends: on success, or on its final failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callbacks: Vec<Callback>,
    /// Its place in a chain: the steps after it, which fail with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
    /// Its place in a chord: the join its result goes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chord: Option<ChordMember>,
    /// 0 (default) to 9; higher runs first.
    #[serde(default)]
    pub priority: u8,
    /// Not before this time (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_ms: Option<i64>,
    /// When it was first sent (Unix milliseconds).
    #[serde(default)]
    pub sent_ms: i64,
    /// Headers: the producer's trace context (feature `opentelemetry`), kept on retries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl Envelope {
    /// A new envelope for `task` with already encoded `args`, to `queue`.
    pub fn new(task: impl Into<String>, args: Vec<u8>, queue: impl Into<String>) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            id: TaskId::new(),
            task: task.into(),
            args,
            queue: queue.into(),
            retries: 0,
            max_retries: None,
            time_limit_ms: None,
            result_ttl_ms: None,
            soft_time_limit_ms: None,
            expires_ms: None,
            rate_slot_ms: None,
            unique_key: None,
            ignore_result: false,
            acks_early: false,
            callbacks: Vec::new(),
            chain: None,
            chord: None,
            priority: 0,
            eta_ms: None,
            sent_ms: now_ms(),
            headers: BTreeMap::new(),
        }
    }

    /// Encodes to MessagePack.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        // Room for the field names and the usual fields: one allocation, no regrowth.
        let capacity = 192 + self.task.len() + self.queue.len() + self.args.len();
        codec::encode_with_capacity(self, capacity, "the task envelope")
    }

    /// Decodes from MessagePack; unknown fields are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode(bytes, "the task envelope")
    }

    /// The priority an encoded envelope names (0 when it does not decode): what a dead
    /// letter is given back with.
    pub fn priority_in(bytes: &[u8]) -> u8 {
        Self::decode(bytes).map_or(0, |e| e.priority.min(crate::message::MAX_PRIORITY))
    }
}

impl Callback {
    /// The message it sends, with the parent's `result` given as its `arg` when it has one
    /// (a chain step or a chord callback).
    pub(crate) fn message_with(&self, result: &[u8]) -> Result<Message, CodecError> {
        let Some(arg) = &self.arg else { return Ok(self.message(self.envelope.clone())) };
        let mut next = Envelope::decode(&self.envelope)?;
        next.args = codec::insert_into_map(&next.args, arg, result)?;
        Ok(self.message(next.encode()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut env = Envelope::new("m::add", codec::encode(&(1, 2), "a").unwrap(), "default");
        env.priority = 7;
        env.eta_ms = Some(5);
        let back = Envelope::decode(&env.encode().unwrap()).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_optional_ones_default() {
        #[derive(Serialize)]
        struct Future<'a> {
            v: u32,
            id: &'a str,
            task: &'a str,
            #[serde(with = "serde_bytes")]
            args: &'a [u8],
            some_new_field: Vec<u32>,
        }
        let bytes =
            rmp_serde::to_vec_named(&Future { v: 2, id: "abc", task: "t", args: &[0x80], some_new_field: vec![1, 2] })
                .unwrap();
        let env = Envelope::decode(&bytes).unwrap();
        assert_eq!(env.task, "t");
        assert_eq!(env.retries, 0);
        assert_eq!(env.queue, "");
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let err = Envelope::decode(b"\xc1garbage").unwrap_err();
        assert!(err.to_string().starts_with("cannot decode the task envelope"), "{err}");
    }
}
