//! Celery's remote control served by the workers of this process: `celery inspect
//! ping` / `registered` / `active` / `stats` are asked of them as Celerity's own
//! commands, and their answers go back to Celery in its reply format; a revoke from
//! Python (`app.control.revoke(id)`) is made durable here, as Celerity's own.

use std::time::Instant;

use crate::celery::pidbox::{self, Asked};

use super::*;

/// The prefix of the ids of the requests made for Celery's.
const PREFIX: &str = "celery-pidbox:";

/// How long the workers' answers to a request are sent on (Celery waits a second).
const ANSWERED_FOR: Duration = Duration::from_secs(30);

/// At most this many requests are answered at once (anyone may publish requests).
const PENDING_CAP: usize = 1024;

/// The Celery requests asked of this process's workers, by the id they were asked with.
#[derive(Debug, Default)]
pub(super) struct Pending(Mutex<HashMap<String, (pidbox::Request, Instant)>>);

impl Pending {
    fn add(&self, request: pidbox::Request) -> String {
        let id = format!("{PREFIX}{}", uuid::Uuid::new_v4());
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= PENDING_CAP / 2 {
            pending.retain(|_, (_, at)| at.elapsed() < ANSWERED_FOR);
        }
        if pending.len() >= PENDING_CAP {
            let oldest = pending.iter().min_by_key(|(_, (_, at))| *at).map(|(id, _)| id.clone());
            pending.remove(&oldest.unwrap_or_default());
        }
        pending.insert(id.clone(), (request, Instant::now()));
        id
    }

    fn get(&self, id: &str) -> Option<pidbox::Request> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(id).map(|(r, _)| r.clone())
    }
}

/// Serves the messages of the pidbox channel until the backend is dropped.
pub(super) async fn serve(mut messages: mpsc::UnboundedReceiver<Vec<u8>>, inner: std::sync::Weak<Inner>) {
    while let Some(raw) = messages.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        let backend = RedisBackend { inner };
        let Some(request) = pidbox::Request::decode(&raw) else {
            tracing::debug!("ignored a message on Celery's pidbox channel that is not a request");
            continue;
        };
        let command = match request.asked() {
            Asked::Command(command) => command,
            Asked::Revoke { ids, terminate } => {
                let reason = if terminate { "terminated" } else { "revoked" };
                for id in ids.iter().filter_map(|id| TaskId::from_str(id).ok()) {
                    // Every process serving Celery revokes it too: revokes are idempotent.
                    if let Err(e) = backend.revoke(&id, reason, terminate, task_core::DEFAULT_RESULT_TTL).await {
                        tracing::warn!(%id, error = %e, "cannot revoke a task Celery revoked");
                    }
                }
                "ping"
            }
            Asked::Unknown(_) => "ping",
        };
        // Answered by each worker of this process (a revoke's and an unknown method's
        // reply is Celery's own text, sent when one is wanted).
        if request.reply_to.is_none() {
            continue;
        }
        let id = backend.inner.pidbox.add(request);
        backend.inner.subscriber.requests.notify(&task_core::capability::Request::new(id, command));
    }
}

/// Sends a worker's `answer` to `request` to Celery, when it is an answer to Celery's;
/// `None` when it is not.
pub(super) async fn reply(
    backend: &RedisBackend,
    request: &task_core::capability::Request,
    answer: &[u8],
) -> Option<Result<(), BackendError>> {
    if !request.id.starts_with(PREFIX) {
        return None;
    }
    let celery = backend.inner.pidbox.get(&request.id)?;
    let answer: serde_json::Value = match rmp_serde::from_slice(answer) {
        Ok(answer) => answer,
        Err(e) => {
            return Some(Err(BackendError::new(ErrorKind::Protocol, format!("an answer that does not decode: {e}"))));
        }
    };
    let node = answer.get("name").and_then(serde_json::Value::as_str).unwrap_or("celerity").to_owned();
    if !celery.asks(&node) {
        return Some(Ok(()));
    }
    let running = match celery.asked() {
        Asked::Command("active") => running(backend, &answer).await,
        _ => Vec::new(),
    };
    let message = pidbox::reply_message(&celery, &node, pidbox::celery_answer(&celery, &answer, &running));
    let (exchange, routing_key) = celery.reply_to.clone().unwrap_or_default();
    let mut con = backend.con();
    let send = async {
        let bindings: Vec<String> = timed(
            backend.inner.op_timeout,
            redis::cmd("SMEMBERS").arg(pidbox::bindings_key(&exchange)).query_async(&mut con),
        )
        .await?;
        let mut pipe = redis::pipe();
        for queue in pidbox::bound_queues(&bindings, &routing_key) {
            pipe.cmd("LPUSH").arg(queue).arg(&message).ignore();
        }
        timed_pipe::<()>(backend.inner.op_timeout, &pipe, &mut con).await
    };
    Some(send.await.map_err(|e| e.backend("cannot answer Celery's remote control")))
}

/// What the records of the tasks an `active` answer names say of them (name,
/// arguments, start), read in one pipeline; nothing for a record that does not read.
async fn running(backend: &RedisBackend, answer: &serde_json::Value) -> Vec<pidbox::Running> {
    let ids: Vec<(String, TaskId)> = answer
        .get("active")
        .and_then(serde_json::Value::as_array)
        .map(|ids| {
            let id = |v: &serde_json::Value| Some((v.as_str()?.to_owned(), TaskId::from_str(v.as_str()?).ok()?));
            ids.iter().filter_map(id).collect()
        })
        .unwrap_or_default();
    let mut pipe = redis::pipe();
    for (_, task) in &ids {
        pipe.cmd("HGETALL").arg(backend.inner.keys.result(task));
    }
    let mut con = backend.con();
    let records: Vec<HashMap<String, Vec<u8>>> =
        timed_pipe(backend.inner.op_timeout, &pipe, &mut con).await.unwrap_or_default();
    ids.into_iter()
        .zip(records)
        .map(|((id, _), record)| {
            let meta = super::record::parse(record).unwrap_or_else(|| TaskMeta::state(TaskState::Pending));
            let kwargs = meta
                .args
                .and_then(|a| rmp_serde::from_slice::<serde_json::Value>(&a).ok())
                .filter(serde_json::Value::is_object)
                .unwrap_or_else(|| serde_json::json!({}));
            #[allow(clippy::cast_precision_loss)]
            let started_s = meta.started_ms.map(|ms| ms as f64 / 1000.0);
            pidbox::Running { id, name: meta.task, kwargs, started_s }
        })
        .collect()
}
