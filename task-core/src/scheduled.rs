//! A periodic entry as a scheduler announces it, for `celerity schedule` and the
//! dashboard: what it sends, on which schedule, its next and last tick.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::CodecError;

/// A periodic entry as a running scheduler announced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScheduledEntry {
    /// The entry's name.
    pub name: String,
    /// The task it sends.
    pub task: String,
    /// The schedule, as text (`every 10s`, ``cron `0 30 2 * * *` (Europe/Paris)``).
    pub schedule: String,
    /// Its next tick (Unix ms) when announced.
    pub next_ms: Option<i64>,
    /// Its last claimed tick (Unix ms), by any scheduler.
    pub last_ms: Option<i64>,
    /// The scheduler that announced it (`host:pid:id`).
    pub scheduler: String,
    /// When the record lapses unless announced again (Unix ms).
    pub expires_ms: i64,
}

impl ScheduledEntry {
    /// Encodes for storage (MessagePack).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self, "a periodic entry")
    }

    /// Decodes what [`encode`](Self::encode) made.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode(bytes, "a periodic entry")
    }
}
