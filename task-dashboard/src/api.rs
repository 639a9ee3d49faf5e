//! The JSON API (and the data the pages render).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use task_core::capability::{Inspect, WorkerDirectory};
use task_core::{Envelope, TaskId};

use crate::Dashboard;

/// An error answer: the status and `{"error": "..."}`.
pub(crate) struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl<E: std::fmt::Display> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

pub(crate) type ApiResult = Result<Json<Value>, ApiError>;

fn inspector(dash: &Dashboard) -> Result<&dyn Inspect, ApiError> {
    dash.app
        .broker()
        .inspect()
        .ok_or_else(|| ApiError(StatusCode::NOT_IMPLEMENTED, "this broker cannot be inspected".into()))
}

fn directory(dash: &Dashboard) -> Result<&dyn WorkerDirectory, ApiError> {
    dash.app
        .broker()
        .directory()
        .ok_or_else(|| ApiError(StatusCode::NOT_IMPLEMENTED, "this broker keeps no worker directory".into()))
}

pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
}

pub(crate) async fn workers_data(dash: &Dashboard) -> Result<Value, ApiError> {
    let now = chrono::Utc::now().timestamp_millis();
    let workers = directory(dash)?.workers().await?;
    Ok(Value::Array(
        workers
            .iter()
            .map(|w| {
                json!({
                    "id": w.id, "hostname": w.hostname, "pid": w.pid, "concurrency": w.concurrency,
                    "queues": w.queues, "tasks": w.tasks, "started": time(w.started_ms),
                    "heartbeat_age_ms": (now - w.heartbeat_ms).max(0), "last_fetch_age_ms": (now - w.last_fetch_ms).max(0), "saturated": w.saturated, "name": w.name, "succeeded": w.succeeded, "failed": w.failed, "active": w.active,
                })
            })
            .collect(),
    ))
}

/// The periodic entries that running schedulers announced.
pub(crate) async fn schedule_data(dash: &Dashboard) -> Result<Value, ApiError> {
    let ticks = dash
        .app
        .broker()
        .tick_store()
        .ok_or_else(|| ApiError(StatusCode::NOT_IMPLEMENTED, "this broker keeps no schedules".into()))?;
    let entries = ticks.schedules().await?;
    Ok(Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({
                    "name": e.name, "task": e.task, "schedule": e.schedule, "next": e.next_ms.map(time),
                    "last": e.last_ms.map(time), "scheduler": e.scheduler,
                })
            })
            .collect(),
    ))
}

/// The newest events, newest first.
pub(crate) async fn events_data(dash: &Dashboard, limit: usize) -> Result<Value, ApiError> {
    let events = history(dash)?.events(limit).await?;
    Ok(Value::Array(
        events
            .iter()
            .map(|e| {
                json!({
                    "id": e.id, "at": time(e.at_ms), "kind": e.kind.as_str(), "task_id": e.task_id.as_ref().map(TaskId::as_str),
                    "task": e.task, "worker": e.worker, "detail": e.detail,
                })
            })
            .collect(),
    ))
}

pub(crate) async fn events(State(dash): State<Dashboard>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100).min(10_000);
    Ok(Json(events_data(&dash, limit).await?))
}

pub(crate) async fn schedule(State(dash): State<Dashboard>) -> ApiResult {
    Ok(Json(schedule_data(&dash).await?))
}

pub(crate) async fn queues_data(dash: &Dashboard) -> Result<Value, ApiError> {
    let inspect = inspector(dash)?;
    let mut out = Vec::new();
    for queue in inspect.queues().await? {
        let s = inspect.queue_stats(&queue).await?;
        out.push(json!({
            "queue": queue, "ready": s.ready, "scheduled": s.scheduled, "in_flight": s.in_flight, "dead": s.dead,
            "paused": s.paused,
        }));
    }
    Ok(Value::Array(out))
}

pub(crate) async fn dead_data(dash: &Dashboard, limit: usize) -> Result<Value, ApiError> {
    let dead = inspector(dash)?.dead_letters(limit).await?;
    Ok(Value::Array(
        dead.iter()
            .map(|d| {
                let envelope = Envelope::decode(&d.payload).ok();
                json!({
                    "at": time(d.at_ms), "queue": d.queue, "reason": d.reason,
                    "task": envelope.as_ref().map(|e| e.task.clone()), "id": envelope.as_ref().map(|e| e.id.to_string()),
                })
            })
            .collect(),
    ))
}

pub(crate) async fn overview_data(dash: &Dashboard) -> Result<Value, ApiError> {
    let workers = workers_data(dash).await?;
    let list = workers.as_array().cloned().unwrap_or_default();
    let sum = |key: &str| list.iter().filter_map(|w| w[key].as_u64()).sum::<u64>();
    // Workers that stopped in the last hour and have not come back (an id is one run of a
    // worker: a restarted process is a new worker).
    let hour_ago = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let offline = match dash.app.backend().history() {
        Some(history) => {
            let online: std::collections::HashSet<&str> = list.iter().filter_map(|w| w["id"].as_str()).collect();
            let gone = history.workers_offline(hour_ago).await?;
            gone.iter()
                .filter(|(id, _)| !online.contains(id.as_str()))
                .map(|(id, _)| id.as_str())
                .collect::<std::collections::HashSet<_>>()
                .len()
        }
        None => 0,
    };
    Ok(json!({
        "workers_online": list.len(),
        "workers_offline": offline,
        "concurrency": sum("concurrency"),
        "succeeded": sum("succeeded"),
        "failed": sum("failed"),
        "queues": queues_data(dash).await?,
    }))
}

pub(crate) async fn task_data(dash: &Dashboard, id: &str) -> Result<Value, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("no task with id `{id}`"));
    let task_id: TaskId = id.parse().map_err(|_| not_found())?;
    let meta = dash.app.backend().get(&task_id).await?.ok_or_else(not_found)?;
    let decode = |bytes: &Option<Vec<u8>>| {
        bytes.as_deref().and_then(|b| task_core::codec::decode::<Value>(b, "a stored value").ok())
    };
    Ok(json!({
        "id": task_id, "state": meta.state, "task": meta.task, "worker": meta.worker, "retries": meta.retries,
        "result": decode(&meta.result), "progress": decode(&meta.progress), "error": meta.error,
        "args": decode(&meta.args), "queue": meta.queue,
        "started": meta.started_ms.map(time), "finished": meta.finished_ms.map(time),
        // The worker's own measure of the run, else the time from start to end.
        "runtime_ms": meta.runtime_ms.and_then(|ms| i64::try_from(ms).ok()).or(meta.started_ms.zip(meta.finished_ms).map(|(s, f)| f - s)),
    }))
}

fn history(dash: &Dashboard) -> Result<&dyn task_core::TaskHistory, ApiError> {
    dash.app
        .backend()
        .history()
        .ok_or_else(|| ApiError(StatusCode::NOT_IMPLEMENTED, "this result backend keeps no task history".into()))
}

/// The recent tasks that pass the query's filters: `state`, `task`, `since_minutes`, `limit`.
pub(crate) async fn tasks_data(dash: &Dashboard, q: &HashMap<String, String>) -> Result<Value, ApiError> {
    let mut filter = task_core::TaskFilter::new();
    if let Some(state) = q.get("state").filter(|s| !s.is_empty()) {
        let state: task_core::TaskState =
            state.parse().map_err(|e: task_core::Error| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        filter = filter.state(state);
    }
    if let Some(task) = q.get("task").filter(|t| !t.is_empty()) {
        filter = filter.task(task.clone());
    }
    if let Some(minutes) = q.get("since_minutes").and_then(|m| m.parse::<i64>().ok()) {
        filter = filter.since_ms(chrono::Utc::now().timestamp_millis() - minutes * 60_000);
    }
    let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50).clamp(1, 1000);
    // Pages of `limit`, newest first: page n skips n * limit matches (at most 5,000 deep).
    let page = q.get("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(0).min(5000 / limit);
    // Search by an argument value: a substring of the arguments as JSON, over the newest
    // thousand tasks that pass the other filters.
    let needle = q.get("args").map(|a| a.trim().to_owned()).filter(|a| !a.is_empty());
    let wanted = if needle.is_some() { 1000 } else { limit * (page + 1) };
    let found = history(dash)?.recent(&filter, wanted).await?;
    let args_json = |meta: &task_core::TaskMeta| {
        meta.args.as_deref().and_then(|b| task_core::codec::decode::<Value>(b, "a stored value").ok())
    };
    let found: Vec<_> = found
        .into_iter()
        .filter(|(_, _, meta)| {
            needle.as_ref().is_none_or(|n| args_json(meta).is_some_and(|a| a.to_string().contains(n.as_str())))
        })
        .skip(limit * page)
        .take(limit)
        .collect();
    Ok(Value::Array(
        found
            .iter()
            .map(|(id, at, meta)| {
                json!({
                    "id": id, "task": meta.task, "state": meta.state, "worker": meta.worker, "retries": meta.retries,
                    "changed": time(*at), "runtime_ms": meta.started_ms.zip(meta.finished_ms).map(|(s, f)| f - s),
                    "error": meta.error, "args": args_json(meta),
                })
            })
            .collect(),
    ))
}

/// Finished tasks per minute over `minutes` (oldest first).
pub(crate) async fn throughput_data(dash: &Dashboard, minutes: usize) -> Result<Value, ApiError> {
    let counts = history(dash)?.throughput(minutes.clamp(1, 120)).await?;
    Ok(Value::Array(
        counts
            .iter()
            .map(|c| json!({"minute": time(c.minute_ms), "succeeded": c.succeeded, "failed": c.failed}))
            .collect(),
    ))
}

pub(crate) async fn tasks(State(dash): State<Dashboard>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    Ok(Json(tasks_data(&dash, &q).await?))
}

pub(crate) async fn throughput(State(dash): State<Dashboard>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let minutes = q.get("minutes").and_then(|m| m.parse().ok()).unwrap_or(60);
    Ok(Json(throughput_data(&dash, minutes).await?))
}

pub(crate) async fn healthz(State(dash): State<Dashboard>) -> Response {
    match dash.app.broker().inspect() {
        Some(inspect) => match inspect.queues().await {
            Ok(_) => (StatusCode::OK, "ok\n").into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("broker unavailable: {e}\n")).into_response(),
        },
        None => (StatusCode::OK, "ok\n").into_response(),
    }
}

/// Server-sent events: the overview, every second, for the live pages.
pub(crate) async fn stream(
    State(dash): State<Dashboard>,
) -> axum::response::sse::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    // Every second: the overview, then the newest events.
    let updates = futures_util::stream::unfold((dash, 0u64), |(dash, n)| async move {
        let (name, data) = if n % 2 == 0 {
            if n > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            ("overview", overview_data(&dash).await)
        } else {
            ("events", events_data(&dash, 50).await)
        };
        let data = data.unwrap_or_else(|e| json!({"error": e.1}));
        let event = axum::response::sse::Event::default().event(name).data(data.to_string());
        Some((Ok(event), (dash, n + 1)))
    });
    axum::response::sse::Sse::new(updates).keep_alive(axum::response::sse::KeepAlive::default())
}

pub(crate) async fn overview(State(dash): State<Dashboard>) -> ApiResult {
    Ok(Json(overview_data(&dash).await?))
}

pub(crate) async fn workers(State(dash): State<Dashboard>) -> ApiResult {
    Ok(Json(workers_data(&dash).await?))
}

pub(crate) async fn queues(State(dash): State<Dashboard>) -> ApiResult {
    Ok(Json(queues_data(&dash).await?))
}

pub(crate) async fn dead(State(dash): State<Dashboard>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    Ok(Json(dead_data(&dash, limit).await?))
}

pub(crate) async fn task(State(dash): State<Dashboard>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(task_data(&dash, &id).await?))
}

/// Destructive actions need `?confirm=<queue>`: a second, deliberate word.
fn confirmed(queue: &str, q: &HashMap<String, String>) -> Result<(), ApiError> {
    if q.get("confirm").map(String::as_str) != Some(queue) {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("confirm by adding ?confirm={queue}")));
    }
    Ok(())
}

pub(crate) async fn purge(
    State(dash): State<Dashboard>,
    Path(queue): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    confirmed(&queue, &q)?;
    let purged = inspector(&dash)?.purge(&queue).await?;
    Ok(Json(json!({"queue": queue, "purged": purged})))
}

/// The remote-control commands the dashboard may send to the workers.
const WORKER_COMMANDS: [&str; 9] = [
    "ping",
    "stats",
    "shutdown",
    "pool-grow",
    "pool-shrink",
    "add-consumer",
    "cancel-consumer",
    "rate-limit",
    "time-limit",
];

/// Sends `?command=` to every live worker and answers with what they said (one answer
/// per worker that answered within a second).
pub(crate) async fn control_workers(
    State(dash): State<Dashboard>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let command = q.get("command").map(|c| c.trim()).unwrap_or("");
    let name = command.split_whitespace().next().unwrap_or("");
    if !WORKER_COMMANDS.contains(&name) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown command `{name}` (known: {})", WORKER_COMMANDS.join(", ")),
        ));
    }
    let control = dash
        .app
        .backend()
        .remote_control()
        .ok_or_else(|| ApiError(StatusCode::NOT_IMPLEMENTED, "this backend takes no remote commands".into()))?;
    let expected = match dash.app.broker().directory() {
        Some(directory) => directory.workers().await?.len(),
        None => 0,
    };
    let answers = control.ask(command, expected, std::time::Duration::from_secs(1)).await?;
    let answers: Vec<Value> =
        answers.iter().filter_map(|a| task_core::codec::decode::<Value>(a, "a worker's answer").ok()).collect();
    Ok(Json(json!({"command": command, "expected": expected, "answers": answers})))
}

/// Pauses a queue: producers may still send, no worker takes from it.
pub(crate) async fn pause(State(dash): State<Dashboard>, Path(queue): Path<String>) -> ApiResult {
    pausing(&dash)?.pause(&queue).await?;
    Ok(Json(json!({"queue": queue, "paused": true})))
}

/// Resumes a paused queue.
pub(crate) async fn resume(State(dash): State<Dashboard>, Path(queue): Path<String>) -> ApiResult {
    pausing(&dash)?.resume(&queue).await?;
    Ok(Json(json!({"queue": queue, "paused": false})))
}

fn pausing(dash: &Dashboard) -> Result<&dyn task_core::capability::QueuePause, ApiError> {
    dash.app
        .broker()
        .pausing()
        .ok_or_else(|| ApiError(StatusCode::NOT_IMPLEMENTED, "this broker cannot pause queues".into()))
}

/// Puts the dead letter of one task back in its queue.
pub(crate) async fn retry_dead_task(State(dash): State<Dashboard>, Path(id): Path<String>) -> ApiResult {
    let task: task_core::TaskId =
        id.parse().map_err(|e: task_core::Error| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    if !inspector(&dash)?.retry_dead_task(&task).await? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no dead letter of task {id}")));
    }
    Ok(Json(json!({"id": id, "retried": 1})))
}

pub(crate) async fn retry_dead(
    State(dash): State<Dashboard>,
    Path(queue): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(usize::MAX);
    let retried = inspector(&dash)?.retry_dead(&queue, limit).await?;
    Ok(Json(json!({"queue": queue, "retried": retried})))
}

pub(crate) async fn purge_dead(
    State(dash): State<Dashboard>,
    Path(queue): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    confirmed(&queue, &q)?;
    let purged = inspector(&dash)?.purge_dead(&queue).await?;
    Ok(Json(json!({"queue": queue, "purged": purged})))
}

/// Sends the task again, with the same arguments, as a new task: `{"id": new, "retry_of": id}`.
pub(crate) async fn retry(State(dash): State<Dashboard>, Path(id): Path<String>) -> ApiResult {
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("no task with id `{id}`"));
    let task_id: TaskId = id.parse().map_err(|_| not_found())?;
    let meta = dash.app.backend().get(&task_id).await?.ok_or_else(not_found)?;
    let (Some(task), Some(args)) = (meta.task, meta.args) else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("task `{id}` never started here, so its arguments were not kept"),
        ));
    };
    let queue = meta.queue.unwrap_or_else(|| dash.app.default_queue().to_owned());
    let envelope = Envelope::new(task.clone(), args, queue.clone());
    let new_id = envelope.id.clone();
    let payload = envelope.encode().map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    dash.app.broker().enqueue(task_core::broker::Message::new(new_id.clone(), queue, payload)).await?;
    Ok(Json(json!({"id": new_id, "retry_of": id, "task": task})))
}

pub(crate) async fn revoke(
    State(dash): State<Dashboard>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let task_id: TaskId = id.parse().map_err(|_| ApiError(StatusCode::NOT_FOUND, format!("no task with id `{id}`")))?;
    let terminate = q.get("terminate").is_some_and(|t| t == "true");
    dash.app.revoke(&task_id, terminate).await?;
    Ok(Json(json!({"id": id, "revoked": true, "terminate": terminate})))
}
