//! Celery interop, its first part: the task messages Python's Celery (protocol 2) puts
//! on Redis through kombu's Redis transport, read into their parts, and their arguments
//! mapped onto a Rust task's parameters.
//!
//! A kombu message on Redis is a JSON object in the queue's list (`celery`, or
//! `celery\x06\x16N` for priority step `N`): `headers` (task name, id, `eta`,
//! `expires`, `retries`, `timelimit`, `root_id`, `parent_id`, `group`,
//! `ignore_result`, …), `properties` (`delivery_tag`, `priority`, `delivery_info`,
//! `reply_to`), and `body`, base64 of the serialized `[args, kwargs, embed]` (JSON or
//! MessagePack, by `content-type`). What runs the messages (fetch, results in Celery's
//! backend format, events, remote control) builds on this; so does [`ResultMeta`], a
//! task's state as Celery's Redis result backend keeps it (`celery-task-meta-<id>`), which
//! Python's `AsyncResult(id).get()` reads.

use serde::Deserialize;
use serde_json::{Map, Value};

/// Why a message is not a Celery task message Celerity can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CeleryError(String);

impl CeleryError {
    fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

/// A Celery task message (protocol 2), as read from a kombu Redis list.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CeleryMessage {
    /// The task id (`headers.id`).
    pub id: String,
    /// The task name (`headers.task`), e.g. `proj.tasks.add`.
    pub task: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// `callbacks`, `errbacks`, `chain` and `chord` of the body's third part (canvas).
    pub embed: Map<String, Value>,
    /// Not before (ISO 8601), from `countdown` or `eta`.
    pub eta: Option<String>,
    /// Not after (ISO 8601).
    pub expires: Option<String>,
    /// Retries so far.
    pub retries: u32,
    /// `(hard, soft)` time limits in seconds.
    pub time_limit: (Option<f64>, Option<f64>),
    /// The first task of the workflow it is part of.
    pub root_id: Option<String>,
    /// The task that sent it.
    pub parent_id: Option<String>,
    /// The group the task is a member of.
    pub group: Option<String>,
    /// Keep no result.
    pub ignore_result: bool,
    /// kombu's priority (0–255 as sent; on Redis, 0 is served first).
    pub priority: u8,
    /// kombu's tag of this delivery.
    pub delivery_tag: String,
    /// The queue it was routed to (`delivery_info.routing_key`).
    pub routing_key: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    body: String,
    #[serde(rename = "content-type")]
    content_type: String,
    #[serde(rename = "content-encoding", default)]
    content_encoding: Option<String>,
    headers: Headers,
    #[serde(default)]
    properties: Properties,
}

#[derive(Deserialize)]
struct Headers {
    task: String,
    id: String,
    #[serde(default)]
    eta: Option<String>,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    timelimit: Option<(Option<f64>, Option<f64>)>,
    #[serde(default)]
    root_id: Option<String>,
    #[serde(default)]
    parent_id: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    ignore_result: Option<bool>,
}

#[derive(Deserialize, Default)]
struct Properties {
    #[serde(default)]
    body_encoding: Option<String>,
    #[serde(default)]
    delivery_tag: Option<String>,
    #[serde(default)]
    priority: Option<u8>,
    #[serde(default)]
    delivery_info: Option<DeliveryInfo>,
}

#[derive(Deserialize, Default)]
struct DeliveryInfo {
    #[serde(default)]
    routing_key: Option<String>,
}

/// Reads one entry of a kombu Redis list. Protocol 1 messages (no `headers.task`), other
/// serializers (pickle and yaml are never read: a message does not choose what code
/// decodes it) and malformed bodies are errors that say what is wrong.
pub fn decode(raw: &[u8]) -> Result<CeleryMessage, CeleryError> {
    let raw: Raw = serde_json::from_slice(raw)
        .map_err(|e| CeleryError::new(format!("not a kombu message with protocol 2 headers: {e}")))?;
    let body = match raw.properties.body_encoding.as_deref() {
        Some("base64") | None => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(raw.body.as_bytes())
                .map_err(|e| CeleryError::new(format!("the body is not base64: {e}")))?
        }
        Some(other) => return Err(CeleryError::new(format!("body encoding `{other}` is not supported"))),
    };
    let parts: Value = match raw.content_type.as_str() {
        "application/json" => {
            if raw.content_encoding.as_deref().is_some_and(|e| !e.eq_ignore_ascii_case("utf-8")) {
                return Err(CeleryError::new("a JSON body must be utf-8"));
            }
            serde_json::from_slice(&body).map_err(|e| CeleryError::new(format!("the JSON body does not parse: {e}")))?
        }
        "application/x-msgpack" => rmp_serde::from_slice(&body)
            .map_err(|e| CeleryError::new(format!("the MessagePack body does not parse: {e}")))?,
        other => {
            return Err(CeleryError::new(format!(
                "serializer `{other}` is not supported (use json or msgpack: task_serializer = \"json\")"
            )));
        }
    };
    let (args, kwargs, embed) = match parts {
        Value::Array(parts) if parts.len() == 3 => {
            let mut parts = parts.into_iter();
            let (args, kwargs, embed) = (parts.next(), parts.next(), parts.next());
            let args = match args {
                Some(Value::Array(args)) => args,
                _ => return Err(CeleryError::new("the body's args are not a list")),
            };
            let kwargs = match kwargs {
                Some(Value::Object(kwargs)) => kwargs,
                _ => return Err(CeleryError::new("the body's kwargs are not a map")),
            };
            let embed = match embed {
                Some(Value::Object(embed)) => embed,
                Some(Value::Null) | None => Map::new(),
                _ => return Err(CeleryError::new("the body's embed is not a map")),
            };
            (args, kwargs, embed)
        }
        _ => return Err(CeleryError::new("the body is not [args, kwargs, embed] (protocol 2)")),
    };
    let h = raw.headers;
    Ok(CeleryMessage {
        id: h.id,
        task: h.task,
        args,
        kwargs,
        embed,
        eta: h.eta,
        expires: h.expires,
        retries: h.retries.unwrap_or(0),
        time_limit: h.timelimit.unwrap_or((None, None)),
        root_id: h.root_id,
        parent_id: h.parent_id,
        group: h.group,
        ignore_result: h.ignore_result.unwrap_or(false),
        priority: raw.properties.priority.unwrap_or(0),
        delivery_tag: raw.properties.delivery_tag.unwrap_or_default(),
        routing_key: raw.properties.delivery_info.and_then(|d| d.routing_key),
    })
}

/// What a Celery message is held with in a worker's processing list, before the message
/// as Celery wrote it: `0xC1` then `C`, where every entry of Celerity's has `0xC1` then a
/// priority digit (and `0xC1` begins no MessagePack, JSON or UTF-8 text). A receipt says
/// so where it came from, whatever the message holds.
pub(crate) const HELD: &[u8] = b"\xC1C";

/// True when a receipt is a held Celery message.
pub(crate) fn is_kombu(receipt: &[u8]) -> bool {
    receipt.starts_with(HELD)
}

/// Celerity's envelope for a Celery message on `queue`: its task, its arguments by name
/// (those of `params`, the registered Rust task's), its id, retries and limits. A task
/// no Rust task answers to, or arguments that do not fit, still make an envelope: the
/// worker then dead-letters it with the reason, as any such message.
pub(crate) fn to_envelope(m: &CeleryMessage, queue: &str, params: Option<&[&str]>) -> Vec<u8> {
    // What cannot run yet, or does not fit: arguments no task decodes (a string saying
    // why), so the worker dead-letters the message with that reason and stores the
    // failure, as for any message whose arguments do not fit.
    let refused = |why: String| {
        tracing::warn!(task = %m.task, id = %m.id, why, "a Celery message Celerity does not run");
        rmp_serde::to_vec_named(&why).unwrap_or_default()
    };
    let canvas =
        ["chain", "callbacks", "errbacks", "chord"].into_iter().find(|k| m.embed.get(*k).is_some_and(|v| !v.is_null()));
    let args = match (params, canvas) {
        (_, Some(part)) => refused(format!("Celery canvas ({part}) is not supported by Celerity workers yet")),
        (Some(params), None) => match args_by_name(&m.task, params, m.args.clone(), m.kwargs.clone()) {
            Ok(named) => rmp_serde::to_vec_named(&named).unwrap_or_default(),
            Err(e) => refused(e.to_string()),
        },
        (None, None) => rmp_serde::to_vec_named(&Map::new()).unwrap_or_default(),
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
    envelope.ignore_result = m.ignore_result;
    envelope.encode().unwrap_or_default()
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

/// The state Celery's backend shows for `meta`, when Celery has one for it (not for
/// PENDING or PROGRESS).
pub(crate) fn meta_of(meta: &task_core::TaskMeta) -> Option<ResultMeta> {
    use task_core::TaskState;
    let text = || meta.error.clone().unwrap_or_default();
    Some(match meta.state {
        TaskState::Success => {
            let value =
                meta.result.as_deref().and_then(|r| rmp_serde::from_slice::<Value>(r).ok()).unwrap_or(Value::Null);
            ResultMeta::Success(value)
        }
        TaskState::Failure => ResultMeta::Failure { kind: "TaskError".into(), message: text() },
        TaskState::Started => ResultMeta::Started,
        TaskState::Retry => ResultMeta::Retry { message: text() },
        TaskState::Revoked => ResultMeta::Revoked { reason: text() },
        _ => return None,
    })
}

/// The key of a task's state in Celery's Redis result backend.
pub fn result_key(id: &str) -> String {
    format!("celery-task-meta-{id}")
}

/// A task's state as Celery's Redis result backend stores it: the JSON string at
/// [`result_key`], set with its expiry and `PUBLISH`ed on the key's name (what a waiting
/// `AsyncResult.get()` listens to).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ResultMeta {
    /// Ended with this value (JSON).
    Success(Value),
    /// Ended with an error: Python raises an exception of type `kind` (created by
    /// Celery, a subclass of `Exception`) with `message`.
    Failure {
        /// The exception's class name.
        kind: String,
        /// Its text.
        message: String,
    },
    /// Running (a worker took it).
    Started,
    /// Failed, to be retried.
    Retry {
        /// Why it failed.
        message: String,
    },
    /// Revoked.
    Revoked {
        /// Why.
        reason: String,
    },
}

impl ResultMeta {
    /// Celery's name of the state.
    pub fn status(&self) -> &'static str {
        match self {
            ResultMeta::Success(_) => "SUCCESS",
            ResultMeta::Failure { .. } => "FAILURE",
            ResultMeta::Started => "STARTED",
            ResultMeta::Retry { .. } => "RETRY",
            ResultMeta::Revoked { .. } => "REVOKED",
        }
    }

    /// The stored JSON for task `id`, done at `date_done` (ISO 8601, for the final
    /// states), in the fields and shapes Celery 5 writes: an error as
    /// `{"exc_type", "exc_message": [..], "exc_module": null}`, which Celery turns back
    /// into an exception class of that name.
    pub fn to_json(&self, id: &str, date_done: Option<&str>) -> String {
        let error = |kind: &str, message: &str| json_error(kind, message);
        let (result, traceback) = match self {
            ResultMeta::Success(value) => (value.clone(), Value::Null),
            ResultMeta::Failure { kind, message } => (error(kind, message), Value::String(message.clone())),
            ResultMeta::Started => (Value::Null, Value::Null),
            ResultMeta::Retry { message } => (error("Retry", message), Value::String(message.clone())),
            ResultMeta::Revoked { reason } => (revoked(reason), Value::Null),
        };
        let ready = matches!(self, ResultMeta::Success(_) | ResultMeta::Failure { .. } | ResultMeta::Revoked { .. });
        let mut meta = Map::new();
        meta.insert("status".into(), Value::String(self.status().into()));
        meta.insert("result".into(), result);
        meta.insert("traceback".into(), traceback);
        meta.insert("children".into(), Value::Array(Vec::new()));
        meta.insert("date_done".into(), date_done.filter(|_| ready).map_or(Value::Null, |d| Value::String(d.into())));
        meta.insert("task_id".into(), Value::String(id.into()));
        Value::Object(meta).to_string()
    }
}

/// Celery's own `TaskRevokedError` (its module named: Python raises the real class).
fn revoked(reason: &str) -> Value {
    let mut exc = Map::new();
    exc.insert("exc_type".into(), Value::String("TaskRevokedError".into()));
    exc.insert("exc_message".into(), Value::Array(vec![Value::String(reason.into())]));
    exc.insert("exc_module".into(), Value::String("celery.exceptions".into()));
    Value::Object(exc)
}

fn json_error(kind: &str, message: &str) -> Value {
    let mut exc = Map::new();
    exc.insert("exc_type".into(), Value::String(kind.into()));
    exc.insert("exc_message".into(), Value::Array(vec![Value::String(message.into())]));
    exc.insert("exc_module".into(), Value::Null);
    Value::Object(exc)
}

/// The arguments of a call by position and by name, mapped onto `params` (a task's
/// parameters in order, [`task_core::TaskEntry::params`]) as Celery maps them onto a
/// Python function's: the positional ones first, then the named ones. Too many, a name
/// given twice, an unknown name or a missing parameter is an error that says which.
pub fn args_by_name(
    task: &str,
    params: &[&str],
    args: Vec<Value>,
    mut kwargs: Map<String, Value>,
) -> Result<Map<String, Value>, CeleryError> {
    if args.len() > params.len() {
        return Err(CeleryError::new(format!(
            "{task}() takes {} positional arguments but {} were given",
            params.len(),
            args.len()
        )));
    }
    let mut named = Map::with_capacity(params.len());
    for (param, value) in params.iter().zip(args) {
        if kwargs.contains_key(*param) {
            return Err(CeleryError::new(format!("{task}() got multiple values for argument '{param}'")));
        }
        named.insert((*param).to_owned(), value);
    }
    for param in &params[named.len()..] {
        match kwargs.remove(*param) {
            Some(value) => {
                named.insert((*param).to_owned(), value);
            }
            None => return Err(CeleryError::new(format!("{task}() missing required argument: '{param}'"))),
        }
    }
    if let Some(unknown) = kwargs.keys().next() {
        return Err(CeleryError::new(format!("{task}() got an unexpected keyword argument '{unknown}'")));
    }
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Entries Celery 5.7.0 (kombu 5.7.0) wrote to Redis, read back with `LRANGE`:
    /// `add.delay(2, 3)`, `add.apply_async((1,), {"y": 2}, countdown=30, expires=600,
    /// priority=5, time_limit=10, soft_time_limit=5, retries=1)`, the first step of
    /// `chain(add.s(1, 2), add.s(10))` and `send_task(.., serializer="msgpack")`
    /// (regenerate with scripts/celery/capture.py).
    const DELAY: &str = include_str!("../tests/data/celery/delay.json");
    const OPTIONS: &str = include_str!("../tests/data/celery/options.json");
    const CHAIN: &str = include_str!("../tests/data/celery/chain.json");
    const MSGPACK: &str = include_str!("../tests/data/celery/msgpack.json");

    #[test]
    fn a_delay_reads_into_its_task_id_and_arguments() {
        let m = decode(DELAY.trim().as_bytes()).unwrap();
        assert_eq!(
            (m.task.as_str(), m.args.clone(), m.kwargs.clone()),
            ("proj.tasks.add", vec![json!(2), json!(3)], Map::new())
        );
        assert_eq!(m.root_id.as_deref(), Some(m.id.as_str()));
        assert_eq!((m.retries, m.time_limit, m.ignore_result, m.priority), (0, (None, None), false, 0));
        assert_eq!(m.routing_key.as_deref(), Some("celery"));
        assert!(!m.delivery_tag.is_empty() && m.eta.is_none() && m.expires.is_none());
        assert_eq!(m.embed.get("chain"), Some(&Value::Null));
    }

    #[test]
    fn the_options_of_apply_async_are_in_the_headers() {
        let m = decode(OPTIONS.trim().as_bytes()).unwrap();
        assert_eq!((m.args.clone(), m.kwargs.get("y")), (vec![json!(1)], Some(&json!(2))));
        assert!(m.eta.as_deref().is_some_and(|eta| eta.starts_with("20")), "{:?}", m.eta);
        assert!(m.expires.is_some());
        assert_eq!((m.retries, m.time_limit, m.priority), (1, (Some(10.0), Some(5.0)), 5));
    }

    #[test]
    fn a_chain_carries_its_next_steps_in_the_embed() {
        let m = decode(CHAIN.trim().as_bytes()).unwrap();
        let chain = m.embed["chain"].as_array().expect("the rest of the chain");
        assert_eq!(chain[0]["task"], "proj.tasks.add");
        assert_eq!(chain[0]["args"], json!([10]));
    }

    #[test]
    fn a_msgpack_body_reads_as_a_json_one() {
        let m = decode(MSGPACK.trim().as_bytes()).unwrap();
        assert_eq!((m.task.as_str(), m.args.clone()), ("proj.tasks.add", vec![json!(4), json!(5)]));
    }

    #[test]
    fn what_is_not_a_runnable_message_says_why() {
        let e = |raw: &str| decode(raw.as_bytes()).unwrap_err().to_string();
        assert!(e("garbage").contains("not a kombu message"));
        let with = |ct: &str, body: &str| {
            format!(
                r#"{{"body": "{body}", "content-type": "{ct}", "headers": {{"task": "t", "id": "1"}}, "properties": {{"body_encoding": "base64"}}}}"#
            )
        };
        assert!(e(&with("application/x-python-serialize", "gAN9cQAu")).contains("not supported"));
        assert!(e(&with("application/json", "!!!")).contains("not base64"));
        // base64 of `[1, 2]`: protocol 1's shape, not [args, kwargs, embed].
        assert!(e(&with("application/json", "WzEsIDJd")).contains("protocol 2"));
    }

    #[test]
    fn result_metas_have_celerys_fields_and_shapes() {
        let at = Some("2026-12-01T17:45:00.123456+00:00");
        let meta = |m: ResultMeta| serde_json::from_str::<Value>(&m.to_json("id-1", at)).unwrap();
        let ok = meta(ResultMeta::Success(json!(5)));
        assert_eq!(
            ok,
            json!({"status": "SUCCESS", "result": 5, "traceback": null, "children": [],
                              "date_done": at, "task_id": "id-1"})
        );
        let failed = meta(ResultMeta::Failure { kind: "TaskError".into(), message: "division by zero".into() });
        assert_eq!(
            failed["result"],
            json!({"exc_type": "TaskError", "exc_message": ["division by zero"], "exc_module": null})
        );
        assert_eq!(failed["status"], "FAILURE");
        assert_eq!(meta(ResultMeta::Started)["date_done"], Value::Null, "not done");
        assert_eq!(meta(ResultMeta::Revoked { reason: "revoked".into() })["status"], "REVOKED");
        assert_eq!(result_key("id-1"), "celery-task-meta-id-1");
    }

    #[test]
    fn arguments_map_by_position_then_by_name_as_python_would() {
        let params = ["x", "y", "z"];
        let map = |args: Value, kwargs: Value| {
            let (Value::Array(args), Value::Object(kwargs)) = (args, kwargs) else { unreachable!() };
            args_by_name("add", &params, args, kwargs)
        };
        assert_eq!(
            map(json!([1, 2]), json!({"z": 3})).unwrap(),
            json!({"x": 1, "y": 2, "z": 3}).as_object().unwrap().clone()
        );
        assert_eq!(map(json!([]), json!({"z": 3, "x": 1, "y": 2})).unwrap().len(), 3);
        let e = |args, kwargs| map(args, kwargs).unwrap_err().to_string();
        assert_eq!(e(json!([1, 2, 3, 4]), json!({})), "add() takes 3 positional arguments but 4 were given");
        assert_eq!(e(json!([1]), json!({"x": 2, "y": 1, "z": 0})), "add() got multiple values for argument 'x'");
        assert_eq!(e(json!([1, 2]), json!({})), "add() missing required argument: 'z'");
        assert_eq!(e(json!([1, 2, 3]), json!({"w": 1})), "add() got an unexpected keyword argument 'w'");
    }
}
