//! Task ids: random UUIDs in their hyphenated text form, as Celery's.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The id of one task run (one `delay`). Printable, and parsable back with `parse`.
///
/// ```
/// let id = task_core::TaskId::new();
/// let again: task_core::TaskId = id.as_str().parse().unwrap();
/// assert_eq!(id, again);
/// assert_eq!(id.as_str().len(), 36);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    /// A new random id (UUID v4).
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// The id derived from `name` (UUID v5): the same for the same name in every
    /// process, as for the run of a periodic tick.
    pub fn derived(name: &str) -> Self {
        Self(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).hyphenated().to_string())
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
        Ok(Self(s.to_owned()))
    }
}

impl From<uuid::Uuid> for TaskId {
    fn from(u: uuid::Uuid) -> Self {
        Self(u.hyphenated().to_string())
    }
}
