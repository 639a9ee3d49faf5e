//! The ends of deliveries that do not run to a result of their own: the dead letters
//! (undecodable, unknown, unfit, buried at recovery), skips (revoked, expired), rate-limit
//! deferrals, and the `fn` tasks stranded on their threads at shutdown. Each ends its
//! task's record, its workflow and its lock as a run would.

use std::sync::atomic::Ordering;

use tracing::{error, info, warn};

use crate::capability::DeadLetter;
use crate::envelope::Envelope;
use crate::error::{BackendError, ErrorKind};
use crate::events::{Event, EventKind};
use crate::message::{Delivery, Message};
use crate::state::{TaskMeta, TaskState};
use crate::task::RateLimit;
use crate::time::{now_ms, to_ms};
use crate::tries::{Storing, Subject, with_tries};
use crate::workflow::Links;

use super::execute::Runner;

impl Runner {
    /// Over its rate limit, a task goes back to the delayed set for the slot it
    /// reserved (its envelope remembers the slot, so it does not ask again). False when
    /// it may start now.
    pub(super) async fn defer_for_rate_limit(
        &self,
        delivery: &Delivery,
        envelope: &Envelope,
        key: &str,
        limit: RateLimit,
    ) -> bool {
        let Some(limiter) = self.app.broker().rate_limits() else {
            warn!(task = %envelope.task, "the broker keeps no rate limits: the rate limit is not applied");
            return false;
        };
        let slot = match limiter.reserve_rate(key, limit).await {
            Ok(None) => return false,
            Ok(Some(slot)) => slot,
            Err(e) => {
                warn!(task = %envelope.task, error = %e, "cannot reserve a rate-limited start; running it now");
                return false;
            }
        };
        let mut next = envelope.clone();
        next.rate_slot_ms = Some(to_ms(slot));
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

    /// Ends a task that will not run (revoked, expired): `REVOKED` with the reason, acked.
    pub(super) async fn skip(&self, delivery: &Delivery, envelope: &Envelope, reason: String) {
        info!(task = %envelope.task, id = %envelope.id, %reason, "task skipped: revoked");
        let revoked = TaskMeta {
            task: Some(envelope.task.clone()),
            error: Some(reason.clone()),
            finished_ms: Some(now_ms()),
            ..TaskMeta::state(TaskState::Revoked)
        };
        self.store(envelope, revoked).await;
        Links::new(&self.app, envelope).abandon(&format!("was revoked ({reason})")).await;
        // Skipped before it ran, so not acked yet even with `acks_early`.
        self.ack(delivery, envelope).await;
        self.unlock_unique(envelope).await;
        self.counters.revoked.fetch_add(1, Ordering::Relaxed);
    }

    /// Dead-letters a message that cannot run; ends its task when its id is known
    /// ([`end_unrunnable`](Self::end_unrunnable)), so a caller waiting on it learns why.
    pub(super) async fn bury(&self, delivery: &Delivery, envelope: Option<&Envelope>, reason: String) {
        error!(queue = %delivery.queue, %reason, "message sent to the dead letters");
        if let Some(envelope) = envelope {
            self.end_unrunnable(envelope, &reason).await;
        }
        let consumer = &self.consumer;
        let subject =
            envelope.map_or_else(|| format!("a message from queue `{}`", delivery.queue), |e| Subject(e).to_string());
        self.settle("dead-letter", &subject, || self.app.broker().dead_letter(consumer, delivery, &reason)).await;
        self.buried(envelope, &reason).await;
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }

    /// A message that recovery sent to the dead letters (delivered too many times, its
    /// workers died running it): its task never ended, and ends now as one that could
    /// not run. A payload that does not decode names no task: only the event is left.
    pub(super) async fn end_buried(&self, letter: &DeadLetter) {
        let envelope = Envelope::decode(&letter.payload).ok();
        error!(queue = %letter.queue, reason = %letter.reason, "a message went to the dead letters at recovery");
        if let Some(envelope) = &envelope {
            self.end_unrunnable(envelope, &letter.reason).await;
        }
        self.buried(envelope.as_ref(), &letter.reason).await;
    }

    /// Ends the task of a buried message: `FAILURE` with the reason, and the rest of its
    /// workflow failed. Written in no worker's name: the record may still be another's
    /// (a dead worker's `STARTED`), and no run of this task is left to fence against.
    pub(super) async fn end_unrunnable(&self, envelope: &Envelope, reason: &str) {
        let failed = TaskMeta {
            task: Some(envelope.task.clone()),
            error: Some(reason.to_owned()),
            finished_ms: Some(now_ms()),
            ..TaskMeta::state(TaskState::Failure)
        };
        let backend = self.app.backend();
        let ttl = self.app.ttl_of(envelope);
        let fenced = |e: &BackendError| e.kind() == ErrorKind::Fenced;
        let op = || backend.store(&envelope.id, failed.clone(), ttl);
        with_tries(&Storing(TaskState::Failure), &Subject(envelope), op, fenced).await;
        Links::new(&self.app, envelope).abandon(&format!("could not run: {reason}")).await;
    }

    /// The event of a burial, and the release of the task's uniqueness lock.
    pub(super) async fn buried(&self, envelope: Option<&Envelope>, reason: &str) {
        let mut event = Event::new(EventKind::TaskDeadLettered).worker(self.consumer.to_string()).detail(reason);
        if let Some(envelope) = envelope {
            event = event.task(&envelope.id, &envelope.task);
        }
        self.record(event).await;
        if let Some(envelope) = envelope {
            self.unlock_unique(envelope).await;
        }
    }

    /// After the grace period, with the runs aborted: the `fn` tasks whose threads may
    /// still run. Their messages are not given back (another worker would run a second
    /// copy beside the first): each ends `FAILURE`, saying why, and is acked.
    pub(super) async fn settle_stranded(&self) {
        let stranded: Vec<(Delivery, Envelope)> =
            self.blocking.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, held)| held).collect();
        for (delivery, envelope) in stranded {
            let reason = "the worker stopped while the task ran on a thread it cannot stop (a plain `fn` task): \
                          not run again, since the thread may still be running it";
            warn!(task = %envelope.task, id = %envelope.id, "{reason}");
            let failed = TaskMeta {
                error: Some(reason.to_owned()),
                finished_ms: Some(now_ms()),
                ..TaskMeta::state(TaskState::Failure)
            };
            self.store(&envelope, failed).await;
            self.finish(&delivery, &envelope).await;
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
