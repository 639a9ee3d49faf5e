//! Celery's events (what Flower and `celery events` show), as a Celerity worker of a
//! Celery queue sends them: `worker-online` / `-heartbeat` / `-offline` and
//! `task-received` / `-started` / `-succeeded` / `-failed` / `-retried` / `-revoked`,
//! each a kombu message `PUBLISH`ed on `/{db}.celeryev/<routing key>` (the type with
//! dots: `task.succeeded`; several at once: `task.multi`), as kombu's Redis transport
//! sends a topic exchange's messages.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use super::meta::ResultMeta;

/// Celery's logical clock of this process's events.
static CLOCK: AtomicU64 = AtomicU64::new(0);

/// An event of `kind` from the node `hostname`, with Celery's common fields.
fn event(kind: &str, hostname: &str, fields: Value) -> Value {
    let mut event = Map::new();
    event.insert("hostname".into(), hostname.into());
    event.insert("utcoffset".into(), json!(utcoffset()));
    event.insert("pid".into(), std::process::id().into());
    event.insert("clock".into(), (CLOCK.fetch_add(1, Ordering::Relaxed) + 1).into());
    if let Value::Object(fields) = fields {
        event.extend(fields);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    event.insert("timestamp".into(), json!(now));
    event.insert("type".into(), kind.into());
    Value::Object(event)
}

/// This machine's offset to UTC in hours as Celery sends it (`time.timezone // 3600`:
/// hours west of UTC), which Flower uses to read the timestamps.
fn utcoffset() -> i32 {
    let east = chrono::Local::now().offset().local_minus_utc();
    (-east).div_euclid(3600)
}

/// What a worker's heartbeat says, from Celerity's event detail
/// (`active=N succeeded=N failed=N …`).
fn counts(detail: &str) -> (u64, u64) {
    let field = |name: &str| {
        detail.split_whitespace().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok())
    };
    let processed = field("succeeded").unwrap_or(0) + field("failed").unwrap_or(0);
    (field("active").unwrap_or(0), processed)
}

/// A worker event (`worker-online`, `worker-heartbeat`, `worker-offline`) of the node
/// `hostname` that heartbeats every `freq` seconds.
pub(crate) fn worker(kind: &str, hostname: &str, detail: &str, freq: f64) -> Value {
    let (active, processed) = counts(detail);
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map_or_else(Vec::new, |l| l.split_whitespace().take(3).filter_map(|v| v.parse::<f64>().ok()).collect());
    event(
        kind,
        hostname,
        json!({"freq": freq, "active": active, "processed": processed, "loadavg": loadavg,
               "sw_ident": "celerity", "sw_ver": env!("CARGO_PKG_VERSION"), "sw_sys": std::env::consts::OS}),
    )
}

/// What a task's new state is told as: a run's first write (STARTED, or an end that
/// carries its start: it comes with the arguments `args`) as `task-received` then
/// `task-started` (Celerity receives and starts in one step), then a final state or a
/// retry as its own event. `name` and `args` (a JSON text) are the task's, when known.
pub(crate) fn task(
    id: &str,
    state: &ResultMeta,
    hostname: &str,
    name: Option<&str>,
    args: Option<&str>,
    runtime_s: Option<f64>,
) -> Vec<Value> {
    let starts = match state {
        ResultMeta::Started => true,
        ResultMeta::Other { .. } => false,
        _ => args.is_some(),
    };
    let mut events = Vec::new();
    if starts {
        events.push(event(
            "task-received",
            hostname,
            json!({"uuid": id, "name": name, "args": args.unwrap_or("()"), "kwargs": "{}", "retries": 0,
                   "eta": null, "expires": null, "root_id": null, "parent_id": null}),
        ));
        events.push(event("task-started", hostname, json!({"uuid": id})));
    }
    match state {
        ResultMeta::Started | ResultMeta::Other { .. } => {}
        ResultMeta::Success(value) => events.push(event(
            "task-succeeded",
            hostname,
            json!({"uuid": id, "result": value.to_string(), "runtime": runtime_s}),
        )),
        ResultMeta::Failure { kind, message } => events.push(event(
            "task-failed",
            hostname,
            json!({"uuid": id, "exception": format!("{kind}('{message}')"), "traceback": message}),
        )),
        ResultMeta::Retry { message } => events.push(event(
            "task-retried",
            hostname,
            json!({"uuid": id, "exception": format!("Retry('{message}')"), "traceback": message}),
        )),
        ResultMeta::Revoked { reason } => events.push(event(
            "task-revoked",
            hostname,
            json!({"uuid": id, "terminated": reason == "terminated", "signum": null, "expired": reason.contains("expire")}),
        )),
    }
    events
}

/// The channel and the kombu message that carry `events` (one, or `task.multi`).
pub(crate) fn message(db: i64, hostname: &str, mut events: Vec<Value>) -> Option<(String, String)> {
    use base64::Engine as _;
    let (routing_key, body) = match events.len() {
        0 => return None,
        1 => {
            let one = events.pop()?;
            (one.get("type")?.as_str()?.replace('-', "."), one)
        }
        _ => (format!("{}.multi", events[0].get("type")?.as_str()?.split('-').next()?), Value::Array(events)),
    };
    let message = json!({
        "body": base64::engine::general_purpose::STANDARD.encode(body.to_string()),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"hostname": hostname},
        "properties": {
            "delivery_mode": 1,
            "delivery_info": {"exchange": "celeryev", "routing_key": routing_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": uuid::Uuid::new_v4().to_string(),
        },
    });
    Some((format!("/{db}.celeryev/{routing_key}"), message.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(message: &str) -> Value {
        use base64::Engine as _;
        let m: Value = serde_json::from_str(message).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(m["body"].as_str().unwrap()).unwrap())
            .unwrap()
    }

    #[test]
    fn a_heartbeat_has_celerys_fields_and_the_workers_counts() {
        let beat = worker("worker-heartbeat", "rusty@h", "active=2 succeeded=5 failed=1 last_fetch_ms_ago=3", 3.3);
        let (channel, sent) = message(0, "rusty@h", vec![beat]).unwrap();
        assert_eq!(channel, "/0.celeryev/worker.heartbeat");
        let b = body(&sent);
        assert_eq!(
            (b["type"].as_str(), b["active"].as_u64(), b["processed"].as_u64()),
            (Some("worker-heartbeat"), Some(2), Some(6))
        );
        for field in
            ["hostname", "utcoffset", "pid", "clock", "freq", "loadavg", "sw_ident", "sw_ver", "sw_sys", "timestamp"]
        {
            assert!(b.get(field).is_some(), "{field}");
        }
    }

    #[test]
    fn a_start_is_received_and_started_and_an_end_its_own_event() {
        let started = task("t1", &ResultMeta::Started, "rusty@h", Some("proj.tasks.add"), Some("{\"x\":1}"), None);
        let (channel, sent) = message(2, "rusty@h", started).unwrap();
        assert_eq!(channel, "/2.celeryev/task.multi");
        let b = body(&sent);
        assert_eq!(
            (b[0]["type"].as_str(), b[0]["name"].as_str(), b[1]["type"].as_str()),
            (Some("task-received"), Some("proj.tasks.add"), Some("task-started"))
        );
        assert!(b[0]["clock"].as_u64() < b[1]["clock"].as_u64(), "the clock moves on");
        let done = task("t1", &ResultMeta::Success(json!(5)), "rusty@h", None, None, Some(0.01));
        let (channel, sent) = message(0, "rusty@h", done).unwrap();
        assert_eq!((channel.as_str(), body(&sent)["result"].as_str()), ("/0.celeryev/task.succeeded", Some("5")));
        let failed =
            task("t1", &ResultMeta::Failure { kind: "TaskError".into(), message: "no".into() }, "h", None, None, None);
        assert_eq!(failed[0]["exception"], "TaskError('no')");
        assert!(message(0, "h", Vec::new()).is_none());
    }

    #[test]
    fn an_end_that_carries_its_start_is_received_and_started_first() {
        let done =
            task("t1", &ResultMeta::Success(json!(5)), "rusty@h", Some("proj.tasks.add"), Some("[1]"), Some(0.01));
        let types: Vec<_> = done.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["task-received", "task-started", "task-succeeded"]);
        assert_eq!(done[0]["name"], "proj.tasks.add");
        let (channel, _) = message(0, "rusty@h", done).unwrap();
        assert_eq!(channel, "/0.celeryev/task.multi");
    }
}
