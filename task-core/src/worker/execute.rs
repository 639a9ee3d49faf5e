//! Carries out the worker's decisions (`decide.rs`) for one delivery: decode, admit,
//! claim (which refuses revoked tasks; before the run, or once it has gone on for
//! `started_after`), run under the time limits, then the plan for the run's end: the
//! record, the workflow's links, the ack, a retry, the dead letters.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::app::App;
use crate::backend::Claim;
use crate::capability::pair;
use crate::context::TaskContext;
use crate::envelope::Envelope;
use crate::error::{BackendError, BrokerError, ErrorKind};
use crate::events::Event;
use crate::id::{ConsumerId, TaskId};
use crate::message::{Delivery, Message};
use crate::registry::{Invocation, TaskEntry};
use crate::state::{TaskMeta, TaskState};
use crate::task::{Backoff, DEFAULT_MAX_RETRIES, TaskOptions};
use crate::time::{now_ms, to_ms};
use crate::tries::{Storing, Subject, never, with_tries};
use crate::worker::WorkerReport;
use crate::workflow::Links;

use super::body::Body;
use super::decide::{self, Admission, Failure, Plan, Record, Release, Start, Unclaimed, Verdict};

/// Counters shared by the pool and its runners.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) succeeded: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) revoked: AtomicU64,
    pub(super) rate_limited: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) released: AtomicU64,
    /// The last successful fetch (Unix ms).
    pub(super) last_fetch_ms: std::sync::atomic::AtomicI64,
    /// Not fetching because every slot is taken and the prefetch is full.
    pub(super) saturated: std::sync::atomic::AtomicBool,
    /// Slots running now (autoscale and remote control change it).
    pub(super) concurrency: std::sync::atomic::AtomicUsize,
    /// Slots asked for or given back by remote control, not yet applied.
    pub(super) resize: std::sync::atomic::AtomicIsize,
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
            refused: get(&self.refused),
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
    /// The queues it takes from (remote control adds and cancels them).
    pub(super) queues: Mutex<Vec<String>>,
    /// Wakes the fetch loop when remote control changed the queues or the pool: a fetch
    /// in flight is dropped (fetches are cancel-safe) and the next one sees the change.
    pub(super) reconfigured: tokio::sync::Notify,
    /// The deliveries of running `fn` (blocking) tasks: a thread cannot be stopped, so
    /// one still running when the worker stops must not be run again elsewhere
    /// ([`Runner::settle_stranded`]).
    pub(super) blocking: Mutex<HashMap<TaskId, (Delivery, Envelope)>>,
    /// The backend stores a final state and acks in one step (it shares the broker's
    /// store): see [`capability::pair`](crate::capability::pair).
    atomic_settle: bool,
    /// Code around every run, the first outermost.
    layers: super::layer::Layers,
    /// Task options remote control changed (`rate-limit`, `time-limit`).
    pub(super) tunings: super::tuning::Tunings,
    /// In a process pool's child: what it tells its supervisor about its runs.
    pub(super) link: Option<std::sync::Arc<super::process::Link>>,
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

/// The limits and signals of one run.
struct Limits {
    hard: Option<Duration>,
    soft: Option<Duration>,
    /// The run's context, to raise its cancel signal.
    cancel: TaskContext,
    terminate: oneshot::Receiver<()>,
}

/// Where the claim of a run under [`Start::ClaimAfter`] stands at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Deferred {
    /// Written, or there was none to defer.
    Done,
    /// Not written: the run ended before it was due.
    NotYet,
    /// Not stored (given up on, the store stayed away; or left to the end): the end
    /// says the start.
    Unstored,
    /// Found the task revoked (why): the run is stopped, and ends as terminated, or as
    /// the skip of a revoked task if it ended otherwise.
    Revoked(String),
}

/// What the end of a run needs besides the envelope.
struct Ended {
    /// The encoded result, on success.
    result: Vec<u8>,
    runtime_ms: u64,
    /// When the run started, if its start was not stored (`track_started` off).
    untracked_start: Option<i64>,
}

impl Runner {
    /// A runner for `app`, in the name of `consumer`.
    pub(super) fn new(app: App, consumer: ConsumerId) -> Self {
        let atomic_settle = pair(app.broker().shared_store(), app.backend().settle_atomically()).is_some();
        Self {
            app,
            consumer,
            counters: Counters::default(),
            running: Mutex::default(),
            queues: Mutex::default(),
            reconfigured: tokio::sync::Notify::new(),
            blocking: Mutex::default(),
            atomic_settle,
            layers: super::layer::Layers::default(),
            tunings: super::tuning::Tunings::default(),
            link: None,
        }
    }

    /// The runner of a process pool's child, reporting over `link`.
    pub(super) fn with_link(mut self, link: Option<std::sync::Arc<super::process::Link>>) -> Self {
        self.link = link;
        self
    }

    /// The runner with `layers` around every run.
    pub(super) fn with_layers(mut self, layers: super::layer::Layers) -> Self {
        self.layers = layers;
        self
    }

    /// The ids of the tasks running now.
    pub(super) fn running_ids(&self) -> Vec<String> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).keys().map(ToString::to_string).collect()
    }

    /// Stops a running task (revoke with terminate); false if it does not run here.
    pub(super) fn terminate(&self, id: &TaskId) -> bool {
        let stop = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        stop.is_some_and(|stop| stop.send(()).is_ok())
    }

    // The rare paths (dead letters, skips, rate limits, failures, workflows) are boxed
    // where they are awaited: their futures would otherwise be part of every run's
    // future, which is allocated per delivery and twice as large with them inline.

    pub(super) async fn handle(&self, delivery: Delivery) {
        let limit = self.app.max_message_size();
        if delivery.payload.len() > limit {
            let reason = format!(
                "message of {} bytes in queue `{}`, over the limit of {limit} bytes (AppBuilder::max_message_size)",
                delivery.payload.len(),
                delivery.queue
            );
            let envelope = Envelope::decode(&delivery.payload).ok();
            return Box::pin(self.bury(&delivery, envelope.as_ref(), reason)).await;
        }
        let envelope = match Envelope::decode(&delivery.payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                let reason = format!("undecodable message in queue `{}`: {e}", delivery.queue);
                return Box::pin(self.bury(&delivery, None, reason)).await;
            }
        };
        let span = run_span(&envelope, &delivery.queue);
        tracing::Instrument::instrument(self.run_envelope(delivery, envelope, limit), span).await;
    }

    /// [`handle`](Self::handle) of a decoded delivery.
    async fn run_envelope(&self, delivery: Delivery, envelope: Envelope, limit: usize) {
        let entry = self.app.registry().get(&envelope.task);
        let options = entry.map(|e| self.tunings.options(e.name(), e.options()));
        match decide::admit(&envelope, options.as_ref(), now_ms()) {
            Admission::Run => {}
            Admission::Unknown => {
                let reason = format!(
                    "unknown task `{}`: it is not registered in worker {} ({} tasks registered)",
                    envelope.task,
                    self.consumer,
                    self.app.registry().len()
                );
                return Box::pin(self.bury(&delivery, Some(&envelope), reason)).await;
            }
            Admission::Expired => return Box::pin(self.skip(&delivery, &envelope, "expired".into())).await,
            Admission::Reserve(_) if self.app.is_eager() => {}
            Admission::Reserve(limit) => {
                if Box::pin(self.defer_for_rate_limit(&delivery, &envelope, entry.map_or("", TaskEntry::name), limit))
                    .await
                {
                    return;
                }
            }
        }
        let (Some(entry), Some(options)) = (entry, options) else {
            let reason = format!("task `{}` was admitted but is not registered", envelope.task);
            return Box::pin(self.bury(&delivery, Some(&envelope), reason)).await;
        };

        let max_retries = envelope.max_retries.or(options.max_retries).unwrap_or(DEFAULT_MAX_RETRIES);
        let ctx = TaskContext::new(
            envelope.id.clone(),
            envelope.task.clone(),
            delivery.queue.clone(),
            envelope.retries,
            max_retries,
            Some(self.consumer.as_str().to_owned()),
            self.app.backend().clone(),
            self.app.ttl_of(&envelope),
        );
        let cancel = ctx.clone();
        let invocation = match entry.invoke(ctx, &envelope.args) {
            Ok(invocation) => invocation,
            Err(e) => {
                let reason = format!("arguments do not fit task `{}`: {e}", envelope.task);
                return Box::pin(self.bury(&delivery, Some(&envelope), reason)).await;
            }
        };
        // Claimed first: the STARTED write claims the task and refuses a revoked one.
        // Otherwise a read checks for a revoke; the claim follows if the run goes on
        // long enough, else the run's first write says the rest.
        let tracked = self.tracks_started(&options);
        let start = decide::start(
            tracked,
            self.app.started_after(),
            self.atomic_settle,
            envelope.acks_early,
            self.link.is_some(),
        );
        let started_ms = now_ms();
        let mut untracked_start = (start == Start::Untracked).then_some(started_ms);
        let revoked = if start == Start::Claim {
            match self.claim(&envelope, started_ms).await {
                Some(Claim::Revoked(reason)) => Some(reason),
                Some(Claim::Claimed) => None,
                // The claim was given up on (the store stayed away): the run goes on, and
                // its first write says its start and its worker, as an untracked run's does.
                None => {
                    untracked_start = Some(started_ms);
                    None
                }
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
            hard: envelope.time_limit_ms.map(Duration::from_millis).or(options.time_limit),
            soft: envelope.soft_time_limit_ms.map(Duration::from_millis).or(options.soft_time_limit),
            cancel,
            terminate,
        };
        if entry.is_blocking() {
            let held = (delivery.clone(), envelope.clone());
            self.blocking.lock().unwrap_or_else(|p| p.into_inner()).insert(envelope.id.clone(), held);
        }
        // A pool's child: the supervisor kills it if this run outlives its hard limit.
        let watched = match (&self.link, limits.hard) {
            (Some(link), Some(hard)) => {
                link.started(&envelope.id, hard, &delivery);
                true
            }
            _ => false,
        };
        // What a deferred claim reads of the run: whether it stored progress.
        let run_ctx = matches!(start, Start::ClaimAfter(_)).then(|| limits.cancel.clone());
        let began = tokio::time::Instant::now();
        let body = async {
            if self.layers.0.is_empty() {
                run(invocation, limits).await
            } else {
                let run_of = super::layer::Run {
                    task: envelope.task.clone(),
                    id: envelope.id.clone(),
                    attempt: envelope.retries + 1,
                    queue: delivery.queue.clone(),
                };
                let body: crate::future::BoxFuture<'_, super::layer::Outcome> =
                    Box::pin(async move { super::layer::Outcome(run(invocation, limits).await) });
                super::layer::wrap(&self.layers.0, &run_of, body).await.0
            }
        };
        let (ran, deferred) = match (start, &run_ctx) {
            (Start::ClaimAfter(after), Some(ctx)) => self.run_claiming(&envelope, ctx, started_ms, after, body).await,
            _ => (body.await, Deferred::Done),
        };
        // A plain `fn` past its hard limit runs on: only its process's end stops it.
        let stranded = entry.is_blocking() && matches!(ran, Err(Failure::TimeLimit(_)));
        if let Some(link) = &self.link {
            link.ran(&envelope.id, watched);
        }
        let outcome = match ran {
            Ok(result) => decide::oversized(&result, limit).map_or(Ok(result), Err),
            failed => failed,
        };
        let runtime_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&envelope.id);
        if entry.is_blocking() {
            self.blocking.lock().unwrap_or_else(|p| p.into_inner()).remove(&envelope.id);
        }

        let backoff = entry.options().backoff.unwrap_or(Backoff::DEFAULT);
        let verdict = decide::verdict(outcome.as_ref().map(|_| ()), envelope.retries, max_retries, &backoff);
        let plan = decide::plan(&envelope, &verdict, self.atomic_settle);
        let deferred = match deferred {
            Deferred::NotYet => match decide::unclaimed_end(&verdict, &plan) {
                Unclaimed::WithEnd => Deferred::Unstored,
                Unclaimed::ClaimFirst => Self::deferred(self.claim(&envelope, started_ms).await),
                Unclaimed::Nothing => Deferred::Done,
            },
            other => other,
        };
        match deferred {
            Deferred::Done | Deferred::NotYet => {}
            Deferred::Unstored => untracked_start = Some(started_ms),
            // Stopped by its claim, which found the revoke: the end adds the run to it,
            // as that of a run stopped by a terminate does.
            Deferred::Revoked(_) if verdict == Verdict::Terminated => untracked_start = Some(started_ms),
            // Revoked before it began: it ends as a task skipped at its start would, and
            // what it did (a result, a retry, its links) goes nowhere.
            Deferred::Revoked(reason) => {
                Box::pin(self.skip(&delivery, &envelope, reason)).await;
                if let Some(link) = &self.link {
                    link.settled(&envelope.id, stranded);
                }
                return;
            }
        }
        let ended = Ended { result: outcome.unwrap_or_default(), runtime_ms, untracked_start };
        self.conclude(&delivery, &envelope, &verdict, &plan, ended, max_retries).await;
        if let Some(link) = &self.link {
            link.settled(&envelope.id, stranded);
        }
    }

    /// Ends a run whose process a pool's supervisor killed past its hard limit `hard`,
    /// in the name of that child (this runner's consumer): FAILURE "time limit
    /// exceeded", its workflow's links and its ack, as the child would have.
    #[cfg(unix)]
    pub(super) async fn end_killed(&self, delivery: &Delivery, hard: Duration, started_ms: i64, runtime_ms: u64) {
        let Ok(envelope) = Envelope::decode(&delivery.payload) else {
            warn!(queue = %delivery.queue, "a killed child's run does not decode; its message returns to its queue");
            return;
        };
        let entry = self.app.registry().get(&envelope.task);
        let options = entry.map(|e| e.options());
        let max_retries = envelope.max_retries.or(options.and_then(|o| o.max_retries)).unwrap_or(DEFAULT_MAX_RETRIES);
        let backoff = options.and_then(|o| o.backoff).unwrap_or(Backoff::DEFAULT);
        let failure = Failure::TimeLimit(hard);
        let verdict = decide::verdict(Err(&failure), envelope.retries, max_retries, &backoff);
        let plan = decide::plan(&envelope, &verdict, self.atomic_settle);
        // The start fields again when the child did not store them (`track_started` off;
        // a pool's child otherwise claims before its run).
        let tracked = options.map_or_else(|| self.app.track_started(), |o| self.tracks_started(o));
        let ended = Ended { result: Vec::new(), runtime_ms, untracked_start: (!tracked).then_some(started_ms) };
        let span = run_span(&envelope, &delivery.queue);
        let end = async {
            warn!(limit = ?hard, "task killed with its pool child: time limit exceeded");
            self.conclude(delivery, &envelope, &verdict, &plan, ended, max_retries).await;
        };
        tracing::Instrument::instrument(end, span).await;
    }

    /// Carries out `plan` for a run that ended in `verdict`: the record, the callbacks,
    /// the chord, the rest of the workflow, then the release of the delivery.
    async fn conclude(
        &self,
        delivery: &Delivery,
        envelope: &Envelope,
        verdict: &Verdict,
        plan: &Plan,
        ended: Ended,
        max_retries: u32,
    ) {
        let Ended { result, runtime_ms, untracked_start } = ended;
        // A retry first needs its next message: if it cannot be made, nothing else happens.
        let next = match verdict {
            Verdict::Retry { delay, .. } => match self.next_try(delivery, envelope, *delay) {
                Ok(next) => Some(next),
                Err(reason) => return Box::pin(self.bury(delivery, Some(envelope), reason)).await,
            },
            _ => None,
        };
        // A chain's next step or a chord's join takes the result too: a copy only then.
        let handed_on = if plan.hand_on { result.clone() } else { Vec::new() };
        match plan.record {
            Record::Store(state) => {
                let update = match verdict {
                    Verdict::Succeeded => {
                        TaskMeta { result: Some(result), ..run_end(envelope, state, runtime_ms, untracked_start) }
                    }
                    Verdict::Terminated => run_end(envelope, state, runtime_ms, untracked_start),
                    Verdict::Retry { error, .. } => {
                        let retry = TaskMeta {
                            error: Some(error.clone()),
                            retries: Some(envelope.retries + 1),
                            ..TaskMeta::state(state)
                        };
                        with_start(envelope, untracked_start, retry)
                    }
                    Verdict::Failed { error } => {
                        TaskMeta { error: Some(error.clone()), ..run_end(envelope, state, runtime_ms, untracked_start) }
                    }
                };
                let acking = (plan.release == Release::WithRecord).then_some(delivery);
                self.store_acking(envelope, update, acking).await;
            }
            Record::Forget => self.forget(envelope).await,
            Record::Keep => {}
        }
        let links = Links::new(&self.app, envelope);
        if let Some(on) = plan.callbacks
            && envelope.callbacks.iter().any(|c| c.on == on)
        {
            Box::pin(links.send_callbacks(on, &handed_on)).await;
        }
        if plan.join_chord
            && let Some(member) = &envelope.chord
        {
            Box::pin(links.join_chord(member, &handed_on)).await;
        }
        if plan.abandon && (envelope.chain.is_some() || envelope.chord.is_some()) {
            let what = match verdict {
                Verdict::Failed { error } => format!("failed: {error}"),
                _ => "was terminated".to_owned(),
            };
            Box::pin(links.abandon(&what)).await;
        }
        match (plan.release, next) {
            (Release::Ack, _) => self.finish(delivery, envelope).await,
            (Release::WithRecord | Release::AckedEarly, _) => self.unlock_unique(envelope).await,
            (Release::Retry, Some(message)) => {
                let consumer = &self.consumer;
                self.settle("retry", &Subject(envelope), || {
                    self.app.broker().retry(consumer, delivery, message.clone())
                })
                .await;
            }
            (Release::Resend, Some(message)) => {
                // Acked already: the retry is a new message.
                self.settle("retry", &Subject(envelope), || self.app.broker().enqueue(message.clone())).await;
            }
            (Release::Retry | Release::Resend, None) => unreachable!("a retry's plan comes with its message"),
        }
        self.count(envelope, verdict, max_retries);
    }

    /// The message of the next try, due after `delay`.
    fn next_try(&self, delivery: &Delivery, envelope: &Envelope, delay: Duration) -> Result<Message, String> {
        // Eager mode runs the next try at once.
        let delay = if self.app.is_eager() { Duration::ZERO } else { delay };
        let mut next = envelope.clone();
        next.retries += 1;
        next.rate_slot_ms = None;
        let eta = crate::time::after(delay);
        next.eta_ms = Some(to_ms(eta));
        let payload = next.encode().map_err(|e| format!("cannot re-encode for a retry: {e}"))?;
        Ok(Message::new(next.id, delivery.queue.clone(), payload).with_priority(delivery.priority).with_eta(Some(eta)))
    }

    /// Counts and logs the end of a run.
    fn count(&self, envelope: &Envelope, verdict: &Verdict, max_retries: u32) {
        let (task, id) = (&envelope.task, &envelope.id);
        match verdict {
            Verdict::Succeeded => {
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                debug!(task = %task, id = %id, "task succeeded");
            }
            Verdict::Terminated => {
                self.counters.revoked.fetch_add(1, Ordering::Relaxed);
                info!(task = %task, id = %id, "task terminated");
            }
            Verdict::Retry { error, delay } => {
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
                info!(task = %task, id = %id, retry = envelope.retries + 1, of = max_retries, retry_in = ?delay, error = %error, "task failed; retrying");
            }
            Verdict::Failed { error } => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                warn!(task = %task, id = %id, retries = envelope.retries, error = %error, "task failed");
            }
        }
    }

    /// The end of a task's life here: ack (unless acked early) and release its
    /// uniqueness lock.
    pub(super) async fn finish(&self, delivery: &Delivery, envelope: &Envelope) {
        if !envelope.acks_early {
            self.ack(delivery, envelope).await;
        }
        self.unlock_unique(envelope).await;
    }

    /// Releases the task's uniqueness lock, if it has one.
    pub(super) async fn unlock_unique(&self, envelope: &Envelope) {
        if let (Some(key), Some(locks)) = (&envelope.unique_key, self.app.broker().unique_locks())
            && let Err(e) = locks.unlock_unique(key, &envelope.id).await
        {
            warn!(task = %envelope.task, id = %envelope.id, error = %e, "cannot release the uniqueness lock; it expires by itself");
        }
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

    pub(super) async fn ack(&self, delivery: &Delivery, envelope: &Envelope) {
        let consumer = &self.consumer;
        self.settle("ack", &Subject(envelope), || self.app.broker().ack(consumer, delivery)).await;
    }

    /// Runs `body` (the run of `envelope`'s task, begun at `started_ms`) and claims its
    /// task once it has gone on for `after`, while it goes on, unless the run (its
    /// context `ctx`) has stored progress by then. A claim that finds the task revoked
    /// stops the run, as a revoke with terminate does (see [`deferred`](Self::deferred)).
    async fn run_claiming<T>(
        &self,
        envelope: &Envelope,
        ctx: &TaskContext,
        started_ms: i64,
        after: Duration,
        body: impl Future<Output = T>,
    ) -> (T, Deferred) {
        let mut body = std::pin::pin!(body);
        // Polled first: a run that is done at once never arms the timer.
        tokio::select! {
            biased;
            out = &mut body => return (out, Deferred::NotYet),
            () = tokio::time::sleep(after) => {}
        }
        // The run stored its progress first: a claim now would set its state back from
        // PROGRESS to STARTED. Its end says its start, or claims first (`unclaimed_end`).
        if ctx.has_progressed() {
            return (body.await, Deferred::NotYet);
        }
        let claim = self.claim(envelope, started_ms);
        let mut claim = std::pin::pin!(claim);
        let claimed = tokio::select! {
            biased;
            claimed = &mut claim => claimed,
            // The run ended while its claim was on its way: the end waits for the claim,
            // so that its write comes after it.
            out = &mut body => {
                let claimed = claim.await;
                return (out, Self::deferred(claimed));
            }
        };
        let deferred = Self::deferred(claimed);
        if let Deferred::Revoked(reason) = &deferred {
            info!(task = %envelope.task, id = %envelope.id, reason = %reason, "revoked before its STARTED was stored: stopping it");
            let stop = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&envelope.id);
            if let Some(stop) = stop {
                let _ = stop.send(());
            }
        }
        (body.await, deferred)
    }

    /// Whether a run of a task with `options` stores `STARTED`: the task's own say, else
    /// the app's.
    fn tracks_started(&self, options: &TaskOptions) -> bool {
        options.track_started.unwrap_or_else(|| self.app.track_started())
    }

    /// What the answer to a deferred claim means for its run. A revoke found stops the
    /// run: until its `STARTED` is stored a task reads as not started, so a revoke then
    /// is one of a task that has not started, as whoever sent it saw it.
    fn deferred(claimed: Option<Claim>) -> Deferred {
        match claimed {
            None => Deferred::Unstored,
            Some(Claim::Claimed) => Deferred::Done,
            Some(Claim::Revoked(reason)) => Deferred::Revoked(reason),
        }
    }

    /// Claims the task (`STARTED` at `started_ms`, in this worker's name) unless it was
    /// revoked.
    async fn claim(&self, envelope: &Envelope, started_ms: i64) -> Option<Claim> {
        let started = TaskMeta {
            task: Some(envelope.task.clone()),
            worker: Some(self.consumer.as_str().to_owned()),
            retries: Some(envelope.retries),
            started_ms: Some(started_ms),
            args: Some(envelope.args.clone()),
            queue: Some(envelope.queue.clone()),
            ..TaskMeta::state(TaskState::Started)
        };
        let backend = self.app.backend();
        let ttl = self.app.ttl_of(envelope);
        let op = || backend.claim(&envelope.id, started.clone(), ttl);
        with_tries(&"claiming", &Subject(envelope), op, never).await
    }

    /// Why the task was revoked, if it was: the start check when `STARTED` is not stored.
    async fn revoked(&self, envelope: &Envelope) -> Option<String> {
        let backend = self.app.backend();
        let op = || backend.revoked(&envelope.id);
        with_tries(&"checking for a revoke", &Subject(envelope), op, never).await.flatten()
    }

    /// Stores a state update in this worker's name (so a worker that lost the task
    /// cannot overwrite the one that took it over).
    pub(super) async fn store(&self, envelope: &Envelope, update: TaskMeta) {
        self.store_acking(envelope, update, None).await;
    }

    /// [`store`](Self::store), and with `ack` also the ack of that delivery, in one
    /// atomic step (only when [`Runner::atomic_settle`] holds). Fenced like an ack.
    async fn store_acking(&self, envelope: &Envelope, update: TaskMeta, ack: Option<&Delivery>) {
        let update = self.named(envelope, update);
        let backend = self.app.backend();
        let ttl = self.app.ttl_of(envelope);
        let what = Storing(update.state);
        let refused = std::sync::atomic::AtomicBool::new(false);
        let fenced = |e: &BackendError| {
            let fenced = e.kind() == ErrorKind::Fenced;
            refused.fetch_or(fenced, Ordering::Relaxed);
            fenced
        };
        let pair = ack.and_then(|delivery| {
            let (store, settle) = pair(self.app.broker().shared_store(), backend.settle_atomically())?;
            Some((store, settle, delivery))
        });
        match pair {
            Some((store, settle, delivery)) => {
                let op = || async {
                    let settled = settle.settle(&envelope.id, update.clone(), ttl, &self.consumer, delivery).await;
                    // Acked, or refused as fenced: either way the delivery is no longer
                    // this worker's, and the broker forgets it. Given up on, it stays held.
                    if settled.as_ref().is_ok() || settled.as_ref().is_err_and(fenced) {
                        store.settled(&self.consumer, delivery);
                    }
                    settled
                };
                with_tries(&what, &Subject(envelope), op, fenced).await;
            }
            None => {
                let op = || backend.store(&envelope.id, update.clone(), ttl);
                with_tries(&what, &Subject(envelope), op, fenced).await;
                if let Some(delivery) = ack {
                    // Planned as one step, but the store is not shared (any more): the ack
                    // follows the write, as for every other end.
                    self.ack(delivery, envelope).await;
                }
            }
        }
        if refused.load(Ordering::Relaxed) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
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
        with_tries(&"forgetting", &Subject(envelope), || backend.forget(&envelope.id), never).await;
    }

    /// Runs a broker settlement (ack, retry, dead-letter) with a few tries. A fenced
    /// refusal is final: another worker owns the message now.
    pub(super) async fn settle<'a, F>(
        &'a self,
        what: &str,
        subject: &(dyn std::fmt::Display + Sync),
        op: impl Fn() -> F,
    ) where
        F: Future<Output = Result<(), BrokerError>> + 'a,
    {
        with_tries(&what, subject, op, |e: &BrokerError| e.kind() == ErrorKind::Fenced).await;
    }
}

/// The span of one run of `envelope` from `queue`, for the service's own subscriber:
/// every event of the run (and of the task's code) is inside it; it continues the
/// producer's trace when the message carries one.
fn run_span(envelope: &Envelope, queue: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "task",
        task = %envelope.task,
        id = %envelope.id,
        attempt = envelope.retries + 1,
        queue = %queue,
    );
    crate::trace::continue_in(&span, &envelope.headers);
    span
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
    let at = |limit: Duration| started.checked_add(limit.min(crate::time::FAR)).unwrap_or(started);
    let far = at(crate::time::FAR);
    let hard_at = hard.map(at);
    let mut soft_at = soft.map(at);
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
