//! Task ids: random UUIDs in their hyphenated text form, as Celery's.
//!
//! An id is shared text (`Arc<str>`): a task's id is copied into its result handle, its
//! context, the worker's books and every state write, and a clone is a count, not an
//! allocation.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The id of one task run (one `delay`). Printable, and parsable back with `parse`.
///
/// ```
/// let id = task_core::TaskId::new();
/// let again: task_core::TaskId = id.as_str().parse().unwrap();
/// assert_eq!(id, again);
/// assert_eq!(id.as_str().len(), 36);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(Arc<str>);

impl TaskId {
    /// A new random id (UUID v4).
    pub fn new() -> Self {
        // Random bytes from the thread's generator: `Uuid::new_v4` without uuid's
        // `fast-rng` asks the kernel for every id (a syscall per task sent).
        Self::from_uuid(uuid::Builder::from_random_bytes(rand::random()).into_uuid())
    }

    /// The hyphenated text, written straight into a string of its exact length.
    fn from_uuid(id: uuid::Uuid) -> Self {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        Self(Arc::from(&*id.hyphenated().encode_lower(&mut text)))
    }

    /// The id derived from `name` (UUID v5): the same for the same name in every
    /// process, as for the run of a periodic tick.
    pub fn derived(name: &str) -> Self {
        Self::from_uuid(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.0)
    }
}

/// An empty string is not an id; anything else is accepted, so ids chosen by the
/// caller (Celery allows them) round-trip.
impl FromStr for TaskId {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(crate::Error::Config("a task id cannot be empty".into()));
        }
        Ok(Self(Arc::from(s)))
    }
}

/// As a string.
impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// From a string, in one allocation (serde's own `Arc<str>` goes through a `Box<str>`
/// first). Any string is taken, as before: records and envelopes of custom ids stay
/// readable.
impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = TaskId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a task id (a string)")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<TaskId, E> {
                Ok(TaskId(Arc::from(s)))
            }

            // As `String` does: UTF-8 bytes are text too (MessagePack `bin`).
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<TaskId, E> {
                let s = std::str::from_utf8(b).map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(b), &self))?;
                self.visit_str(s)
            }
        }
        deserializer.deserialize_str(Text)
    }
}

impl From<uuid::Uuid> for TaskId {
    fn from(u: uuid::Uuid) -> Self {
        Self::from_uuid(u)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_distinct_random_uuids() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| TaskId::new().to_string()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version(), Some(uuid::Version::Random), "{id}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(id, &parsed.hyphenated().to_string(), "lower-case and hyphenated");
        }
    }

    #[test]
    fn ids_are_strings_on_the_wire() {
        let id: TaskId = "custom id".parse().unwrap();
        let bytes = rmp_serde::to_vec(&id).unwrap();
        assert_eq!(bytes, rmp_serde::to_vec("custom id").unwrap());
        assert_eq!(rmp_serde::from_slice::<TaskId>(&bytes).unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"custom id\"");
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), id);
        assert!(rmp_serde::from_slice::<TaskId>(&rmp_serde::to_vec(&7u8).unwrap()).is_err());
        let bin = rmp_serde::to_vec(&serde_bytes::Bytes::new(b"custom id")).unwrap();
        assert_eq!(rmp_serde::from_slice::<TaskId>(&bin).unwrap(), id, "UTF-8 bytes, as String takes them");
        let bad = rmp_serde::to_vec(&serde_bytes::Bytes::new(&[0xff, 0xfe])).unwrap();
        assert!(rmp_serde::from_slice::<TaskId>(&bad).is_err());
    }

    #[test]
    fn derived_ids_are_stable() {
        assert_eq!(TaskId::derived("tick:a:1"), TaskId::derived("tick:a:1"));
        assert_ne!(TaskId::derived("tick:a:1"), TaskId::derived("tick:a:2"));
    }
}
