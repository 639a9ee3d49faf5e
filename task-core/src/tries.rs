//! Patient calls: the writes that end a run (a store, an ack, a retry, a callback) are
//! tried again with growing pauses for long enough to ride out a restart or a failover
//! of the broker. After that the message stays held, and is recovered if its worker
//! stops: nothing is lost, at the cost of a second run.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tracing::{error, warn};

use crate::envelope::Envelope;
use crate::state::TaskState;

/// How long a call is tried before giving up.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);
/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Runs `op` until it succeeds or [`PATIENCE`] has passed, with growing pauses, logging
/// failures. An error for which `refused` holds (a fenced write: another worker owns
/// the message now) ends the tries at once.
pub(crate) async fn with_tries<T, E, F>(
    what: &(dyn fmt::Display + Sync),
    subject: &(dyn fmt::Display + Sync),
    op: impl Fn() -> F,
    refused: impl Fn(&E) -> bool,
) -> Option<T>
where
    E: fmt::Display,
    F: Future<Output = Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    for attempt in 1u32.. {
        match op().await {
            Ok(value) => return Some(value),
            Err(e) if refused(&e) => {
                warn!(error = %e, "{what} of {subject} refused");
                return None;
            }
            Err(e) if started.elapsed() >= PATIENCE => {
                error!(error = %e, "{what} of {subject} failed for {PATIENCE:?} ({attempt} tries); giving up");
                return None;
            }
            Err(e) if attempt == 1 => warn!(error = %e, "{what} of {subject} failed; trying again"),
            Err(e) => tracing::debug!(error = %e, attempt, "{what} of {subject} failed again"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
    None
}

/// Never refused: for the calls no fence guards.
pub(crate) fn never<E>(_: &E) -> bool {
    false
}

/// How a task is named in logs, "task `name` [id]": formatted only when logged.
pub(crate) struct Subject<'a>(pub(crate) &'a Envelope);

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task `{}` [{}]", self.0.task, self.0.id)
    }
}

/// "storing state X", formatted only when logged.
pub(crate) struct Storing(pub(crate) TaskState);

impl fmt::Display for Storing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storing state {}", self.0)
    }
}
