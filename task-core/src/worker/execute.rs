//! Runs one delivery and settles it: decode, look up, check expiry and rate limit,
//! claim (which refuses revoked tasks), run under the time limits, store, ack.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::app::App;
use crate::backend::{Ack, Claim};
use crate::broker::ChordJoin;
use crate::broker::{ConsumerId, Delivery, Message};
use crate::context::TaskContext;
use crate::envelope::{Callback, CallbackOn, ChordMember, Envelope, now_ms};
use crate::error::{BackendError, BrokerError, Disposition, ErrorKind, TaskError};
use crate::events::{Event, EventKind};
use crate::id::TaskId;
use crate::registry::{Invocation, TaskEntry};
use crate::state::{TaskMeta, TaskState};
use crate::task::{Backoff, DEFAULT_MAX_RETRIES};
use crate::worker::WorkerReport;

use super::body::Body;

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
    revoked: AtomicU64,
    rate_limited: AtomicU64,
    dead_lettered: AtomicU64,
    pub(super) released: AtomicU64,
    /// The last successful fetch (Unix ms).
    pub(super) last_fetch_ms: std::sync::atomic::AtomicI64,
}

impl Counters {
    pub(super) fn report(&self) -> WorkerReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerReport {
            succeeded: get(&self.succeeded),
            failed: get(&self.failed),
            retried: get(&self.retried),
            revoked: get(&self.revoked),
            rate_limited: get(&self.rate_limited),
            dead_lettered: get(&self.dead_lettered),
            released: get(&self.released),
        }
    }
}

/// What one runner needs.
#[derive(Debug)]
pub(super) struct Runner {
    pub(super) app: App,
    pub(super) consumer: ConsumerId,
    pub(super) counters: Counters,
    /// Running tasks that a revoke with terminate can stop.
    pub(super) running: Mutex<HashMap<TaskId, oneshot::Sender<()>>>,
}

/// What the failure path needs to know about the run.
struct Run {
    max_retries: u32,
    backoff: Backoff,
    runtime_ms: u64,
    /// When the run started, if its start was not stored (`track_started` off).
    untracked_start: Option<i64>,
}

/// `update` with what the `STARTED` write stores (task, queue, arguments, attempt,
/// start time), when the run's start was not stored: its first write says it instead.
fn with_start(envelope: &Envelope, untracked_start: Option<i64>, mut update: TaskMeta) -> TaskMeta {
    if let Some(started_ms) = untracked_start {
        update.task.get_or_insert_with(|| envelope.task.clone());
        update.queue.get_or_insert_with(|| envelope.queue.clone());
        update.args.get_or_insert_with(|| envelope.args.clone());
        update.retries.get_or_insert(envelope.retries);
        update.started_ms.get_or_insert(started_ms);
    }
    update
}

/// The write that ends a run in `state`: when, after how long, and (see [`with_start`])
/// its start when that was not stored. The caller adds the result or the error.
fn run_end(envelope: &Envelope, state: TaskState, runtime_ms: u64, untracked_start: Option<i64>) -> TaskMeta {
    let end = TaskMeta { finished_ms: Some(now_ms()), runtime_ms: Some(runtime_ms), ..TaskMeta::state(state) };
    with_start(envelope, untracked_start, end)
}

/// How a run ended badly.
enum Failure {
    Task(TaskError),
    Panic(String),
    TimeLimit(Duration),
    Terminated,
}

/// The limits and signals of one run.
struct Limits {
    hard: Option<Duration>,
    soft: Option<Duration>,
    /// The run's context, to raise its cancel signal.
    cancel: TaskContext,
    terminate: oneshot::Receiver<()>,
}

impl Runner {
    /// Stops a running task (revoke with terminate); false if it does not run here.
    pub(super) fn terminate(&self, id: &TaskId) -> bool {
        let stop = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        stop.is_some_and(|stop| stop.send(()).is_ok())
    }

    pub(super) async fn handle(&self, delivery: Delivery) {
        let envelope = match Envelope::decode(&delivery.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                let reason = format!("undecodable message in queue `{}`: {e}", delivery.queue);
                return Box::pin(self.bury(&delivery, None, reason)).await;
            }
        };
        let Some(entry) = self.app.registry().get(&envelope.task) else {
            let reason = format!(
                "unknown task `{}`: it is not registered in worker {} ({} tasks registered)",
                envelope.task,
                self.consumer,
                self.app.registry().len()
            );
            return Box::pin(self.bury(&delivery, Some(&envelope), reason)).await;
        };
        if envelope.expires_ms.is_some_and(|at| now_ms() > at) {
            return Box::pin(self.skip(&delivery, &envelope, "expired".into())).await;
        }
        if entry.options().rate_limit.is_some()
            && Box::pin(self.defer_for_rate_limit(&delivery, &envelope, entry)).await
        {
            return;
        }

        let max_retries = envelope.max_retries.or(entry.options().max_retries).unwrap_or(DEFAULT_MAX_RETRIES);
        let ctx = TaskContext::new(
            envelope.id.clone(),
            envelope.task.clone(),
            delivery.queue.clone(),
            envelope.retries,
            max_retries,
            Some(self.consumer.as_str().to_owned()),
            self.app.backend().clone(),
            self.result_ttl(&envelope),
        );
        let cancel = ctx.clone();
        let invocation = match entry.invoke(ctx, &envelope.args) {
            Ok(invocation) => invocation,
            Err(e) => {
                let reason = format!("arguments do not fit task `{}`: {e}", envelope.task);
                return Box::pin(self.bury(&delivery, Some(&envelope), reason)).await;
            }
        };
        // Tracked: the STARTED write claims the task and refuses a revoked one. Not
        // tracked: a read checks for a revoke, and the run's first write says the rest.
        let tracked = entry.options().track_started.unwrap_or_else(|| self.app.track_started());
        let untracked_start = (!tracked).then(now_ms);
        let revoked = if tracked {
            match self.claim(&envelope).await {
                Some(Claim::Revoked(reason)) => Some(reason),
                _ => None,
            }
        } else {
            self.revoked(&envelope).await
        };
        if let Some(reason) = revoked {
            return Box::pin(self.skip(&delivery, &envelope, reason)).await;
        }
        if envelope.acks_early {
            self.ack(&delivery, &envelope).await;
        }
        debug!(task = %envelope.task, id = %envelope.id, attempt = envelope.retries + 1, "task started");

        let (stop, terminate) = oneshot::channel();
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(envelope.id.clone(), stop);
        let limits = Limits {
            hard: envelope.time_limit_ms.map(Duration::from_millis).or(entry.options().time_limit),
            soft: envelope.soft_time_limit_ms.map(Duration::from_millis).or(entry.options().soft_time_limit),
            cancel,
            terminate,
        };
        let began = tokio::time::Instant::now();
        let outcome = run(invocation, limits).await;
        let runtime_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&envelope.id);

        match outcome {
            Ok(result) => {
                // A chain's next step or a chord's join takes the result too: a copy only then.
                let handed_on = (envelope.chord.is_some()
                    || envelope.callbacks.iter().any(|c| c.on == CallbackOn::Success && c.arg.is_some()))
                .then(|| result.clone());
                // Nothing to send on: the result and the ack can go in one step.
                let alone = handed_on.is_none() && envelope.callbacks.is_empty() && envelope.chord.is_none();
                let mut acked = false;
                if envelope.ignore_result {
                    self.forget(&envelope).await;
                } else {
                    let done = TaskMeta {
                        result: Some(result),
                        ..run_end(&envelope, TaskState::Success, runtime_ms, untracked_start)
                    };
                    if alone && !envelope.acks_early && self.app.backend().stores_acks_of(&**self.app.broker()) {
                        self.store_and_ack(&delivery, &envelope, done).await;
                        acked = true;
                    } else {
                        self.store(&envelope, done).await;
                    }
                }
                let result = handed_on.unwrap_or_default();
                if !envelope.callbacks.is_empty() {
                    Box::pin(self.send_callbacks(&envelope, CallbackOn::Success, &result)).await;
                }
                if let Some(member) = &envelope.chord {
                    Box::pin(self.join_chord(&envelope, member, &result)).await;
                }
                if acked {
                    self.unlock_unique(&envelope).await;
                } else {
                    self.finish(&delivery, &envelope).await;
                }
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                debug!(task = %envelope.task, id = %envelope.id, "task succeeded");
            }
            Err(Failure::Terminated) => {
                // revoke() stored REVOKED ("terminated") and woke the waiters. The run's
                // end is added (and its start, when that was not stored): the record is
                // as complete as any other end, and the events and counts see it.
                if !envelope.ignore_result {
                    let end = run_end(&envelope, TaskState::Revoked, runtime_ms, untracked_start);
                    self.store(&envelope, end).await;
                }
                self.finish(&delivery, &envelope).await;
                self.counters.revoked.fetch_add(1, Ordering::Relaxed);
                info!(task = %envelope.task, id = %envelope.id, "task terminated");
            }
            Err(failure) => {
                let backoff = entry.options().backoff.unwrap_or(Backoff::DEFAULT);
                let run = Run { max_retries, backoff, runtime_ms, untracked_start };
                Box::pin(self.fail(delivery, envelope, failure, run)).await;
            }
        }
    }

    /// Over its rate limit, a task goes back to the delayed set for the slot it
    /// reserved (its envelope remembers the slot, so it does not ask again).
    async fn defer_for_rate_limit(&self, delivery: &Delivery, envelope: &Envelope, entry: &TaskEntry) -> bool {
        let (Some(limit), None) = (entry.options().rate_limit, envelope.rate_slot_ms) else { return false };
        let Some(coordination) = self.app.broker().coordination() else {
            warn!(task = %envelope.task, "the broker has no coordination: the rate limit is not applied");
            return false;
        };
        let slot = match coordination.reserve_rate(entry.name(), limit).await {
            Ok(None) => return false,
            Ok(Some(slot)) => slot,
            Err(e) => {
                warn!(task = %envelope.task, error = %e, "cannot reserve a rate-limited start; running it now");
                return false;
            }
        };
        let mut next = envelope.clone();
        next.rate_slot_ms = Some(chrono::DateTime::<chrono::Utc>::from(slot).timestamp_millis());
        match next.encode() {
            Ok(payload) => {
                let msg = Message::new(next.id.clone(), delivery.queue.clone(), payload)
                    .with_priority(delivery.priority)
                    .with_eta(Some(slot));
                let consumer = &self.consumer;
                self.settle("deferral", &Subject(envelope), || {
                    self.app.broker().retry(consumer, delivery, msg.clone())
                })
                .await;
                self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.bury(delivery, Some(envelope), format!("cannot re-encode for the rate limit: {e}")).await;
                true
            }
        }
    }

    async fn fail(
        &self,
        delivery: Delivery,
        envelope: Envelope,
        failure: Failure,
        Run { max_retries, backoff, runtime_ms, untracked_start }: Run,
    ) {
        let (message, retry_in) = match failure {
            Failure::Task(e) => {
                let delay = match e.disposition() {
                    Disposition::Fatal => None,
                    Disposition::Retryable => Some(backoff.delay(envelope.retries)),
                    Disposition::RetryIn(delay) => Some(delay),
                };
                (e.message().to_owned(), delay.filter(|_| envelope.retries < max_retries))
            }
            Failure::Panic(text) => (format!("task panicked: {text}"), None),
            Failure::TimeLimit(limit) => (format!("time limit exceeded ({limit:?})"), None),
            Failure::Terminated => unreachable!("handled by the caller"),
        };
        if let Some(delay) = retry_in {
            let mut next = envelope.clone();
            next.retries += 1;
            next.rate_slot_ms = None;
            let eta = SystemTime::now() + delay;
            next.eta_ms = Some(chrono::DateTime::<chrono::Utc>::from(eta).timestamp_millis());
            let payload = match next.encode() {
                Ok(payload) => payload,
                Err(e) => {
                    return self.bury(&delivery, Some(&envelope), format!("cannot re-encode for a retry: {e}")).await;
                }
            };
            if !envelope.ignore_result {
                let retry = TaskMeta {
                    error: Some(message.clone()),
                    retries: Some(next.retries),
                    ..TaskMeta::state(TaskState::Retry)
                };
                let retry = with_start(&envelope, untracked_start, retry);
                self.store(&envelope, retry).await;
            }
            let msg = Message::new(next.id.clone(), delivery.queue.clone(), payload)
                .with_priority(delivery.priority)
                .with_eta(Some(eta));
            let consumer = &self.consumer;
            if envelope.acks_early {
                // Acked already: the retry is a new message.
                self.settle("retry", &Subject(&envelope), || self.app.broker().enqueue(msg.clone())).await;
            } else {
                self.settle("retry", &Subject(&envelope), || self.app.broker().retry(consumer, &delivery, msg.clone()))
                    .await;
            }
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
            info!(task = %envelope.task, id = %envelope.id, retry = next.retries, of = max_retries, retry_in = ?delay, error = %message, "task failed; retrying");
        } else {
            if envelope.ignore_result {
                self.forget(&envelope).await;
            } else {
                let failed = TaskMeta {
                    error: Some(message.clone()),
                    ..run_end(&envelope, TaskState::Failure, runtime_ms, untracked_start)
                };
                self.store(&envelope, failed).await;
            }
            self.send_callbacks(&envelope, CallbackOn::Failure, &[]).await;
            self.abandon_workflow(&envelope, &format!("failed: {message}")).await;
            self.finish(&delivery, &envelope).await;
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            warn!(task = %envelope.task, id = %envelope.id, retries = envelope.retries, error = %message, "task failed");
        }
    }

    /// Ends a task that will not run (revoked, expired): `REVOKED` with the reason, acked.
    async fn skip(&self, delivery: &Delivery, envelope: &Envelope, reason: String) {
        info!(task = %envelope.task, id = %envelope.id, %reason, "task skipped: revoked");
        let revoked = TaskMeta {
            task: Some(envelope.task.clone()),
            error: Some(reason.clone()),
            finished_ms: Some(now_ms()),
            ..TaskMeta::state(TaskState::Revoked)
        };
        self.store(envelope, revoked).await;
        self.abandon_workflow(envelope, &format!("was revoked ({reason})")).await;
        self.finish(delivery, envelope).await;
        self.counters.revoked.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends the callbacks for `on` (before the ack: at least once; once per callback id
    /// where the broker has coordination); a chain's next step gets `result` as its first
    /// argument.
    async fn send_callbacks(&self, envelope: &Envelope, on: CallbackOn, result: &[u8]) {
        for callback in envelope.callbacks.iter().filter(|c| c.on == on) {
            let message = match callback.message_with(result) {
                Ok(message) => message,
                Err(e) => {
                    let reason = format!("cannot hand the result of {} on: {e}", Subject(envelope));
                    error!(callback = %callback.id, %reason, "callback not sent");
                    self.fail_other(envelope, &callback.id, reason).await;
                    continue;
                }
            };
            let broker = self.app.broker();
            let what = "sending a callback";
            if let Some(once) = broker.coordination() {
                // Its id was fixed when this task was sent: a second run of this task
                // (redelivered after its worker died) does not send it again.
                let ttl = self.result_ttl(envelope);
                let send = || once.enqueue_once(message.clone(), ttl);
                if with_tries(&what, &Subject(envelope), send, |_: &BrokerError| false).await == Some(false) {
                    debug!(callback = %callback.id, "callback sent already (this task ran twice)");
                }
            } else {
                let send = || broker.enqueue(message.clone());
                with_tries(&what, &Subject(envelope), send, |_: &BrokerError| false).await;
            }
        }
    }

    /// Reports a chord member's result to the join; the member that completes it sends
    /// the callback with every result.
    async fn join_chord(&self, envelope: &Envelope, member: &ChordMember, result: &[u8]) {
        let Some(join) = self.app.broker().coordination() else {
            return error!(chord = %member.chord, "the broker has no coordination: the chord's callback is not sent");
        };
        let what = "reporting to its chord";
        let joined =
            with_tries(&what, &Subject(envelope), || join.chord_join(member, result), |_: &BrokerError| false).await;
        let Some(ChordJoin::Complete { callback, results }) = joined else { return };
        let message = crate::codec::decode::<Callback>(&callback, "the chord's callback")
            .and_then(|callback| crate::codec::array_of(&results).and_then(|all| callback.message_with(&all)));
        match message {
            Ok(message) => {
                let fire = || join.chord_fire(member, message.clone());
                if with_tries(&"sending the chord's callback", &Subject(envelope), fire, |_: &BrokerError| false).await
                    == Some(true)
                {
                    debug!(chord = %member.chord, members = member.size, "chord complete: callback sent");
                }
            }
            Err(e) => {
                let reason = format!("cannot build the callback of chord {}: {e}", member.chord);
                error!(%reason, "chord callback not sent");
                if join.chord_fail(member).await.unwrap_or(false) {
                    self.fail_other(envelope, &member.chord, reason).await;
                }
            }
        }
    }

    /// After this task ended without a result (failed for good, revoked, unrunnable):
    /// the later steps of its chain fail, and its chord fails, naming this task.
    async fn abandon_workflow(&self, envelope: &Envelope, what: &str) {
        if let Some(chain) = &envelope.chain {
            let reason = format!("chain step {} of {} ({}) {what}", chain.step, chain.steps, Subject(envelope));
            for id in &chain.rest {
                self.fail_other(envelope, id, reason.clone()).await;
            }
        }
        if let (Some(member), Some(join)) = (&envelope.chord, self.app.broker().coordination()) {
            let fail = || join.chord_fail(member);
            if with_tries(&"failing its chord", &Subject(envelope), fail, |_: &BrokerError| false).await == Some(true) {
                let reason =
                    format!("chord member {} of {} ({}) {what}", member.index + 1, member.size, Subject(envelope));
                self.fail_other(envelope, &member.chord, reason).await;
            }
        }
    }

    /// Marks another task (a later chain step, a chord's callback) `FAILURE` for `reason`:
    /// it will not run, and whoever waits on it learns why.
    async fn fail_other(&self, envelope: &Envelope, id: &TaskId, reason: String) {
        let failed =
            TaskMeta { error: Some(reason), finished_ms: Some(now_ms()), ..TaskMeta::state(TaskState::Failure) };
        let backend = self.app.backend();
        let ttl = self.result_ttl(envelope);
        let op = || backend.store(id, failed.clone(), ttl);
        with_tries(&"failing the rest of its workflow", &Subject(envelope), op, |_: &BackendError| false).await;
    }

    /// The end of a task's life here: ack (unless acked early) and release its
    /// uniqueness lock.
    async fn finish(&self, delivery: &Delivery, envelope: &Envelope) {
        if !envelope.acks_early {
            self.ack(delivery, envelope).await;
        }
        self.unlock_unique(envelope).await;
    }

    /// Releases the task's uniqueness lock, if it has one.
    async fn unlock_unique(&self, envelope: &Envelope) {
        if let (Some(key), Some(coordination)) = (&envelope.unique_key, self.app.broker().coordination())
            && let Err(e) = coordination.unlock_unique(key, &envelope.id).await
        {
            warn!(task = %envelope.task, id = %envelope.id, error = %e, "cannot release the uniqueness lock; it expires by itself");
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
            self.abandon_workflow(envelope, &format!("could not run: {reason}")).await;
        }
        let consumer = &self.consumer;
        let subject =
            envelope.map_or_else(|| format!("a message from queue `{}`", delivery.queue), |e| Subject(e).to_string());
        self.settle("dead-letter", &subject, || self.app.broker().dead_letter(consumer, delivery, &reason)).await;
        let mut event = Event::new(EventKind::TaskDeadLettered).worker(self.consumer.to_string()).detail(&reason);
        if let Some(envelope) = envelope {
            event = event.task(&envelope.id, &envelope.task);
        }
        self.record(event).await;
        if let (Some(envelope), Some(coordination)) = (envelope, self.app.broker().coordination())
            && let Some(key) = &envelope.unique_key
        {
            let _ = coordination.unlock_unique(key, &envelope.id).await;
        }
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds an event to the stream (dead letters, worker events); a failure is logged,
    /// never fatal.
    pub(super) async fn record(&self, event: Event) {
        if let Some(history) = self.app.backend().history()
            && let Err(e) = history.record_event(&event).await
        {
            debug!(error = %e, kind = %event.kind, "cannot record an event");
        }
    }

    async fn ack(&self, delivery: &Delivery, envelope: &Envelope) {
        let consumer = &self.consumer;
        self.settle("ack", &Subject(envelope), || self.app.broker().ack(consumer, delivery)).await;
    }

    /// How long this task's result is kept: its own TTL, else the app's.
    fn result_ttl(&self, envelope: &Envelope) -> Duration {
        envelope.result_ttl_ms.map_or_else(|| self.app.result_ttl(), Duration::from_millis)
    }

    /// Claims the task (`STARTED`, in this worker's name) unless it was revoked.
    async fn claim(&self, envelope: &Envelope) -> Option<Claim> {
        let started = TaskMeta {
            task: Some(envelope.task.clone()),
            worker: Some(self.consumer.as_str().to_owned()),
            retries: Some(envelope.retries),
            started_ms: Some(now_ms()),
            args: Some(envelope.args.clone()),
            queue: Some(envelope.queue.clone()),
            ..TaskMeta::state(TaskState::Started)
        };
        let backend = self.app.backend();
        let ttl = self.result_ttl(envelope);
        let op = || backend.claim(&envelope.id, started.clone(), ttl);
        with_tries(&"claiming", &Subject(envelope), op, |_: &BackendError| false).await
    }

    /// Why the task was revoked, if it was: the start check when `STARTED` is not stored.
    async fn revoked(&self, envelope: &Envelope) -> Option<String> {
        let backend = self.app.backend();
        let op = || backend.revoked(&envelope.id);
        with_tries(&"checking for a revoke", &Subject(envelope), op, |_: &BackendError| false).await.flatten()
    }

    /// Stores a state update in this worker's name (so a worker that lost the task
    /// cannot overwrite the one that took it over).
    async fn store(&self, envelope: &Envelope, update: TaskMeta) {
        self.store_acking(envelope, update, None).await;
    }

    /// Stores a final state and acks the delivery in one step (the backend can: see
    /// `ResultBackend::stores_acks_of`). Fenced like an ack.
    async fn store_and_ack(&self, delivery: &Delivery, envelope: &Envelope, update: TaskMeta) {
        self.store_acking(envelope, update, Some(delivery)).await;
    }

    /// [`store`](Self::store), and with `ack` also the ack of that delivery.
    async fn store_acking(&self, envelope: &Envelope, update: TaskMeta, ack: Option<&Delivery>) {
        let update = self.named(envelope, update);
        let (backend, broker) = (self.app.backend(), self.app.broker());
        let ack = ack.map(|delivery| Ack { broker: &**broker, consumer: &self.consumer, delivery });
        let ttl = self.result_ttl(envelope);
        let op = || match ack {
            Some(ack) => backend.store_and_ack(&envelope.id, update.clone(), ttl, ack),
            None => backend.store(&envelope.id, update.clone(), ttl),
        };
        let what = Storing(update.state);
        let fenced = |e: &BackendError| e.kind() == ErrorKind::Fenced;
        with_tries(&what, &Subject(envelope), op, fenced).await;
    }

    /// `update` in this worker's name (so a worker that lost the task cannot overwrite
    /// the one that took it over), naming its task: the event stream and the counts by
    /// task name read it from every write.
    fn named(&self, envelope: &Envelope, mut update: TaskMeta) -> TaskMeta {
        update.worker = Some(self.consumer.as_str().to_owned());
        update.task.get_or_insert_with(|| envelope.task.clone());
        update
    }

    /// `ignore_result`: nothing is kept once the task ends.
    async fn forget(&self, envelope: &Envelope) {
        let backend = self.app.backend();
        with_tries(&"forgetting", &Subject(envelope), || backend.forget(&envelope.id), |_: &BackendError| false).await;
    }

    /// Runs a broker settlement (ack, retry, dead-letter) with a few tries. A fenced
    /// refusal is final: another worker owns the message now.
    async fn settle<'a, F>(&'a self, what: &str, subject: &(dyn std::fmt::Display + Sync), op: impl Fn() -> F)
    where
        F: Future<Output = Result<(), BrokerError>> + 'a,
    {
        with_tries(&what, subject, op, |e: &BrokerError| e.kind() == ErrorKind::Fenced).await;
    }
}

/// Runs the task body (see [`Body`]: an async one in place, panics caught): raises the
/// cancel signal at the soft limit, stops the body at the hard limit or on a terminate
/// request.
async fn run(invocation: Invocation, limits: Limits) -> Result<Vec<u8>, Failure> {
    let Limits { hard, soft, cancel, mut terminate } = limits;
    let mut body = Body::start(invocation);
    let started = tokio::time::Instant::now();
    // A limit's timer exists only when the task has that limit: most have none, and a
    // timer costs a slot in the timer wheel, set and cleared, per task.
    let far = started + Duration::from_secs(100 * 365 * 24 * 3600);
    let hard_at = hard.map(|d| started + d);
    let mut soft_at = soft.map(|d| started + d);
    let ended = loop {
        tokio::select! {
            ended = &mut body => break ended,
            () = tokio::time::sleep_until(soft_at.unwrap_or(far)), if soft_at.is_some() => {
                cancel.cancel();
                soft_at = None;
            }
            () = tokio::time::sleep_until(hard_at.unwrap_or(far)), if hard_at.is_some() => {
                // The body is dropped: an async one stops where it awaits; a blocking
                // one cannot be stopped: its thread runs on, and its result is dropped.
                return Err(Failure::TimeLimit(hard.unwrap_or_default()));
            }
            Ok(()) = &mut terminate => {
                cancel.cancel();
                return Err(Failure::Terminated);
            }
        }
    };
    match ended {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(Failure::Task(e)),
        Err(panic) => Err(Failure::Panic(panic)),
    }
}

/// Runs `op` until it succeeds or [`SETTLE_PATIENCE`] has passed, with growing pauses,
/// logging failures. An error for which `refused` holds ends the tries at once.
async fn with_tries<T, E, F>(
    what: &(dyn std::fmt::Display + Sync),
    subject: &(dyn std::fmt::Display + Sync),
    op: impl Fn() -> F,
    refused: impl Fn(&E) -> bool,
) -> Option<T>
where
    E: std::fmt::Display,
    F: Future<Output = Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    for attempt in 1u32.. {
        match op().await {
            Ok(value) => return Some(value),
            Err(e) if refused(&e) => {
                warn!(error = %e, "{what} of {subject} refused: the message was recovered by another worker");
                return None;
            }
            Err(e) if started.elapsed() >= SETTLE_PATIENCE => {
                error!(error = %e, "{what} of {subject} failed for {SETTLE_PATIENCE:?} ({attempt} tries); giving up");
                return None;
            }
            Err(e) if attempt == 1 => warn!(error = %e, "{what} of {subject} failed; trying again"),
            Err(e) => tracing::debug!(error = %e, attempt, "{what} of {subject} failed again"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(SETTLE_MAX_PAUSE);
    }
    None
}

/// How a task is named in logs, "task `name` [id]": formatted only when logged.
struct Subject<'a>(&'a Envelope);

impl std::fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task `{}` [{}]", self.0.task, self.0.id)
    }
}

/// "storing state X", formatted only when logged.
struct Storing(TaskState);

impl std::fmt::Display for Storing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "storing state {}", self.0)
    }
}
