//! The workflow suite: chains and chords end to end through real workers, the chord
//! join's no-double-count rule and send-once on the broker itself. Run on `memory://`
//! and on Redis with the harness of the control suite.
//!
//! ```ignore
//! task_suites::workflow_tests!(setup); // setup: async fn() -> AppHarness, as for control_tests!
//! ```

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::control::AppHarness;
use task_core::broker::Message;
use task_core::capability::ChordJoin;
use task_core::{ChordMember, Error, TaskContext, TaskError, TaskId, TaskResult, chord, group, task};

const WAIT: Duration = Duration::from_secs(60);

/// Expands to one `#[tokio::test]` per property; `$setup` is an `async fn() -> AppHarness`.
#[macro_export]
macro_rules! workflow_tests {
    ($setup:path) => {
        $crate::workflow_tests!(@each $setup;
            a_chain_hands_each_result_to_the_next_step, a_failed_step_stops_the_chain_and_is_named,
            a_chain_step_may_retry, a_chord_gets_every_result_in_order, a_failed_member_fails_the_chord,
            an_empty_chord_calls_back_at_once, a_redelivered_member_is_counted_once,
            a_message_is_enqueued_once, a_terminated_step_stops_the_chain_and_is_named);
    };
    (@each $setup:path; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::workflow::$name($setup().await).await;
            }
        )*
    };
}

#[task(name = "celerity.workflow.add")]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

#[task(name = "celerity.workflow.describe")]
fn describe(n: i64, unit: String) -> TaskResult<String> {
    Ok(format!("{n} {unit}"))
}

/// A chain of ten steps, one of them a sync task of another output type: each step
/// gets the previous result as its first argument; the chain's handle gives the last.
pub async fn a_chain_hands_each_result_to_the_next_step(h: AppHarness) {
    let app = h.app().await;
    let worker = app.worker().concurrency(4).spawn();
    let mut chain = add::signature(0, 1).then(add::partial(1));
    for i in 2..9 {
        chain = chain.then(add::partial(i));
    }
    assert_eq!(chain.len(), 9);
    let chain = chain.then(describe::partial("apples".into()));
    assert_eq!(chain.len(), 10);
    let res = chain.apply_async(&app).await.unwrap();
    assert_eq!(res.get(WAIT).await.unwrap(), "37 apples"); // 0+1, then +1..+8
    worker.shutdown().await.unwrap();
}

static AFTER_BREAK: AtomicUsize = AtomicUsize::new(0);

#[task(name = "celerity.workflow.breaks", max_retries = 0)]
async fn breaks(x: i64) -> TaskResult<i64> {
    Err(TaskError::fatal(format!("cannot take {x}")))
}

#[task(name = "celerity.workflow.after_break")]
async fn after_break(x: i64) -> TaskResult<i64> {
    AFTER_BREAK.fetch_add(1, Ordering::SeqCst);
    Ok(x)
}

/// A step that fails stops the chain: the later steps never run, and the chain's
/// result is a failure that names the step and its error.
pub async fn a_failed_step_stops_the_chain_and_is_named(h: AppHarness) {
    let app = h.app().await;
    let worker = app.worker().spawn();
    let res = add::signature(1, 1)
        .then(breaks::partial())
        .then(after_break::partial())
        .then(after_break::partial())
        .apply_async(&app)
        .await
        .unwrap();
    match res.get(WAIT).await {
        Err(Error::TaskFailed { error, .. }) => {
            assert!(error.starts_with("chain step 2 of 4 (task `celerity.workflow.breaks`"), "{error}");
            assert!(error.ends_with("failed: cannot take 2"), "{error}");
        }
        other => panic!("expected the chain to fail, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(AFTER_BREAK.load(Ordering::SeqCst), 0, "no step after the failed one runs");
    worker.shutdown().await.unwrap();
}

static FLAKY: Mutex<Vec<i64>> = Mutex::new(Vec::new());

#[task(name = "celerity.workflow.flaky", max_retries = 3)]
async fn flaky(ctx: TaskContext, x: i64) -> TaskResult<i64> {
    let mut seen = FLAKY.lock().unwrap();
    if !seen.contains(&x) {
        seen.push(x);
        return Err(ctx.retry(Duration::from_millis(20)));
    }
    Ok(x * 10)
}

/// A step that fails and is retried does not break the chain: the next step runs
/// once, with the result of the successful try.
pub async fn a_chain_step_may_retry(h: AppHarness) {
    let app = h.app().await;
    let worker = app.worker().spawn();
    let seed = i64::from(rand_u16()) + 1000;
    let res = add::signature(seed, 0).then(flaky::partial()).then(add::partial(1)).apply_async(&app).await.unwrap();
    assert_eq!(res.get(WAIT).await.unwrap(), seed * 10 + 1);
    worker.shutdown().await.unwrap();
}

fn rand_u16() -> u16 {
    let id = TaskId::new();
    id.as_str().bytes().fold(0u16, |h, b| h.wrapping_mul(31).wrapping_add(u16::from(b)))
}

#[task(name = "celerity.workflow.square")]
async fn square(x: i64) -> TaskResult<i64> {
    Ok(x * x)
}

static TOTALS: AtomicUsize = AtomicUsize::new(0);

#[task(name = "celerity.workflow.total")]
async fn total(values: Vec<i64>, offset: i64) -> TaskResult<(usize, i64)> {
    TOTALS.fetch_add(1, Ordering::SeqCst);
    Ok((values.len(), values.iter().sum::<i64>() + offset))
}

/// A chord of 1,000 members on two workers: the callback runs once, with every result
/// in member order.
pub async fn a_chord_gets_every_result_in_order(h: AppHarness) {
    let app = h.app().await;
    let workers = [app.worker().concurrency(16).spawn(), app.worker().concurrency(16).spawn()];
    let before = TOTALS.load(Ordering::SeqCst);
    let res = group((0..1000).map(square::signature)).then(total::partial(7)).apply_async(&app).await.unwrap();
    let expected: i64 = (0..1000).map(|x| x * x).sum::<i64>() + 7;
    assert_eq!(res.get(WAIT).await.unwrap(), (1000, expected));

    let ordered = chord([3, 1, 2].map(square::signature), order::partial()).apply_async(&app).await.unwrap();
    assert_eq!(ordered.get(WAIT).await.unwrap(), vec![9, 1, 4]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(TOTALS.load(Ordering::SeqCst) - before, 1, "the callback runs once");
    for worker in workers {
        worker.shutdown().await.unwrap();
    }
}

#[task(name = "celerity.workflow.order")]
async fn order(values: Vec<i64>) -> TaskResult<Vec<i64>> {
    Ok(values)
}

#[task(name = "celerity.workflow.picky", max_retries = 0)]
async fn picky(x: i64) -> TaskResult<i64> {
    if x == 13 {
        return Err(TaskError::fatal("13 is unlucky"));
    }
    Ok(x)
}

static NEVER: AtomicUsize = AtomicUsize::new(0);

#[task(name = "celerity.workflow.never")]
async fn never(values: Vec<i64>) -> TaskResult<usize> {
    NEVER.fetch_add(1, Ordering::SeqCst);
    Ok(values.len())
}

/// A member that fails for good fails the chord: the callback never runs and its
/// result names the member.
pub async fn a_failed_member_fails_the_chord(h: AppHarness) {
    let app = h.app().await;
    let worker = app.worker().concurrency(8).spawn();
    let res = chord((0..20).map(picky::signature), never::partial()).apply_async(&app).await.unwrap();
    match res.get(WAIT).await {
        Err(Error::TaskFailed { error, .. }) => {
            assert!(error.starts_with("chord member 14 of 20 (task `celerity.workflow.picky`"), "{error}");
            assert!(error.ends_with("failed: 13 is unlucky"), "{error}");
        }
        other => panic!("expected the chord to fail, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(NEVER.load(Ordering::SeqCst), 0, "the callback of a failed chord never runs");
    worker.shutdown().await.unwrap();
}

/// A chord without members sends its callback at once, with no results.
pub async fn an_empty_chord_calls_back_at_once(h: AppHarness) {
    let app = h.app().await;
    let worker = app.worker().spawn();
    let res = chord(Vec::new(), order::partial()).apply_async(&app).await.unwrap();
    assert_eq!(res.get(WAIT).await.unwrap(), Vec::<i64>::new());
    worker.shutdown().await.unwrap();
}

/// The join itself: a member reported twice (redelivered after its worker died)
/// counts once and keeps its first result; the callback is sent by the first
/// `chord_fire` only; a failed chord stays closed.
pub async fn a_redelivered_member_is_counted_once(h: AppHarness) {
    let app = h.app().await;
    let join = app.broker().chord_store().expect("chord joins");
    let chord = TaskId::new();
    let queue = format!("chord-{chord}");
    join.chord_open(&chord, &queue, 2, b"callback", WAIT).await.unwrap();
    let first = ChordMember::new(chord.clone(), queue.clone(), 0, 2);
    let second = ChordMember::new(chord.clone(), queue.clone(), 1, 2);
    assert_eq!(join.chord_join(&first, b"\x01").await.unwrap(), ChordJoin::Waiting(1));
    assert_eq!(join.chord_join(&first, b"\x02").await.unwrap(), ChordJoin::Waiting(1), "counted once");
    let complete =
        ChordJoin::Complete { callback: b"callback".to_vec(), results: vec![b"\x01".to_vec(), b"\x03".to_vec()] };
    assert_eq!(join.chord_join(&second, b"\x03").await.unwrap(), complete);
    // Both members' workers may see it complete (a redelivery): one sends.
    assert_eq!(join.chord_join(&second, b"\x04").await.unwrap(), complete);
    let message = |n: u8| Message::new(TaskId::new(), queue.clone(), vec![n]);
    assert!(join.chord_fire(&second, message(1)).await.unwrap());
    assert!(!join.chord_fire(&first, message(2)).await.unwrap(), "sent once");
    assert_eq!(join.chord_join(&first, b"\x01").await.unwrap(), ChordJoin::Closed);
    assert!(!join.chord_fail(&first).await.unwrap(), "closed already");
    let stats = app.broker().inspect().unwrap().queue_stats(&queue).await.unwrap();
    assert_eq!(stats.ready, 1, "one callback message");

    let failing = TaskId::new();
    join.chord_open(&failing, &queue, 3, b"cb", WAIT).await.unwrap();
    let m = ChordMember::new(failing, queue.clone(), 2, 3);
    assert!(join.chord_fail(&m).await.unwrap());
    assert!(!join.chord_fail(&m).await.unwrap());
    assert_eq!(join.chord_join(&m, b"\x01").await.unwrap(), ChordJoin::Closed);
    assert!(!join.chord_fire(&m, message(3)).await.unwrap());
}

/// `enqueue_once`: a callback's id is sent once, however often its parent runs.
pub async fn a_message_is_enqueued_once(h: AppHarness) {
    let app = h.app().await;
    let once = app.broker().send_once().expect("send-once");
    let queue = format!("once-{}", TaskId::new());
    let id = TaskId::new();
    let message = || Message::new(id.clone(), queue.clone(), vec![0x80]);
    assert!(once.enqueue_once(message(), WAIT).await.unwrap());
    assert!(!once.enqueue_once(message(), WAIT).await.unwrap(), "sent already");
    assert!(once.enqueue_once(Message::new(TaskId::new(), queue.clone(), vec![0x80]), WAIT).await.unwrap());
    let stats = app.broker().inspect().unwrap().queue_stats(&queue).await.unwrap();
    assert_eq!(stats.ready, 2);
}

static STUCK: Mutex<Option<TaskId>> = Mutex::new(None);

#[task(name = "celerity.workflow.stuck")]
async fn stuck(ctx: TaskContext, x: i64) -> TaskResult<i64> {
    *STUCK.lock().unwrap() = Some(ctx.id().clone());
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(x)
}

/// A step stopped by `revoke(.., terminate)` stops the chain as a failed one does: the
/// later steps fail, naming it, and whoever waits on the chain learns why at once.
pub async fn a_terminated_step_stops_the_chain_and_is_named(h: AppHarness) {
    let app = h.app().await;
    let worker = app.worker().spawn();
    let res = stuck::signature(1).then(after_break::partial()).apply_async(&app).await.unwrap();
    let start = std::time::Instant::now();
    let first = loop {
        if let Some(id) = STUCK.lock().unwrap().clone() {
            break id;
        }
        assert!(start.elapsed() < WAIT, "the first step never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    app.revoke(&first, true).await.unwrap();
    match res.get(WAIT).await {
        Err(Error::TaskFailed { error, .. }) => {
            assert!(error.starts_with("chain step 1 of 2 (task `celerity.workflow.stuck`"), "{error}");
            assert!(error.ends_with("was terminated"), "{error}");
        }
        other => panic!("expected the chain to fail, got {other:?}"),
    }
    worker.shutdown().await.unwrap();
}
