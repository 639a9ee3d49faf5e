//! The worker's decisions, as data: whether a delivery may run ([`admit`]), what a run's
//! end means ([`verdict`]), and what to do about it ([`plan`]). Pure functions of the
//! envelope, the task's options and the outcome, tested case by case below; the
//! runner (`execute.rs`) only carries them out, in the order a [`Plan`] gives.

use std::time::Duration;

use crate::envelope::Envelope;
use crate::error::{Disposition, TaskError};
use crate::link::CallbackOn;
use crate::state::TaskState;
use crate::task::{Backoff, RateLimit, TaskOptions};

/// Whether a decoded delivery may run (before its claim, which may still find a revoke).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Admission {
    /// Not a task of this worker: to the dead letters.
    Unknown,
    /// Past its `expires`: ends `REVOKED` ("expired") without running.
    Expired,
    /// Rate-limited and without a reserved slot: reserve one first.
    Reserve(RateLimit),
    /// Run it.
    Run,
}

/// Admission of `envelope`, whose task is registered with `options` (`None`: unknown),
/// at `now_ms`.
pub(super) fn admit(envelope: &Envelope, options: Option<&TaskOptions>, now_ms: i64) -> Admission {
    let Some(options) = options else { return Admission::Unknown };
    if envelope.expires_ms.is_some_and(|at| now_ms > at) {
        return Admission::Expired;
    }
    match (options.rate_limit, envelope.rate_slot_ms) {
        (Some(limit), None) => Admission::Reserve(limit),
        _ => Admission::Run,
    }
}

/// How a run ended badly.
#[derive(Debug)]
pub(super) enum Failure {
    /// The task returned an error.
    Task(TaskError),
    /// The task panicked (the panic's text).
    Panic(String),
    /// The hard time limit passed.
    TimeLimit(Duration),
    /// A revoke with terminate stopped it.
    Terminated,
}

/// What a run's end means for the task.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    /// It succeeded.
    Succeeded,
    /// It was stopped by a revoke (already stored `REVOKED` by the revoke).
    Terminated,
    /// It failed and runs again after `delay`.
    Retry {
        /// The error's text.
        error: String,
        /// When the next try is due.
        delay: Duration,
    },
    /// It failed for good.
    Failed {
        /// The error's text.
        error: String,
    },
}

/// The verdict on a run that ended in `outcome`, on try `retries` (0 the first) of at
/// most `max_retries` retries spaced by `backoff`. Only a task's own error is retried,
/// and a fatal one never; a panic or a time limit fails for good.
pub(super) fn verdict(outcome: Result<(), &Failure>, retries: u32, max_retries: u32, backoff: &Backoff) -> Verdict {
    let failure = match outcome {
        Ok(()) => return Verdict::Succeeded,
        Err(failure) => failure,
    };
    let (error, delay) = match failure {
        Failure::Task(e) => {
            let delay = match e.disposition() {
                Disposition::Fatal => None,
                Disposition::Retryable => Some(backoff.delay(retries)),
                Disposition::RetryIn(delay) => Some(delay),
            };
            (e.message().to_owned(), delay.filter(|_| retries < max_retries))
        }
        Failure::Panic(text) => (format!("task panicked: {text}"), None),
        Failure::TimeLimit(limit) => (format!("time limit exceeded ({limit:?})"), None),
        Failure::Terminated => return Verdict::Terminated,
    };
    match delay {
        Some(delay) => Verdict::Retry { error, delay },
        None => Verdict::Failed { error },
    }
}

/// A result larger than the app's limit cannot be stored: the run fails for good.
pub(super) fn oversized(result: &[u8], limit: usize) -> Option<Failure> {
    (result.len() > limit).then(|| {
        Failure::Task(TaskError::fatal(format!(
            "the result is {} bytes, over the limit of {limit} bytes (AppBuilder::max_message_size)",
            result.len()
        )))
    })
}

/// Autoscale's decision (Celery's `--autoscale MAX,MIN`): how many slots to run now.
/// Messages waiting for a slot grow the pool at once, by as many as wait (up to `max`);
/// a pool with idle slots for `keepalive` gives one back (down to `min`).
pub(super) fn scale(
    current: usize,
    (min, max): (usize, usize),
    queued: usize,
    idle_for: Duration,
    keepalive: Duration,
) -> usize {
    if queued > 0 && current < max {
        return (current + queued).min(max);
    }
    if queued == 0 && idle_for >= keepalive && current > min {
        return current - 1;
    }
    current.clamp(min, max)
}

/// The fetch loop's next step, from the inbox's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NextFetch {
    /// Wait for the inbox to change: it is full, or holds enough for the slots.
    Wait,
    /// Fetch up to `room`, waiting for messages if the queues are empty.
    Block,
    /// Fetch up to `room` without waiting: what is queued is less than one message a
    /// slot, so the slots would idle through the next fetch's round trip if it waited
    /// for the inbox to empty first.
    TopUp,
}

/// Whether to fetch now: `room` messages may be fetched, `queued` wait in the inbox for
/// `slots` slots; `dry` when the last top-up found the queues empty (no other top-up
/// until the inbox is empty: an empty queue is then waited on, not polled). A top-up
/// is only worth its call when it can bring at least one message a slot.
pub(super) fn next_fetch(room: usize, queued: usize, slots: usize, dry: bool) -> NextFetch {
    if room == 0 {
        NextFetch::Wait
    } else if queued == 0 {
        NextFetch::Block
    } else if !dry && queued < slots && room >= slots {
        NextFetch::TopUp
    } else {
        NextFetch::Wait
    }
}

/// What becomes of the task's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Record {
    /// The end of the run is stored in this state.
    Store(TaskState),
    /// `ignore_result`: the record is deleted.
    Forget,
    /// Left as it is (`ignore_result` on a terminated run: the revoke wrote it).
    Keep,
}

/// How the delivery leaves this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// Acked by the record's write itself, in one atomic step (the backend shares the
    /// broker's store); the uniqueness lock is released after.
    WithRecord,
    /// Acked after everything else; the uniqueness lock released.
    Ack,
    /// Acked before the run (`acks_early`): only the uniqueness lock is released.
    AckedEarly,
    /// Acked and re-sent for the next try in one step (`Broker::retry`); the lock stays.
    Retry,
    /// Acked before the run, so the next try is a new message; the lock stays.
    Resend,
}

/// What to do after a run, in this order: the record, the callbacks, the chord, the
/// abandonment of the rest of the workflow, the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// The record.
    pub(super) record: Record,
    /// The callbacks to send (those registered for this end).
    pub(super) callbacks: Option<CallbackOn>,
    /// A chain step or a chord's join takes the result: keep a copy for them.
    pub(super) hand_on: bool,
    /// Report the result to the task's chord.
    pub(super) join_chord: bool,
    /// Fail the later chain steps and the chord: the task ended without a result
    /// (failed for good, or terminated).
    pub(super) abandon: bool,
    /// How the delivery leaves.
    pub(super) release: Release,
}

/// The plan for `verdict` on `envelope`; `atomic_settle` when the backend can store the
/// final record and ack in one step.
pub(super) fn plan(envelope: &Envelope, verdict: &Verdict, atomic_settle: bool) -> Plan {
    let acked = if envelope.acks_early { Release::AckedEarly } else { Release::Ack };
    let record = |state| if envelope.ignore_result { Record::Forget } else { Record::Store(state) };
    match verdict {
        Verdict::Succeeded => {
            let hand_on = envelope.chord.is_some()
                || envelope.callbacks.iter().any(|c| c.on == CallbackOn::Success && c.arg.is_some());
            // Nothing is sent on: the result and the ack can go in one step.
            let alone = envelope.callbacks.is_empty() && envelope.chord.is_none();
            let record = record(TaskState::Success);
            let one_step = alone && atomic_settle && !envelope.acks_early && record != Record::Forget;
            Plan {
                record,
                callbacks: (!envelope.callbacks.is_empty()).then_some(CallbackOn::Success),
                hand_on,
                join_chord: envelope.chord.is_some(),
                abandon: false,
                release: if one_step { Release::WithRecord } else { acked },
            }
        }
        Verdict::Terminated => Plan {
            record: if envelope.ignore_result { Record::Keep } else { Record::Store(TaskState::Revoked) },
            callbacks: None,
            hand_on: false,
            join_chord: false,
            // Stopped without a result: the rest of its chain and its chord cannot run.
            abandon: true,
            release: acked,
        },
        Verdict::Retry { .. } => Plan {
            record: if envelope.ignore_result { Record::Keep } else { Record::Store(TaskState::Retry) },
            callbacks: None,
            hand_on: false,
            join_chord: false,
            abandon: false,
            release: if envelope.acks_early { Release::Resend } else { Release::Retry },
        },
        Verdict::Failed { .. } => Plan {
            record: record(TaskState::Failure),
            callbacks: Some(CallbackOn::Failure),
            hand_on: false,
            join_chord: false,
            abandon: true,
            release: acked,
        },
    }
}

/// How a run's start is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// `STARTED` is stored before the run (its write checks for a revoke in the store).
    Claim,
    /// `STARTED` is stored once the run has gone on this long; a run that ends sooner
    /// stores its start with its end, in one write fenced by the message's ack (see
    /// [`unclaimed_end`]). The revoke check before the run is the backend's read.
    ClaimAfter(Duration),
    /// Not stored (`track_started` off): the run's first write says it.
    Untracked,
}

/// How the start of a run is stored: `tracked` (`track_started`), `after` (the app's
/// `started_after`), `atomic_settle` (a final record can be stored with its ack, the
/// fence a start stored with its end needs), the envelope's `acks_early` (then there
/// is no ack at the end to fence with) and `supervised` (a process pool's child, whose
/// supervisor may end the run in its name: a claim of the child's could then land
/// after that end).
pub(super) fn start(tracked: bool, after: Duration, atomic_settle: bool, acks_early: bool, supervised: bool) -> Start {
    match (tracked, after.is_zero() || !atomic_settle || acks_early || supervised) {
        (false, _) => Start::Untracked,
        (true, true) => Start::Claim,
        (true, false) => Start::ClaimAfter(after),
    }
}

/// What the end of a run under [`Start::ClaimAfter`] does when its claim was not
/// written (the run ended first, or is being concluded without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unclaimed {
    /// The end's write carries the start (one write, fenced by the ack it makes).
    WithEnd,
    /// The claim first, then the end as after any claim: the end does not ack with its
    /// write, and a start stored with it would be fenced only by the record's owner,
    /// which an earlier delivery's claim may still name.
    ClaimFirst,
    /// No record is written at the end (`ignore_result`): nor is the start.
    Nothing,
}

/// [`Unclaimed`] for a run that ended in `verdict`, concluded by `plan`. A terminated
/// run's revoke is stored already: its end only adds the run to a final record.
pub(super) fn unclaimed_end(verdict: &Verdict, plan: &Plan) -> Unclaimed {
    match (&plan.record, plan.release) {
        (Record::Store(_), _) if *verdict == Verdict::Terminated => Unclaimed::WithEnd,
        (Record::Store(_), Release::WithRecord) => Unclaimed::WithEnd,
        (Record::Store(_), _) => Unclaimed::ClaimFirst,
        (Record::Forget | Record::Keep, _) => Unclaimed::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fetch_loop_tops_up_below_one_message_a_slot_and_waits_on_an_empty_queue() {
        use NextFetch::*;
        assert_eq!(next_fetch(0, 0, 4, false), Wait, "full");
        assert_eq!(next_fetch(16, 0, 4, false), Block, "empty inbox: a fetch that may wait");
        assert_eq!(next_fetch(16, 0, 4, true), Block, "dry is for top-ups only");
        assert_eq!(next_fetch(13, 3, 4, false), TopUp, "less than one a slot, room for a batch");
        assert_eq!(next_fetch(12, 4, 4, false), Wait, "enough for the slots");
        assert_eq!(next_fetch(3, 1, 4, false), Wait, "no room for a batch: not worth a call");
        assert_eq!(next_fetch(13, 3, 4, true), Wait, "the queues were empty: no polling");
    }
    use crate::id::TaskId;
    use crate::link::{Callback, ChordMember};
    use crate::message::Message;

    fn envelope() -> Envelope {
        Envelope::new("t", vec![0x80], "default")
    }

    fn callback(on: CallbackOn, arg: Option<&str>) -> Callback {
        let message = Message::new(TaskId::new(), "default", vec![]);
        Callback::from_message(on, arg.map(str::to_owned), message)
    }

    const NO_BACKOFF: Backoff = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(1), jitter: false };

    #[test]
    fn unknown_expired_rate_limited_or_run() {
        let options = TaskOptions::new();
        let e = envelope();
        assert_eq!(admit(&e, None, 0), Admission::Unknown);
        assert_eq!(admit(&e, Some(&options), 0), Admission::Run);

        let mut expiring = envelope();
        expiring.expires_ms = Some(1_000);
        assert_eq!(admit(&expiring, Some(&options), 1_000), Admission::Run, "due at the instant, not past it");
        assert_eq!(admit(&expiring, Some(&options), 1_001), Admission::Expired);

        let limit: RateLimit = "10/s".parse().unwrap();
        let limited = TaskOptions { rate_limit: Some(limit), ..TaskOptions::new() };
        assert_eq!(admit(&e, Some(&limited), 0), Admission::Reserve(limit));
        let mut reserved = envelope();
        reserved.rate_slot_ms = Some(5);
        assert_eq!(admit(&reserved, Some(&limited), 0), Admission::Run, "a reserved slot is not asked for again");
    }

    #[test]
    fn only_a_task_error_with_retries_left_is_retried() {
        assert_eq!(verdict(Ok(()), 0, 3, &NO_BACKOFF), Verdict::Succeeded);
        let retryable = Failure::Task(TaskError::new("flaky"));
        assert_eq!(
            verdict(Err(&retryable), 2, 3, &NO_BACKOFF),
            Verdict::Retry { error: "flaky".into(), delay: Duration::from_secs(1) }
        );
        assert_eq!(verdict(Err(&retryable), 3, 3, &NO_BACKOFF), Verdict::Failed { error: "flaky".into() });
        let fatal = Failure::Task(TaskError::fatal("bad input"));
        assert_eq!(verdict(Err(&fatal), 0, 3, &NO_BACKOFF), Verdict::Failed { error: "bad input".into() });
        let asked = Failure::Task(TaskError::retry_in("later", Duration::from_millis(250)));
        assert_eq!(
            verdict(Err(&asked), 0, 3, &NO_BACKOFF),
            Verdict::Retry { error: "later".into(), delay: Duration::from_millis(250) }
        );
        assert_eq!(verdict(Err(&asked), 0, 0, &NO_BACKOFF), Verdict::Failed { error: "later".into() });
        let panic = Failure::Panic("boom".into());
        assert_eq!(verdict(Err(&panic), 0, 3, &NO_BACKOFF), Verdict::Failed { error: "task panicked: boom".into() });
        let slow = Failure::TimeLimit(Duration::from_secs(2));
        assert_eq!(
            verdict(Err(&slow), 0, 3, &NO_BACKOFF),
            Verdict::Failed { error: "time limit exceeded (2s)".into() }
        );
        assert_eq!(verdict(Err(&Failure::Terminated), 0, 3, &NO_BACKOFF), Verdict::Terminated);
    }

    #[test]
    fn autoscale_grows_with_the_backlog_and_shrinks_when_idle() {
        let keep = Duration::from_secs(30);
        assert_eq!(scale(2, (1, 8), 3, Duration::ZERO, keep), 5, "grow by what waits");
        assert_eq!(scale(6, (1, 8), 10, Duration::ZERO, keep), 8, "never past max");
        assert_eq!(scale(8, (1, 8), 10, Duration::ZERO, keep), 8);
        assert_eq!(scale(5, (1, 8), 0, Duration::from_secs(29), keep), 5, "idle, but not for long");
        assert_eq!(scale(5, (1, 8), 0, keep, keep), 4, "one back after the keepalive");
        assert_eq!(scale(1, (1, 8), 0, keep, keep), 1, "never under min");
        assert_eq!(scale(0, (2, 8), 0, Duration::ZERO, keep), 2, "at least min");
    }

    #[test]
    fn a_result_over_the_limit_fails_for_good() {
        assert!(oversized(&[0; 10], 10).is_none());
        let failure = oversized(&[0; 11], 10).expect("over the limit");
        assert_eq!(
            verdict(Err(&failure), 0, 3, &NO_BACKOFF),
            Verdict::Failed {
                error: "the result is 11 bytes, over the limit of 10 bytes (AppBuilder::max_message_size)".into()
            }
        );
    }

    #[test]
    fn a_plain_success_settles_in_one_step_when_the_store_allows() {
        let e = envelope();
        let one = plan(&e, &Verdict::Succeeded, true);
        assert_eq!(
            one,
            Plan {
                record: Record::Store(TaskState::Success),
                callbacks: None,
                hand_on: false,
                join_chord: false,
                abandon: false,
                release: Release::WithRecord,
            }
        );
        assert_eq!(plan(&e, &Verdict::Succeeded, false).release, Release::Ack);
    }

    #[test]
    fn a_success_with_links_acks_after_sending_them() {
        let mut e = envelope();
        e.callbacks.push(callback(CallbackOn::Success, None));
        let p = plan(&e, &Verdict::Succeeded, true);
        assert_eq!((p.callbacks, p.hand_on, p.release), (Some(CallbackOn::Success), false, Release::Ack));

        let mut step = envelope();
        step.callbacks.push(callback(CallbackOn::Success, Some("x")));
        assert!(plan(&step, &Verdict::Succeeded, true).hand_on, "a chain step takes the result");

        let mut failure_only = envelope();
        failure_only.callbacks.push(callback(CallbackOn::Failure, Some("x")));
        let p = plan(&failure_only, &Verdict::Succeeded, true);
        assert!(!p.hand_on, "no copy for a callback that is not sent");
        assert_eq!(p.release, Release::Ack, "the callback list is read after the record");

        let mut member = envelope();
        member.chord = Some(ChordMember::new(TaskId::new(), "default", 0, 2));
        let p = plan(&member, &Verdict::Succeeded, true);
        assert!(p.hand_on && p.join_chord);
        assert_eq!((p.callbacks, p.release), (None, Release::Ack));
    }

    #[test]
    fn ignore_result_and_acks_early_change_the_record_and_the_release() {
        let mut ignored = envelope();
        ignored.ignore_result = true;
        let p = plan(&ignored, &Verdict::Succeeded, true);
        assert_eq!((p.record, p.release), (Record::Forget, Release::Ack));
        assert_eq!(plan(&ignored, &Verdict::Terminated, true).record, Record::Keep);
        assert_eq!(plan(&ignored, &Verdict::Failed { error: "x".into() }, true).record, Record::Forget);

        let mut early = envelope();
        early.acks_early = true;
        assert_eq!(plan(&early, &Verdict::Succeeded, true).release, Release::AckedEarly);
        assert_eq!(plan(&early, &Verdict::Terminated, true).release, Release::AckedEarly);
        assert_eq!(plan(&early, &Verdict::Failed { error: "x".into() }, true).release, Release::AckedEarly);
    }

    #[test]
    fn a_retry_keeps_the_message_and_its_lock() {
        let retry = Verdict::Retry { error: "x".into(), delay: Duration::from_secs(1) };
        let p = plan(&envelope(), &retry, true);
        assert_eq!(
            p,
            Plan {
                record: Record::Store(TaskState::Retry),
                callbacks: None,
                hand_on: false,
                join_chord: false,
                abandon: false,
                release: Release::Retry,
            }
        );
        let mut early = envelope();
        early.acks_early = true;
        assert_eq!(plan(&early, &retry, true).release, Release::Resend);
    }

    #[test]
    fn a_final_failure_or_a_terminate_abandons_the_workflow() {
        let p = plan(&envelope(), &Verdict::Failed { error: "x".into() }, true);
        assert_eq!(
            p,
            Plan {
                record: Record::Store(TaskState::Failure),
                callbacks: Some(CallbackOn::Failure),
                hand_on: false,
                join_chord: false,
                abandon: true,
                release: Release::Ack,
            }
        );
        let t = plan(&envelope(), &Verdict::Terminated, true);
        assert_eq!((t.record, t.abandon, t.release), (Record::Store(TaskState::Revoked), true, Release::Ack));
    }

    #[test]
    fn a_start_is_deferred_only_where_the_end_can_carry_it_fenced() {
        let after = Duration::from_millis(50);
        assert_eq!(start(true, after, true, false, false), Start::ClaimAfter(after));
        assert_eq!(start(true, Duration::ZERO, true, false, false), Start::Claim, "zero: before the run");
        assert_eq!(start(true, after, false, false, false), Start::Claim, "no ack with the record");
        assert_eq!(start(true, after, true, true, false), Start::Claim, "acked before the run");
        assert_eq!(start(true, after, true, false, true), Start::Claim, "a pool's child");
        assert_eq!(start(false, after, true, false, false), Start::Untracked);
        assert_eq!(start(false, Duration::ZERO, false, true, true), Start::Untracked);
    }

    #[test]
    fn an_unclaimed_end_carries_its_start_only_when_it_acks_with_its_record() {
        let e = envelope();
        let end = |e: &Envelope, v: &Verdict| unclaimed_end(v, &plan(e, v, true));
        assert_eq!(end(&e, &Verdict::Succeeded), Unclaimed::WithEnd);
        let mut linked = envelope();
        linked.callbacks.push(callback(CallbackOn::Success, None));
        assert_eq!(end(&linked, &Verdict::Succeeded), Unclaimed::ClaimFirst);
        assert_eq!(end(&e, &Verdict::Failed { error: "x".into() }), Unclaimed::ClaimFirst);
        let retry = Verdict::Retry { error: "x".into(), delay: Duration::from_secs(1) };
        assert_eq!(end(&e, &retry), Unclaimed::ClaimFirst);
        assert_eq!(end(&linked, &Verdict::Terminated), Unclaimed::WithEnd, "the revoke is stored already");
        let mut ignored = envelope();
        ignored.ignore_result = true;
        assert_eq!(end(&ignored, &Verdict::Succeeded), Unclaimed::Nothing);
        assert_eq!(end(&ignored, &retry), Unclaimed::Nothing);
        assert_eq!(end(&ignored, &Verdict::Terminated), Unclaimed::Nothing);
    }
}
