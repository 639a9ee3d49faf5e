//! Runs one delivery and settles it.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tracing::{debug, error, info, warn};

use crate::app::App;
use crate::broker::{ConsumerId, Delivery, Message};
use crate::context::TaskContext;
use crate::envelope::{Envelope, now_ms};
use crate::error::{BackendError, BrokerError, Disposition, ErrorKind, TaskError};
use crate::registry::Invocation;
use crate::state::{TaskMeta, TaskState};
use crate::task::DEFAULT_MAX_RETRIES;
use crate::worker::WorkerReport;

/// First retry back-off ceiling; doubles per retry.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Largest retry back-off.
const BACKOFF_CAP: Duration = Duration::from_secs(600);
/// How long a store or a settlement (ack, retry, dead-letter) is tried before giving
/// up: long enough to ride out a restart or failover of the broker. After that the
/// message stays held, and is recovered if this worker stops.
const SETTLE_PATIENCE: Duration = Duration::from_secs(60);
/// The longest pause between two tries.
const SETTLE_MAX_PAUSE: Duration = Duration::from_secs(2);

/// Counters shared by the pool and its runners.
#[derive(Debug, Default)]
pub(super) struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    pub(super) released: AtomicU64,
}

impl Counters {
    pub(super) fn report(&self) -> WorkerReport {
        WorkerReport {
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
        }
    }
}

/// What one runner needs.
#[derive(Debug)]
pub(super) struct Runner {
    pub(super) app: App,
    pub(super) consumer: ConsumerId,
    pub(super) counters: Counters,
}

/// How a run ended badly.
enum Failure {
    Task(TaskError),
    Panic(String),
    TimeLimit(Duration),
}

impl Runner {
    pub(super) async fn handle(self: Arc<Self>, delivery: Delivery) {
        let envelope = match Envelope::decode(&delivery.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                let reason = format!("undecodable message in queue `{}`: {e}", delivery.queue);
                return self.bury(&delivery, None, reason).await;
            }
        };
        let Some(entry) = self.app.registry().get(&envelope.task) else {
            let reason = format!(
                "unknown task `{}`: it is not registered in worker {} ({} tasks registered)",
                envelope.task,
                self.consumer,
                self.app.registry().len()
            );
            return self.bury(&delivery, Some(&envelope), reason).await;
        };
        let max_retries = envelope.max_retries.or(entry.options().max_retries).unwrap_or(DEFAULT_MAX_RETRIES);
        let time_limit = envelope.time_limit_ms.map(Duration::from_millis).or(entry.options().time_limit);
        let ctx = TaskContext::new(
            envelope.id.clone(),
            envelope.task.clone(),
            delivery.queue.clone(),
            envelope.retries,
            max_retries,
            Some(self.consumer.to_string()),
            self.app.backend().clone(),
            self.result_ttl(&envelope),
        );
        let invocation = match entry.invoke(ctx, &envelope.args) {
            Ok(invocation) => invocation,
            Err(e) => {
                let reason = format!("arguments do not fit task `{}`: {e}", envelope.task);
                return self.bury(&delivery, Some(&envelope), reason).await;
            }
        };
        let started = TaskMeta {
            task: Some(envelope.task.clone()),
            worker: Some(self.consumer.to_string()),
            retries: Some(envelope.retries),
            started_ms: Some(now_ms()),
            ..TaskMeta::state(TaskState::Started)
        };
        self.store(&envelope, started).await;
        debug!(task = %envelope.task, id = %envelope.id, attempt = envelope.retries + 1, "task started");

        match run(invocation, time_limit).await {
            Ok(result) => {
                let done = TaskMeta {
                    result: Some(result),
                    finished_ms: Some(now_ms()),
                    ..TaskMeta::state(TaskState::Success)
                };
                self.store(&envelope, done).await;
                self.ack(&delivery, &envelope).await;
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                debug!(task = %envelope.task, id = %envelope.id, "task succeeded");
            }
            Err(failure) => self.fail(delivery, envelope, failure, max_retries).await,
        }
    }

    async fn fail(&self, delivery: Delivery, envelope: Envelope, failure: Failure, max_retries: u32) {
        let (message, retry_in) = match failure {
            Failure::Task(e) => {
                let delay = match e.disposition() {
                    Disposition::Fatal => None,
                    Disposition::Retryable => Some(backoff(envelope.retries)),
                    Disposition::RetryIn(delay) => Some(delay),
                };
                (e.message().to_owned(), delay.filter(|_| envelope.retries < max_retries))
            }
            Failure::Panic(text) => (format!("task panicked: {text}"), None),
            Failure::TimeLimit(limit) => (format!("time limit exceeded ({limit:?})"), None),
        };
        if let Some(delay) = retry_in {
            let mut next = envelope.clone();
            next.retries += 1;
            let eta = SystemTime::now() + delay;
            next.eta_ms = Some(chrono::DateTime::<chrono::Utc>::from(eta).timestamp_millis());
            let payload = match next.encode() {
                Ok(payload) => payload,
                Err(e) => {
                    return self.bury(&delivery, Some(&envelope), format!("cannot re-encode for a retry: {e}")).await;
                }
            };
            let retry = TaskMeta {
                error: Some(message.clone()),
                retries: Some(next.retries),
                ..TaskMeta::state(TaskState::Retry)
            };
            self.store(&envelope, retry).await;
            let msg = Message::new(next.id.clone(), delivery.queue.clone(), payload)
                .with_priority(delivery.priority)
                .with_eta(Some(eta));
            let consumer = &self.consumer;
            self.settle("retry", &subject(&envelope), || self.app.broker().retry(consumer, &delivery, msg.clone()))
                .await;
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
            info!(task = %envelope.task, id = %envelope.id, retry = next.retries, of = max_retries, retry_in = ?delay, error = %message, "task failed; retrying");
        } else {
            let failed = TaskMeta {
                error: Some(message.clone()),
                finished_ms: Some(now_ms()),
                ..TaskMeta::state(TaskState::Failure)
            };
            self.store(&envelope, failed).await;
            self.ack(&delivery, &envelope).await;
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            warn!(task = %envelope.task, id = %envelope.id, retries = envelope.retries, error = %message, "task failed");
        }
    }

    /// Dead-letters a message that cannot run; marks the task `FAILURE` when its id is known,
    /// so a caller waiting on it learns why.
    async fn bury(&self, delivery: &Delivery, envelope: Option<&Envelope>, reason: String) {
        error!(queue = %delivery.queue, %reason, "message sent to the dead letters");
        if let Some(envelope) = envelope {
            let failed = TaskMeta {
                task: Some(envelope.task.clone()),
                error: Some(reason.clone()),
                finished_ms: Some(now_ms()),
                ..TaskMeta::state(TaskState::Failure)
            };
            self.store(envelope, failed).await;
        }
        let consumer = &self.consumer;
        let subject = envelope.map_or_else(|| format!("a message from queue `{}`", delivery.queue), subject);
        self.settle("dead-letter", &subject, || self.app.broker().dead_letter(consumer, delivery, &reason)).await;
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    async fn ack(&self, delivery: &Delivery, envelope: &Envelope) {
        let consumer = &self.consumer;
        self.settle("ack", &subject(envelope), || self.app.broker().ack(consumer, delivery)).await;
    }

    /// How long this task's result is kept: its own TTL, else the app's.
    fn result_ttl(&self, envelope: &Envelope) -> Duration {
        envelope.result_ttl_ms.map_or_else(|| self.app.result_ttl(), Duration::from_millis)
    }

    /// Stores a state update in this worker's name (so a worker that lost the task
    /// cannot overwrite the one that took it over).
    async fn store(&self, envelope: &Envelope, mut update: TaskMeta) {
        update.worker = Some(self.consumer.to_string());
        let backend = self.app.backend();
        let ttl = self.result_ttl(envelope);
        let op = || backend.store(&envelope.id, update.clone(), ttl);
        let what = format!("storing state {}", update.state);
        let fenced = |e: &BackendError| e.kind() == ErrorKind::Fenced;
        with_tries(&what, &subject(envelope), op, fenced).await;
    }

    /// Runs a broker settlement (ack, retry, dead-letter) with a few tries. A fenced
    /// refusal is final: another worker owns the message now.
    async fn settle<'a, F>(&'a self, what: &str, subject: &str, op: impl Fn() -> F)
    where
        F: Future<Output = Result<(), BrokerError>> + 'a,
    {
        with_tries(what, subject, op, |e| e.kind() == ErrorKind::Fenced).await;
    }
}

/// Runs `op` until it succeeds or [`SETTLE_PATIENCE`] has passed, with growing pauses,
/// logging failures. An error for which `refused` holds ends the tries at once.
async fn with_tries<E, F>(what: &str, subject: &str, op: impl Fn() -> F, refused: impl Fn(&E) -> bool)
where
    E: std::fmt::Display,
    F: Future<Output = Result<(), E>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    for attempt in 1u32.. {
        match op().await {
            Ok(()) => return,
            Err(e) if refused(&e) => {
                return warn!(error = %e, "{what} of {subject} refused: the message was recovered by another worker");
            }
            Err(e) if started.elapsed() >= SETTLE_PATIENCE => {
                return error!(error = %e, "{what} of {subject} failed for {SETTLE_PATIENCE:?} ({attempt} tries); giving up");
            }
            Err(e) if attempt == 1 => warn!(error = %e, "{what} of {subject} failed; trying again"),
            Err(e) => tracing::debug!(error = %e, attempt, "{what} of {subject} failed again"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(SETTLE_MAX_PAUSE);
    }
}

/// How a task is named in logs: "task `name` [id]".
fn subject(envelope: &Envelope) -> String {
    format!("task `{}` [{}]", envelope.task, envelope.id)
}

/// Exponential back-off with full jitter: uniform in `[0, min(cap, base * 2^retries)]`.
pub(crate) fn backoff(retries: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1u32.checked_shl(retries.min(31)).unwrap_or(u32::MAX)).min(BACKOFF_CAP);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(0..=millis))
}

/// Runs the task body in its own tokio task (so a panic is caught as a `JoinError`),
/// under the hard time limit.
async fn run(invocation: Invocation, limit: Option<Duration>) -> Result<Vec<u8>, Failure> {
    let mut handle = AbortOnDrop(match invocation {
        Invocation::Async(future) => tokio::spawn(future),
        Invocation::Blocking(body) => tokio::task::spawn_blocking(body),
    });
    let joined = match limit {
        None => (&mut handle.0).await,
        Some(limit) => match tokio::time::timeout(limit, &mut handle.0).await {
            Ok(joined) => joined,
            Err(_) => {
                // An async task stops at its next await; a blocking one cannot be
                // stopped: its thread runs on, detached, and its result is dropped.
                return Err(Failure::TimeLimit(limit));
            }
        },
    };
    match joined {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(Failure::Task(e)),
        Err(join) if join.is_panic() => Err(Failure::Panic(panic_text(join.into_panic()))),
        Err(join) => Err(Failure::Panic(format!("task was cancelled: {join}"))),
    }
}

/// Aborts the task body when its runner goes away (time limit, or the pool aborting
/// runners at the end of the grace period), so no body outlives its message.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => {
            payload.downcast_ref::<&str>().map_or_else(|| "(non-text panic payload)".into(), |s| (*s).to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_ceiling() {
        for retries in 0..40 {
            let ceiling = BACKOFF_BASE.saturating_mul(1 << retries.min(20)).min(BACKOFF_CAP);
            assert!(backoff(retries) <= ceiling);
        }
    }

    #[test]
    fn panic_text_reads_str_and_string_payloads() {
        assert_eq!(panic_text(Box::new("static")), "static");
        assert_eq!(panic_text(Box::new(String::from("owned"))), "owned");
        assert_eq!(panic_text(Box::new(7u8)), "(non-text panic payload)");
    }
}
