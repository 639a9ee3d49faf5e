//! The worker's part of workflows: when a task that carries links ends, its callbacks
//! are sent (a chain's next step with the result as its argument), its chord hears its
//! result, and when it ended without one, the rest of its chain and its chord fail,
//! naming it.
//!
//! Everything here runs before the task's delivery is acked, so it happens at least
//! once; the broker's [`SendOnce`](crate::capability::SendOnce) and
//! [`ChordStore`](crate::capability::ChordStore) make a second run of the same task send
//! nothing twice.

use tracing::{debug, error};

use crate::app::App;
use crate::capability::ChordJoin;
use crate::envelope::Envelope;
use crate::id::TaskId;
use crate::link::{Callback, CallbackOn, ChordMember};
use crate::state::{TaskMeta, TaskState};
use crate::time::now_ms;
use crate::tries::{Subject, never, with_tries};

/// The links of one ended task.
pub(crate) struct Links<'a> {
    app: &'a App,
    envelope: &'a Envelope,
}

impl<'a> Links<'a> {
    /// The links of `envelope`, carried out on `app`.
    pub(crate) fn new(app: &'a App, envelope: &'a Envelope) -> Self {
        Self { app, envelope }
    }

    /// Sends the callbacks for `on`; a chain's next step gets `result` as its argument.
    /// Each is sent once per callback id where the broker offers send-once.
    pub(crate) async fn send_callbacks(&self, on: CallbackOn, result: &[u8]) {
        let envelope = self.envelope;
        for callback in envelope.callbacks.iter().filter(|c| c.on == on) {
            let message = match callback.message_with(result) {
                Ok(message) => message,
                Err(e) => {
                    let reason = format!("cannot hand the result of {} on: {e}", Subject(envelope));
                    error!(callback = %callback.id, %reason, "callback not sent");
                    self.fail_other(&callback.id, reason).await;
                    continue;
                }
            };
            let broker = self.app.broker();
            let what = "sending a callback";
            if let Some(once) = broker.send_once() {
                // Its id was fixed when this task was sent: a second run of this task
                // (redelivered after its worker died) does not send it again.
                let ttl = self.app.ttl_of(envelope);
                let send = || once.enqueue_once(message.clone(), ttl);
                if with_tries(&what, &Subject(envelope), send, never).await == Some(false) {
                    debug!(callback = %callback.id, "callback sent already (this task ran twice)");
                }
            } else {
                let send = || broker.enqueue(message.clone());
                with_tries(&what, &Subject(envelope), send, never).await;
            }
        }
    }

    /// Reports a chord member's result to the join; the member that completes it sends
    /// the callback with every result.
    pub(crate) async fn join_chord(&self, member: &ChordMember, result: &[u8]) {
        let envelope = self.envelope;
        let Some(join) = self.app.broker().chord_store() else {
            return error!(chord = %member.chord, "the broker keeps no chords: the chord's callback is not sent");
        };
        let what = "reporting to its chord";
        let joined = with_tries(&what, &Subject(envelope), || join.chord_join(member, result), never).await;
        let Some(ChordJoin::Complete { callback, results }) = joined else { return };
        let message = crate::codec::decode::<Callback>(&callback, "the chord's callback")
            .and_then(|callback| crate::codec::array_of(&results).and_then(|all| callback.message_with(&all)));
        match message {
            Ok(message) => {
                let fire = || join.chord_fire(member, message.clone());
                if with_tries(&"sending the chord's callback", &Subject(envelope), fire, never).await == Some(true) {
                    debug!(chord = %member.chord, members = member.size, "chord complete: callback sent");
                }
            }
            Err(e) => {
                let reason = format!("cannot build the callback of chord {}: {e}", member.chord);
                error!(%reason, "chord callback not sent");
                if join.chord_fail(member).await.unwrap_or(false) {
                    self.fail_other(&member.chord, reason).await;
                }
            }
        }
    }

    /// After the task ended without a result (failed for good, revoked, unrunnable):
    /// the later steps of its chain fail, and its chord fails, naming the task.
    pub(crate) async fn abandon(&self, what: &str) {
        let envelope = self.envelope;
        if let Some(chain) = &envelope.chain {
            let reason = format!("chain step {} of {} ({}) {what}", chain.step, chain.steps, Subject(envelope));
            for id in &chain.rest {
                self.fail_other(id, reason.clone()).await;
            }
        }
        if let (Some(member), Some(join)) = (&envelope.chord, self.app.broker().chord_store()) {
            let fail = || join.chord_fail(member);
            if with_tries(&"failing its chord", &Subject(envelope), fail, never).await == Some(true) {
                let reason =
                    format!("chord member {} of {} ({}) {what}", member.index + 1, member.size, Subject(envelope));
                self.fail_other(&member.chord, reason).await;
            }
        }
    }

    /// Marks another task (a later chain step, a chord's callback) `FAILURE` for `reason`:
    /// it will not run, and whoever waits on it learns why.
    async fn fail_other(&self, id: &TaskId, reason: String) {
        let failed =
            TaskMeta { error: Some(reason), finished_ms: Some(now_ms()), ..TaskMeta::state(TaskState::Failure) };
        let backend = self.app.backend();
        let ttl = self.app.ttl_of(self.envelope);
        let op = || backend.store(id, failed.clone(), ttl);
        with_tries(&"failing the rest of its workflow", &Subject(self.envelope), op, never).await;
    }
}
