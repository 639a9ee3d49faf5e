//! Celery's remote control (kombu's "pidbox" mailbox) on Redis, read and answered:
//! what `celery inspect ping` / `registered` / `active` / `stats` and
//! `app.control.revoke(id)` send, and the replies they wait for.
//!
//! A request is a kombu message `PUBLISH`ed on the fanout channel `/{db}.celery.pidbox`;
//! its body (JSON) names the `method`, its `arguments`, the `destination` nodes (none:
//! every node), a `ticket` and where to reply (`reply_to`: an exchange and a routing
//! key). A reply is a kombu message `{node: answer}` with the ticket in its headers,
//! `LPUSH`ed into the queues bound to that exchange with that routing key (kombu keeps
//! the bindings in the set `_kombu.binding.<exchange>`, as `key\x06\x16pattern\x06\x16queue`).

use serde_json::{Map, Value, json};

/// The pidbox channel of database `db`.
pub(crate) fn channel(db: i64) -> String {
    format!("/{db}.celery.pidbox")
}

/// The set kombu keeps the bindings of `exchange` in.
pub(crate) fn bindings_key(exchange: &str) -> String {
    format!("_kombu.binding.{exchange}")
}

/// The queues among `bindings` (members of [`bindings_key`]) that take `routing_key`.
pub(crate) fn bound_queues(bindings: &[String], routing_key: &str) -> Vec<String> {
    bindings
        .iter()
        .filter_map(|member| {
            let mut parts = member.split("\x06\x16");
            let (key, _pattern, queue) = (parts.next()?, parts.next()?, parts.next()?);
            (key == routing_key && !queue.is_empty()).then(|| queue.to_owned())
        })
        .collect()
}

/// A remote-control request of Celery's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) arguments: Map<String, Value>,
    /// The nodes asked; `None`: every node.
    pub(crate) destination: Option<Vec<String>>,
    /// The exchange and routing key of the reply; `None`: no reply is wanted.
    pub(crate) reply_to: Option<(String, String)>,
    pub(crate) ticket: String,
}

/// What a request asks of Celerity.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Asked {
    /// A command each worker answers (`ping`, `registered`, `active`, `stats`).
    Command(&'static str),
    /// Revoke these tasks (durably, on Celerity's side), terminating them if asked.
    Revoke { ids: Vec<String>, terminate: bool },
    /// A method Celerity does not answer.
    Unknown(String),
}

impl Request {
    /// Reads a message of the pidbox channel; `None` for what is not a request.
    pub(crate) fn decode(raw: &[u8]) -> Option<Request> {
        use base64::Engine as _;
        let message: Value = serde_json::from_slice(raw).ok()?;
        let body = base64::engine::general_purpose::STANDARD.decode(message.get("body")?.as_str()?).ok()?;
        // The mailbox sends in the app's task serializer.
        let body: Value = match message.get("content-type").and_then(Value::as_str) {
            Some("application/x-msgpack") => rmp_serde::from_slice(&body).ok()?,
            _ => serde_json::from_slice(&body).ok()?,
        };
        let text = |v: &Value| v.as_str().map(str::to_owned);
        // Replies go to a pidbox reply exchange only (anyone may publish here: a request
        // must not make workers push into a task queue).
        let reply_to = body
            .get("reply_to")
            .and_then(|r| Some((text(r.get("exchange")?)?, text(r.get("routing_key")?)?)))
            .filter(|(exchange, _)| exchange.starts_with("reply.") && exchange.ends_with(".pidbox"));
        Some(Request {
            method: text(body.get("method")?)?,
            arguments: body.get("arguments").and_then(Value::as_object).cloned().unwrap_or_default(),
            // No nodes named (or none): every node, as Celery reads it.
            destination: body
                .get("destination")
                .and_then(Value::as_array)
                .map(|nodes| nodes.iter().filter_map(text).collect::<Vec<_>>())
                .filter(|nodes| !nodes.is_empty()),
            reply_to,
            ticket: body.get("ticket").and_then(text).unwrap_or_default(),
        })
    }

    /// What it asks.
    pub(crate) fn asked(&self) -> Asked {
        match self.method.as_str() {
            "ping" => Asked::Command("ping"),
            "registered" => Asked::Command("registered"),
            "active" => Asked::Command("active"),
            "stats" => Asked::Command("stats"),
            "reserved" => Asked::Command("reserved"),
            // Answered by each worker with what Celerity does not keep (Flower asks them).
            "scheduled" | "revoked" | "active_queues" | "conf" => Asked::Command("ping"),
            "revoke" => {
                let ids = match self.arguments.get("task_id") {
                    Some(Value::String(id)) => vec![id.clone()],
                    Some(Value::Array(ids)) => ids.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
                    _ => Vec::new(),
                };
                let terminate = self.arguments.get("terminate").and_then(Value::as_bool).unwrap_or(false);
                Asked::Revoke { ids, terminate }
            }
            other => Asked::Unknown(other.to_owned()),
        }
    }

    /// True when the node `node` is asked.
    pub(crate) fn asks(&self, node: &str) -> bool {
        self.destination.as_ref().is_none_or(|nodes| nodes.iter().any(|n| n == node))
    }
}

/// What a task's record says of it while it runs, for `inspect active`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Running {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    /// Its arguments by name.
    pub(crate) kwargs: Value,
    /// When it started (Unix seconds).
    pub(crate) started_s: Option<f64>,
}

/// Celery's answer to `request` from a worker whose Celerity answer (to
/// [`Request::asked`]'s command, as the worker encodes it) is `answer`; for `active`,
/// `running` says what is known of the tasks it names.
pub(crate) fn celery_answer(request: &Request, answer: &Value, running: &[Running]) -> Value {
    let field = |name: &str| answer.get(name).cloned().unwrap_or(Value::Null);
    match request.asked() {
        Asked::Command("registered") => field("tasks"),
        Asked::Command("active") => {
            let node = answer.get("name").cloned().unwrap_or(Value::Null);
            let ids = answer.get("active").and_then(Value::as_array).cloned().unwrap_or_default();
            // Celery's fields of a request, from what the records say of each task (see
            // [`Running`]); the arguments by name, as kwargs.
            let running = ids.into_iter().map(|id| {
                let known = id.as_str().and_then(|id| running.iter().find(|r| r.id == id));
                let name = known.and_then(|r| r.name.clone());
                json!({"id": id, "name": name, "args": [], "kwargs": known.map_or(json!({}), |r| r.kwargs.clone()),
                       "type": name, "hostname": node, "time_start": known.and_then(|r| r.started_s),
                       "acknowledged": true, "delivery_info": {}, "worker_pid": std::process::id()})
            });
            Value::Array(running.collect())
        }
        Asked::Command("reserved") => {
            let waiting = answer.get("reserved").and_then(Value::as_array).cloned().unwrap_or_default();
            let node = answer.get("name").cloned().unwrap_or(Value::Null);
            let waiting = waiting.into_iter().map(|r| {
                json!({"id": r["id"], "name": r["task"], "args": [], "kwargs": {}, "type": r["task"], "hostname": node,
                       "time_start": null, "acknowledged": false, "delivery_info": {"routing_key": r["queue"]},
                       "worker_pid": null})
            });
            Value::Array(waiting.collect())
        }
        Asked::Command("ping") => match request.method.as_str() {
            "conf" => json!({}),
            "scheduled" | "revoked" | "active_queues" => json!([]),
            _ => json!({"ok": "pong"}),
        },
        Asked::Command(_) => json!({
            "pid": std::process::id(),
            "pool": {"implementation": "celerity", "max-concurrency": field("concurrency")},
            "total": {},
            "broker": {"transport": "redis"},
            "celerity": {"succeeded": field("succeeded"), "failed": field("failed"), "retried": field("retried")},
        }),
        Asked::Revoke { ids, .. } => json!({"ok": format!("tasks {} flagged as revoked", ids.join(", "))}),
        Asked::Unknown(method) => json!({"error": format!("No such control command: {method}")}),
    }
}

/// The reply message (kombu's JSON entry) carrying `{node: answer}` for `request`.
pub(crate) fn reply_message(request: &Request, node: &str, answer: Value) -> String {
    use base64::Engine as _;
    let (exchange, routing_key) = request.reply_to.clone().unwrap_or_default();
    let mut body = Map::new();
    body.insert(node.to_owned(), answer);
    json!({
        "body": base64::engine::general_purpose::STANDARD.encode(Value::Object(body).to_string()),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"ticket": request.ticket, "clock": 0},
        "properties": {
            "delivery_mode": 1,
            "delivery_info": {"exchange": exchange, "routing_key": routing_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": uuid::Uuid::new_v4().to_string(),
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `celery -A proj inspect ping` (Celery 5.7) published, and what `revoke` did.
    const PING: &str = r#"{"body": "eyJtZXRob2QiOiAicGluZyIsICJhcmd1bWVudHMiOiB7fSwgImRlc3RpbmF0aW9uIjogbnVsbCwgInBhdHRlcm4iOiBudWxsLCAibWF0Y2hlciI6IG51bGwsICJ0aWNrZXQiOiAiYjZhM2E2YWEtNGZlNS00ZjI5LWI0MTctZjYxNGE4NmEzOWIzIiwgInJlcGx5X3RvIjogeyJleGNoYW5nZSI6ICJyZXBseS5jZWxlcnkucGlkYm94IiwgInJvdXRpbmdfa2V5IjogIjg2YzUyNGZhLTE3NzUtMzY5Zi05YjdkLWViMDYyMzNlNWY1YyJ9fQ==", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"clock": 1, "expires": 1796151507.4023733}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "celery.pidbox", "routing_key": ""}, "priority": 0, "body_encoding": "base64", "delivery_tag": "43b29e62-eca3-4acc-a85c-9a2ec05eb00f"}}"#;
    const REVOKE: &str = r#"{"body": "eyJtZXRob2QiOiAicmV2b2tlIiwgImFyZ3VtZW50cyI6IHsidGFza19pZCI6ICJhYmMtMTIzIiwgInRlcm1pbmF0ZSI6IGZhbHNlLCAic2lnbmFsIjogIlNJR1RFUk0ifSwgImRlc3RpbmF0aW9uIjogbnVsbCwgInBhdHRlcm4iOiBudWxsLCAibWF0Y2hlciI6IG51bGx9", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"clock": 1, "expires": 1796151511.1634974}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "celery.pidbox", "routing_key": ""}, "priority": 0, "body_encoding": "base64", "delivery_tag": "4680e816-02bb-42f9-8352-32ebd2d59543"}}"#;

    #[test]
    fn celerys_requests_read_into_what_they_ask() {
        let ping = Request::decode(PING.as_bytes()).unwrap();
        assert_eq!(ping.asked(), Asked::Command("ping"));
        assert_eq!(ping.reply_to, Some(("reply.celery.pidbox".into(), "86c524fa-1775-369f-9b7d-eb06233e5f5c".into())));
        assert_eq!(ping.ticket, "b6a3a6aa-4fe5-4f29-b417-f614a86a39b3");
        assert!(ping.asks("celerity@any"));
        let revoke = Request::decode(REVOKE.as_bytes()).unwrap();
        assert_eq!(revoke.asked(), Asked::Revoke { ids: vec!["abc-123".into()], terminate: false });
        assert_eq!(revoke.reply_to, None, "control.revoke() wants no reply");
        assert_eq!(Request::decode(b"not json"), None);
        assert_eq!(Request::decode(br#"{"body": "bm90IGpzb24="}"#), None);
    }

    #[test]
    fn a_destination_names_the_nodes_asked() {
        let mut r = Request::decode(PING.as_bytes()).unwrap();
        r.destination = Some(vec!["celerity@a".into()]);
        assert!(r.asks("celerity@a") && !r.asks("celerity@b"));
    }

    #[test]
    fn replies_go_only_to_a_pidbox_reply_exchange() {
        use base64::Engine as _;
        let with = |body: Value| {
            let body = base64::engine::general_purpose::STANDARD.encode(body.to_string());
            Request::decode(json!({"body": body, "content-type": "application/json"}).to_string().as_bytes()).unwrap()
        };
        let to =
            |exchange: &str| json!({"method": "ping", "reply_to": {"exchange": exchange, "routing_key": "celery"}});
        assert_eq!(with(to("")).reply_to, None, "the default exchange: a task queue");
        assert_eq!(with(to("celery")).reply_to, None);
        assert!(with(to("reply.celery.pidbox")).reply_to.is_some());
        assert_eq!(with(json!({"method": "ping", "destination": []})).destination, None, "[] is every node");
    }

    #[test]
    fn replies_go_to_the_queues_bound_with_the_routing_key() {
        let bindings = [
            "k1\x06\x16\x06\x16k1.reply.celery.pidbox".to_owned(),
            "k2\x06\x16\x06\x16other".to_owned(),
            "junk".into(),
        ];
        assert_eq!(bound_queues(&bindings, "k1"), ["k1.reply.celery.pidbox"]);
        assert!(bound_queues(&bindings, "k3").is_empty());
        let r = Request::decode(PING.as_bytes()).unwrap();
        let reply: Value = serde_json::from_str(&reply_message(&r, "celerity@h", json!({"ok": "pong"}))).unwrap();
        assert_eq!(reply["headers"]["ticket"], "b6a3a6aa-4fe5-4f29-b417-f614a86a39b3");
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.decode(reply["body"].as_str().unwrap()).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"celerity@h": {"ok": "pong"}}));
    }

    #[test]
    fn answers_take_celerys_shapes() {
        let r = |method: &str| Request { method: method.into(), ..Request::decode(PING.as_bytes()).unwrap() };
        let answer = json!({"worker": "w1", "name": "celerity@h", "tasks": ["proj.tasks.add"], "active": ["id-1"], "concurrency": 4});
        assert_eq!(celery_answer(&r("ping"), &answer, &[]), json!({"ok": "pong"}));
        assert_eq!(celery_answer(&r("registered"), &answer, &[]), json!(["proj.tasks.add"]));
        assert_eq!(celery_answer(&r("active"), &answer, &[])[0]["id"], "id-1");
        let known = Running {
            id: "id-1".into(),
            name: Some("proj.tasks.add".into()),
            kwargs: json!({"x": 1}),
            started_s: Some(1.5),
        };
        let active = celery_answer(&r("active"), &answer, &[known]);
        assert_eq!(
            (active[0]["name"].as_str(), active[0]["kwargs"]["x"].as_i64(), active[0]["time_start"].as_f64()),
            (Some("proj.tasks.add"), Some(1), Some(1.5))
        );
        assert_eq!(celery_answer(&r("stats"), &answer, &[])["pool"]["max-concurrency"], 4);
        assert!(celery_answer(&r("shutdown_now"), &answer, &[])["error"].as_str().unwrap().contains("shutdown_now"));
    }
}
