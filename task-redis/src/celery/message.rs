//! Celery task messages (protocol 2) as kombu's Redis transport keeps them: read into
//! their parts, and written from them.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::CeleryError;

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
    /// Its place in the group (a chord's results are in this order).
    pub group_index: Option<i64>,
    /// Keep no result.
    pub ignore_result: bool,
    /// kombu's priority (0–255 as sent; on Redis, 0 is served first).
    pub priority: u8,
    /// The body is MessagePack (`application/x-msgpack`), not JSON: written back so.
    pub msgpack: bool,
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
    group_index: Option<i64>,
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
    priority: Option<i64>,
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
        group_index: h.group_index,
        ignore_result: h.ignore_result.unwrap_or(false),
        // Clamped as kombu clamps it.
        priority: u8::try_from(raw.properties.priority.unwrap_or(0).clamp(0, 255)).unwrap_or(0),
        msgpack: raw.content_type == "application/x-msgpack",
        delivery_tag: raw.properties.delivery_tag.unwrap_or_default(),
        routing_key: raw.properties.delivery_info.and_then(|d| d.routing_key),
    })
}

/// kombu's separator between a queue's name and its priority step.
const PRIORITY_SEP: &str = "\x06\x16";

/// The kombu list a message of `priority` goes to on `queue`: the queue's own for
/// priority 0, `queue\x06\x16N` for the step `N` (3, 6 or 9) at or below it, as kombu's
/// Redis transport picks it (there, 0 is served first).
pub fn kombu_list(queue: &str, priority: u8) -> String {
    let step = match priority.min(9) {
        0..=2 => 0,
        3..=5 => 3,
        6..=8 => 6,
        _ => 9,
    };
    if step == 0 { queue.to_owned() } else { format!("{queue}{PRIORITY_SEP}{step}") }
}

impl CeleryMessage {
    /// A message for `task` with id `id`, no arguments, on `queue`, new (no retries).
    pub(crate) fn new(task: impl Into<String>, id: impl Into<String>, queue: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            root_id: Some(id.clone()),
            id,
            task: task.into(),
            args: Vec::new(),
            kwargs: Map::new(),
            embed: Map::new(),
            eta: None,
            expires: None,
            retries: 0,
            time_limit: (None, None),
            parent_id: None,
            group: None,
            group_index: None,
            ignore_result: false,
            priority: 0,
            msgpack: false,
            delivery_tag: uuid::Uuid::new_v4().to_string(),
            routing_key: Some(queue.into()),
        }
    }

    /// The entry kombu's Redis transport keeps for this message (what `LPUSH` puts in
    /// [`kombu_list`]): Celery's protocol 2 with a JSON body, the headers and properties
    /// Celery 5 writes, so a stock `celery worker` runs it. [`decode`] reads it back.
    pub fn to_kombu(&self) -> String {
        use base64::Engine as _;
        let canvas = |key: &str| self.embed.get(key).cloned().unwrap_or(Value::Null);
        let body = json!([
            self.args,
            self.kwargs,
            {"callbacks": canvas("callbacks"), "errbacks": canvas("errbacks"),
             "chain": canvas("chain"), "chord": canvas("chord")},
        ]);
        let (content_type, body) = match self.msgpack {
            true => ("application/x-msgpack", rmp_serde::to_vec(&body).unwrap_or_default()),
            false => ("application/json", body.to_string().into_bytes()),
        };
        let body = base64::engine::general_purpose::STANDARD.encode(body);
        let repr = |v: &Value| v.to_string();
        let queue = self.routing_key.as_deref().unwrap_or("celery");
        json!({
            "body": body,
            "content-encoding": if self.msgpack { "binary" } else { "utf-8" },
            "content-type": content_type,
            "headers": {
                "lang": "py",
                "task": self.task,
                "id": self.id,
                "shadow": null,
                "eta": self.eta,
                "expires": self.expires,
                "group": self.group,
                "group_index": self.group_index,
                "retries": self.retries,
                "timelimit": [self.time_limit.0, self.time_limit.1],
                "root_id": self.root_id,
                "parent_id": self.parent_id,
                "argsrepr": repr(&Value::Array(self.args.clone())),
                "kwargsrepr": repr(&Value::Object(self.kwargs.clone())),
                "origin": origin(),
                "ignore_result": self.ignore_result,
                "replaced_task_nesting": 0,
                "stamped_headers": null,
                "stamps": {},
            },
            "properties": {
                "correlation_id": self.id,
                "reply_to": "",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": self.priority,
                "body_encoding": "base64",
                "delivery_tag": self.delivery_tag,
            },
        })
        .to_string()
    }
}

/// Who sent it, as Celery names a producer (`pid@host`).
fn origin() -> String {
    format!("{}@{}", std::process::id(), task_core::host::hostname())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries Celery 5.7.0 (kombu 5.7.0) wrote to Redis, read back with `LRANGE`:
    /// `add.delay(2, 3)`, `add.apply_async((1,), {"y": 2}, countdown=30, expires=600,
    /// priority=5, time_limit=10, soft_time_limit=5, retries=1)`, the first step of
    /// `chain(add.s(1, 2), add.s(10))` and `send_task(.., serializer="msgpack")`
    /// (regenerate with scripts/celery/capture.py).
    const DELAY: &str = include_str!("../../tests/data/celery/delay.json");
    const OPTIONS: &str = include_str!("../../tests/data/celery/options.json");
    const CHAIN: &str = include_str!("../../tests/data/celery/chain.json");
    const MSGPACK: &str = include_str!("../../tests/data/celery/msgpack.json");

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
    fn what_celerity_writes_reads_back_as_the_same_message() {
        let mut m = CeleryMessage::new("proj.tasks.add", "id-1", "reports");
        m.args = vec![json!(2), json!("three")];
        m.kwargs.insert("pages".into(), json!([1, 2]));
        m.eta = Some("2026-12-01T18:00:00.000000+00:00".into());
        m.expires = Some("2026-12-01T19:00:00.000000+00:00".into());
        (m.retries, m.time_limit, m.priority, m.ignore_result) = (2, (Some(10.0), None), 6, true);
        m.parent_id = Some("parent".into());
        m.embed.insert("chain".into(), json!([{"task": "proj.tasks.next", "args": [], "kwargs": {}}]));
        let back = decode(m.to_kombu().as_bytes()).unwrap();
        let mut want = m.clone();
        // An embed as Celery writes it names all four of its parts.
        for part in ["callbacks", "errbacks", "chord"] {
            want.embed.insert(part.into(), Value::Null);
        }
        assert_eq!(back, want);
        m.msgpack = true;
        let back = decode(m.to_kombu().as_bytes()).unwrap();
        assert!(back.msgpack && back.args == m.args && back.kwargs == m.kwargs, "{back:?}");
    }

    #[test]
    fn celerity_writes_the_headers_celery_writes() {
        let ours: Value =
            serde_json::from_str(&CeleryMessage::new("proj.tasks.add", "id-1", "celery").to_kombu()).unwrap();
        let celerys: Value = serde_json::from_str(DELAY.trim()).unwrap();
        let names = |v: &Value, part: &str| {
            let mut keys: Vec<String> = v[part].as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        for part in ["headers", "properties"] {
            assert_eq!(names(&ours, part), names(&celerys, part), "{part}");
        }
        assert_eq!(ours["properties"]["delivery_info"], celerys["properties"]["delivery_info"]);
    }

    #[test]
    fn priorities_go_to_kombus_lists_by_step() {
        let lists: Vec<String> = [0, 2, 3, 5, 6, 9, 200].into_iter().map(|p| kombu_list("celery", p)).collect();
        assert_eq!(
            lists,
            [
                "celery",
                "celery",
                "celery\x06\x163",
                "celery\x06\x163",
                "celery\x06\x166",
                "celery\x06\x169",
                "celery\x06\x169"
            ]
        );
    }
}
