//! Celery interop: Celerity workers serve the queues Python's Celery sends to, store
//! what they run in Celery's result format, and Rust sends tasks Python workers run.
//!
//! A kombu message on Redis is a JSON object in the queue's list (`celery`, or
//! `celery\x06\x16N` for priority step `N`): `headers` (task name, id, `eta`,
//! `expires`, `retries`, `timelimit`, `root_id`, `parent_id`, `group`,
//! `ignore_result`, …), `properties` (`delivery_tag`, `priority`, `delivery_info`,
//! `reply_to`), and `body`, base64 of the serialized `[args, kwargs, embed]` (JSON or
//! MessagePack, by `content-type`): [`CeleryMessage`], read by [`decode`] and written by
//! [`CeleryMessage::to_kombu`]. A task's state as Celery's Redis result backend keeps it
//! (`celery-task-meta-<id>`, which Python's `AsyncResult(id).get()` reads) is a
//! [`ResultMeta`]. [`Client`] sends tasks to Python workers and waits for their results.

mod args;
pub(crate) mod canvas;
mod client;
pub(crate) mod events;
mod message;
mod meta;
pub(crate) mod pidbox;

pub use args::args_by_name;
pub use client::{AsyncResult, Call, Client, ClientError};
pub use message::{CeleryMessage, decode, kombu_list};
pub(crate) use meta::meta_of;
pub use meta::{ResultMeta, python_exception, result_key};

/// Why a message is not a Celery task message Celerity can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CeleryError(String);

impl CeleryError {
    fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

/// What a Celery message is held with in a worker's processing list, before the message
/// as Celery wrote it: `0xC1` then `C`, where every entry of Celerity's has `0xC1` then a
/// priority digit (and `0xC1` begins no MessagePack, JSON or UTF-8 text). A receipt says
/// so where it came from, whatever the message holds.
pub(crate) const HELD: &[u8] = b"\xC1C";

/// The kombu list the held Celery message `receipt` goes back to: the one of its
/// priority (kombu put it there by its `priority` property), the main one when it does
/// not read.
pub(crate) fn home_list(queue: &str, receipt: &[u8]) -> String {
    // Its `properties.priority` alone, as the recovery script reads it.
    let message = receipt.get(HELD.len()..).and_then(|m| serde_json::from_slice::<serde_json::Value>(m).ok());
    let priority = message.as_ref().and_then(|m| m.pointer("/properties/priority")).and_then(serde_json::Value::as_f64);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let priority = priority.unwrap_or(0.0).clamp(0.0, 255.0) as u8;
    kombu_list(queue, priority)
}

/// True when a receipt is a held Celery message.
pub(crate) fn is_kombu(receipt: &[u8]) -> bool {
    receipt.starts_with(HELD)
}

/// The next try of the held Celery message `receipt`, in Celery's format, as Celery's own
/// `Task.retry()` sends it: the same id, arguments and canvas, the retries and due time
/// of `retry` (the envelope the worker made for the next try), to `queue`. `None` when
/// either does not read (the retry then goes in Celerity's own layout).
pub(crate) fn retried(
    receipt: &[u8],
    retry: &[u8],
    eta: Option<std::time::SystemTime>,
    queue: &str,
) -> Option<CeleryMessage> {
    let mut m = decode(receipt.get(HELD.len()..)?).ok()?;
    let next = task_core::Envelope::decode(retry).ok()?;
    m.retries = next.retries;
    m.eta = eta.map(|at| iso(at.into()));
    m.delivery_tag = uuid::Uuid::new_v4().to_string();
    m.routing_key = Some(queue.to_owned());
    Some(m)
}

/// Celerity's envelope for a Celery message on `queue`: its task, its arguments by name
/// (those of `params`, the registered Rust task's), its id, retries and limits. A task
/// no Rust task answers to, or arguments that do not fit, still make an envelope: the
/// worker then dead-letters it with the reason, as any such message. With it, the
/// canvas to carry on when the task ends ([`canvas::kept`]), if it has one.
pub(crate) fn to_envelope(m: &CeleryMessage, queue: &str, params: Option<&[&str]>) -> (Vec<u8>, Option<String>) {
    // What cannot run yet, or does not fit: arguments no task decodes (a string saying
    // why), so the worker dead-letters the message with that reason and stores the
    // failure, as for any message whose arguments do not fit.
    let refused = |why: String| {
        tracing::warn!(task = %m.task, id = %m.id, why, "a Celery message Celerity does not run");
        rmp_serde::to_vec_named(&why).unwrap_or_default()
    };
    let (args, kept) = match (params, canvas::kept(&m.embed, m)) {
        (_, Err(why)) => (refused(why), None),
        (Some(params), Ok(kept)) => match args_by_name(&m.task, params, m.args.clone(), m.kwargs.clone()) {
            Ok(named) => (rmp_serde::to_vec_named(&named).unwrap_or_default(), kept),
            Err(e) => (refused(e.to_string()), kept),
        },
        (None, Ok(kept)) => (rmp_serde::to_vec_named(&serde_json::Map::new()).unwrap_or_default(), kept),
    };
    let mut envelope = task_core::Envelope::new(m.task.clone(), args, queue);
    if let Ok(id) = m.id.parse() {
        envelope.id = id;
    }
    envelope.retries = m.retries;
    envelope.eta_ms = m.eta.as_deref().and_then(unix_ms);
    envelope.expires_ms = m.expires.as_deref().and_then(unix_ms);
    // 0 is Celery's "no limit".
    envelope.time_limit_ms = m.time_limit.0.filter(|s| *s > 0.0).map(secs_to_ms);
    envelope.soft_time_limit_ms = m.time_limit.1.filter(|s| *s > 0.0).map(secs_to_ms);
    // A task with canvas keeps its outcome: that is where its canvas goes on from.
    envelope.ignore_result = m.ignore_result && kept.is_none();
    (envelope.encode().unwrap_or_default(), kept)
}

/// A time as Celery writes `eta`, `expires` and `date_done` (ISO 8601, microseconds,
/// `+00:00`); [`unix_ms`] reads it back.
pub(crate) fn iso(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// Unix ms of an ISO 8601 time as Celery writes `eta` and `expires`: with an offset, or
/// without one (a naive `datetime` sent as it is), read as UTC, as Celery's worker reads
/// it by default.
pub(crate) fn unix_ms(at: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(at) {
        return Some(t.timestamp_millis());
    }
    let naive = chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S%.f").ok();
    if naive.is_none() {
        tracing::warn!(at, "a Celery time that does not parse is taken as none");
    }
    naive.map(|t| t.and_utc().timestamp_millis())
}

fn secs_to_ms(secs: f64) -> u64 {
    // Seconds as Celery sends them, positive and far below u64's range.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (secs.max(0.0) * 1000.0) as u64;
    ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_message_goes_home_to_the_list_of_its_priority() {
        let mut m = CeleryMessage::new("proj.tasks.add", "id-1", "celery");
        m.priority = 5;
        assert_eq!(home_list("celery", &[HELD, m.to_kombu().as_bytes()].concat()), "celery\x06\x163");
        assert_eq!(home_list("celery", b"\xC1Cgarbage"), "celery");
    }

    #[test]
    fn a_retry_is_the_same_call_with_its_next_try_and_due_time() {
        let mut first = CeleryMessage::new("proj.tasks.add", "id-1", "celery");
        first.args = vec![serde_json::json!(2), serde_json::json!(3)];
        let held = [HELD, first.to_kombu().as_bytes()].concat();
        let mut next = task_core::Envelope::new("proj.tasks.add", Vec::new(), "celery");
        next.retries = 1;
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let retry = retried(&held, &next.encode().unwrap(), Some(at), "celery").unwrap();
        let m = decode(retry.to_kombu().as_bytes()).unwrap();
        assert_eq!((m.id.as_str(), m.args.clone(), m.retries), ("id-1", first.args.clone(), 1));
        assert_eq!(m.eta.as_deref().and_then(unix_ms), Some(1_800_000_000_000));
        assert_ne!(m.delivery_tag, first.delivery_tag, "a new delivery");
        assert_eq!(retried(b"\xC1Cgarbage", &next.encode().unwrap(), None, "celery"), None);
    }
}
