//! The worker pool on `memory://`: results, failures, retries, limits, bad input, shutdown.

mod support;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use support::{app, app_with_broker, eventually, stop};
use task_core::broker::{Broker, ConsumerId, Message};
use task_core::memory::BrokerOp;
use task_core::{App, Envelope, Error, TaskContext, TaskError, TaskId, TaskResult, TaskState, task};

const WAIT: Duration = Duration::from_secs(10);

#[task]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

#[task]
fn mul_sync(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x * y)
}

#[task]
fn shout(text: String) -> String {
    text.to_uppercase()
}

#[task]
async fn explode(message: String) -> TaskResult<()> {
    panic!("{message}")
}

#[task(max_retries = 0)]
async fn fails_fatally() -> TaskResult<()> {
    Err(TaskError::fatal("no point retrying"))
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 3)]
async fn flaky(ctx: TaskContext, succeed_on: u32) -> TaskResult<u32> {
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    if ctx.attempt() < succeed_on {
        return Err(ctx.retry(Duration::from_millis(20)));
    }
    Ok(ctx.attempt())
}

#[task(max_retries = 1)]
async fn always_fails(code: u8) -> TaskResult<()> {
    let parsed: u8 = format!("x{code}").parse()?;
    let _ = parsed;
    Ok(())
}

#[task(time_limit = 1)]
async fn sleeps(ms: u64) -> TaskResult<u64> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

#[task(time_limit = 1)]
fn sleeps_sync(ms: u64) -> TaskResult<u64> {
    std::thread::sleep(Duration::from_millis(ms));
    Ok(ms)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Progress {
    done: u32,
    total: u32,
}

#[task]
async fn reports(ctx: TaskContext, total: u32) -> TaskResult<u32> {
    ctx.set_progress(&Progress { done: total / 2, total }).await?;
    Ok(total)
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[task(queue = "gauge")]
async fn gauge(i: u32) -> TaskResult<u32> {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    Ok(i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_sync_and_plain_tasks_return_their_values() {
    let app = app();
    let worker = app.worker().concurrency(4).spawn();
    let a = add::delay(&app, 1, 2).await.unwrap();
    let m = mul_sync::delay(&app, 6, 7).await.unwrap();
    let s = shout::delay(&app, "hi".into()).await.unwrap();
    assert_eq!(a.get(WAIT).await.unwrap(), 3);
    assert_eq!(m.get(WAIT).await.unwrap(), 42);
    assert_eq!(s.get(WAIT).await.unwrap(), "HI");
    let info = a.info().await.unwrap().unwrap();
    assert_eq!(info.task.as_deref(), Some(add::NAME));
    assert!(info.worker.is_some() && info.started_ms.is_some() && info.finished_ms.is_some());
    assert_eq!(stop(worker).await.succeeded, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_at_concurrency_8_each_result_right_once() {
    let app = app();
    let worker = app.worker().concurrency(8).queues(["gauge"]).spawn();
    let results = app.send_batch((0..10_000).map(gauge::signature)).await.unwrap();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.get(WAIT).await.unwrap(), i as u32);
    }
    let report = stop(worker).await;
    assert_eq!(report.succeeded, 10_000);
    assert_eq!(report.failed + report.retried + report.dead_lettered, 0);
    let peak = PEAK.load(Ordering::SeqCst);
    assert!(peak <= 8, "{peak} tasks ran at once with concurrency 8");
    assert!(peak >= 2, "never ran in parallel (peak {peak})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_ends_failure_with_its_text_and_the_worker_goes_on() {
    let app = app();
    let worker = app.worker().concurrency(2).spawn();
    let boom = explode::delay(&app, "kaboom 42".into()).await.unwrap();
    match boom.get(WAIT).await {
        Err(Error::TaskFailed { error, task, .. }) => {
            assert!(error.contains("kaboom 42"), "{error}");
            assert_eq!(task, explode::NAME);
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    assert_eq!(boom.state().await.unwrap(), TaskState::Failure);
    assert_eq!(add::delay(&app, 2, 2).await.unwrap().get(WAIT).await.unwrap(), 4);
    let report = stop(worker).await;
    assert_eq!((report.failed, report.succeeded, report.retried), (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_retried_then_fail_with_the_last_error() {
    let app = app();
    let worker = app.worker().concurrency(2).spawn();
    let r = always_fails::delay(&app, 7).await.unwrap();
    let err = r.get(Duration::from_secs(15)).await.unwrap_err();
    assert!(matches!(&err, Error::TaskFailed { error, .. } if error == "invalid digit found in string"), "{err}");
    let meta = r.info().await.unwrap().unwrap();
    assert_eq!(meta.retries, Some(1), "retried once (max_retries = 1)");
    let report = stop(worker).await;
    assert_eq!((report.retried, report.failed), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctx_retry_retries_with_its_delay_and_state_goes_through_retry() {
    let app = app();
    let worker = app.worker().concurrency(2).spawn();
    let r = flaky::delay(&app, 3).await.unwrap();
    assert_eq!(r.get(WAIT).await.unwrap(), 3, "succeeds on the third attempt");
    assert_eq!(r.info().await.unwrap().unwrap().retries, Some(2));
    assert_eq!(stop(worker).await.retried, 2);

    // Past max_retries (3), the retry request becomes a failure.
    let app = support::app();
    let worker = app.worker().spawn();
    let r = flaky::delay(&app, 99).await.unwrap();
    assert!(matches!(r.get(WAIT).await, Err(Error::TaskFailed { .. })));
    assert_eq!(r.info().await.unwrap().unwrap().retries, Some(3));
    stop(worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_error_is_never_retried() {
    let app = app();
    let worker = app.worker().spawn();
    let r = fails_fatally::signature().max_retries(5).apply_async(&app).await.unwrap();
    assert!(matches!(r.get(WAIT).await, Err(Error::TaskFailed { error, .. }) if error == "no point retrying"));
    assert_eq!(stop(worker).await.retried, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_limits_end_async_and_sync_tasks_with_failure_and_free_the_slot() {
    let app = app();
    let worker = app.worker().concurrency(1).spawn();
    let started = Instant::now();
    let slow = sleeps::delay(&app, 60_000).await.unwrap();
    let err = slow.get(WAIT).await.unwrap_err();
    assert!(err.to_string().contains("time limit exceeded"), "{err}");
    let slow_sync = sleeps_sync::delay(&app, 3_000).await.unwrap();
    let err = slow_sync.get(WAIT).await.unwrap_err();
    assert!(err.to_string().contains("time limit exceeded"), "{err}");
    // The one slot was given back at once: the next task runs while the thread sleeps on.
    assert_eq!(add::delay(&app, 1, 1).await.unwrap().get(Duration::from_millis(1500)).await.unwrap(), 2);
    assert!(started.elapsed() < Duration::from_secs(4));
    // A per-call limit overrides the task's.
    let quick = sleeps::signature(300).time_limit(Duration::from_millis(100)).apply_async(&app).await.unwrap();
    assert!(quick.get(WAIT).await.is_err());
    assert_eq!(stop(worker).await.failed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_task_garbage_and_bad_arguments_go_to_the_dead_letters() {
    let (app, broker) = app_with_broker().await;
    let worker = app.worker().spawn();

    broker.enqueue(Message::new(TaskId::new(), "default", b"\xc1 not msgpack".to_vec())).await.unwrap();
    let unknown = Envelope::new("no.such.task", rmp_serde::to_vec_named(&()).unwrap(), "default");
    let unknown_id = unknown.id.clone();
    broker.enqueue(Message::new(unknown.id.clone(), "default", unknown.encode().unwrap())).await.unwrap();
    let bad_args = Envelope::new(add::NAME, rmp_serde::to_vec_named(&("one", "two")).unwrap(), "default");
    let bad_id = bad_args.id.clone();
    broker.enqueue(Message::new(bad_args.id.clone(), "default", bad_args.encode().unwrap())).await.unwrap();

    eventually(|| broker.dead_letters().len() == 3).await;
    // Runners are concurrent: the three may be buried in any order.
    let dead = broker.dead_letters();
    let find = |prefix: &str| {
        dead.iter().find(|d| d.reason.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in {dead:?}"))
    };
    assert_eq!(find("undecodable message in queue `default`").payload, b"\xc1 not msgpack");
    find("unknown task `no.such.task`");
    find(&format!("arguments do not fit task `{}`", add::NAME));

    // Callers waiting on those ids learn why.
    let err = app.result::<()>(unknown_id).get(WAIT).await.unwrap_err();
    assert!(err.to_string().contains("unknown task `no.such.task`"), "{err}");
    assert!(app.result::<i64>(bad_id).get(WAIT).await.is_err());

    // And the worker goes on.
    assert_eq!(add::delay(&app, 20, 22).await.unwrap().get(WAIT).await.unwrap(), 42);
    let report = stop(worker).await;
    assert_eq!((report.dead_lettered, report.succeeded), (3, 1));
    assert_eq!(broker.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_survives_a_broker_outage() {
    let (app, broker) = app_with_broker().await;
    broker.fail_next(BrokerOp::Fetch, 3);
    let worker = app.worker().spawn();
    let r = add::delay(&app, 5, 5).await.unwrap();
    assert_eq!(r.get(WAIT).await.unwrap(), 10);
    stop(worker).await;

    broker.fail_next(BrokerOp::Enqueue, 1);
    let err = add::delay(&app, 1, 1).await.unwrap_err();
    assert!(matches!(&err, Error::Broker(e) if e.kind() == task_core::ErrorKind::Connection), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_failures_are_retried() {
    let (app, broker) = app_with_broker().await;
    broker.fail_next(BrokerOp::Ack, 2);
    let worker = app.worker().spawn();
    add::delay(&app, 1, 1).await.unwrap().get(WAIT).await.unwrap();
    eventually(|| broker.in_flight() == 0).await;
    stop(worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_stored_and_read_typed() {
    let app = app();
    let worker = app.worker().spawn();
    let r = reports::delay(&app, 10).await.unwrap();
    assert_eq!(r.get(WAIT).await.unwrap(), 10);
    assert_eq!(r.progress::<Progress>().await.unwrap(), Some(Progress { done: 5, total: 10 }));
    stop(worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn countdown_waits_in_the_broker_and_then_runs() {
    let app = app();
    let worker = app.worker().spawn();
    let sent = Instant::now();
    let r = add::signature(1, 1).countdown(Duration::from_millis(400)).apply_async(&app).await.unwrap();
    assert_eq!(r.state().await.unwrap(), TaskState::Pending);
    assert_eq!(r.get(WAIT).await.unwrap(), 2);
    assert!(sent.elapsed() >= Duration::from_millis(400));
    stop(worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_times_out_with_a_clear_error_and_forget_deletes() {
    let app = app();
    let r = add::delay(&app, 1, 2).await.unwrap();
    let err = r.get(Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { state: TaskState::Pending, .. }), "{err}");
    assert!(err.to_string().contains("timed out"));

    let worker = app.worker().spawn();
    assert_eq!(r.get(WAIT).await.unwrap(), 3);
    r.forget().await.unwrap();
    assert_eq!(r.state().await.unwrap(), TaskState::Pending);
    stop(worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_back_unstarted_messages_and_lets_running_ones_finish() {
    let (app, broker) = app_with_broker().await;
    let results = app.send_batch((0..6).map(|_| sleeps::signature(300))).await.unwrap();
    let worker = app.worker().concurrency(2).prefetch(6).spawn();
    eventually(|| broker.in_flight() == 6).await; // 2 running, 4 held
    let report = stop(worker).await;
    assert_eq!(report.succeeded, 2, "the running ones finished");
    assert_eq!(report.released, 4, "the held ones went back");
    assert_eq!(broker.len("default"), 4);
    assert_eq!(broker.in_flight(), 0);
    let mut done = 0;
    for r in &results {
        if r.state().await.unwrap() == TaskState::Success {
            done += 1;
        }
    }
    assert_eq!(done, 2);
}

/// With a prefetch above the concurrency, held messages start as slots free up, even
/// once the queue is empty: they never wait on a fetch that blocks for new work (5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_messages_start_when_a_slot_frees_not_after_a_blocked_fetch() {
    let (app, broker) = app_with_broker().await;
    let results = app.send_batch((0..10).map(|_| sleeps::signature(20))).await.unwrap();
    let worker = app.worker().concurrency(2).prefetch(8).spawn();
    let started = std::time::Instant::now();
    for r in &results {
        r.get(WAIT).await.unwrap();
    }
    // Ten 20 ms tasks two at a time take ~0.1 s; a held message left behind a blocked
    // fetch would wait for its 5 s.
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(stop(worker).await.succeeded, 10);
    assert_eq!(broker.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_period_running_tasks_are_aborted_and_requeued() {
    let (app, broker) = app_with_broker().await;
    sleeps::signature(900).apply_async(&app).await.unwrap();
    let worker = app.worker().concurrency(1).grace_period(Duration::from_millis(100)).spawn();
    eventually(|| broker.in_flight() == 1).await;
    let report = stop(worker).await;
    assert_eq!(report.succeeded, 0);
    assert_eq!(broker.len("default"), 1, "the aborted task's message is back in its queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_messages_are_recovered_by_a_live_one() {
    let (app, broker) = app_with_broker().await;
    let r = add::delay(&app, 40, 2).await.unwrap();
    // A consumer that takes the message and dies without acking.
    let dead = ConsumerId::new();
    broker.heartbeat(&dead, Duration::from_millis(100)).await.unwrap();
    let taken = broker.fetch(&dead, &["default".into()], 1, WAIT).await.unwrap();
    assert_eq!(taken.len(), 1);
    let worker = app.worker().heartbeat_ttl(Duration::from_millis(150)).spawn();
    assert_eq!(r.get(WAIT).await.unwrap(), 42);
    stop(worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_call_options_are_clear_errors() {
    let app = app();
    let err = add::signature(1, 2).priority(10).apply_async(&app).await.unwrap_err();
    assert!(err.to_string().contains("priority must be 0 to 9, got 10"), "{err}");
    let err = add::signature(1, 2).queue(" ").apply_async(&app).await.unwrap_err();
    assert!(err.to_string().contains("queue name cannot be empty"), "{err}");
    let err = app.worker().queues(Vec::<String>::new()).run_until(async {}).await.unwrap_err();
    assert!(err.to_string().contains("at least one queue"), "{err}");
}

#[tokio::test]
async fn unknown_url_schemes_are_clear_errors() {
    let err = App::builder().broker_url("amqp://guest@localhost//").build().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unsupported broker URL") && text.contains("supported: memory"), "{text}");
    let err = App::builder().result_backend("cassandra://x").build().await.unwrap_err();
    assert!(err.to_string().contains("unsupported result backend URL"), "{err}");
}

#[tokio::test]
async fn send_by_type_and_direct_calls_still_work() {
    let app = app();
    let worker = app.worker().spawn();
    let r = app.send::<add::Task>(add::Args { x: 2, y: 3 }).await.unwrap();
    assert_eq!(r.get(WAIT).await.unwrap(), 5);
    assert_eq!(add(2, 3).await.unwrap(), 5);
    assert_eq!(mul_sync(2, 3).unwrap(), 6);
    assert_eq!(reports(TaskContext::detached("t"), 4).await.unwrap(), 4);
    stop(worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_call_result_ttl_wins_over_the_apps() {
    let app = app();
    let worker = app.worker().spawn();
    let short = add::signature(1, 1).result_ttl(Duration::from_millis(300)).apply_async(&app).await.unwrap();
    let long = add::delay(&app, 2, 2).await.unwrap();
    assert_eq!(short.get(WAIT).await.unwrap(), 2);
    assert_eq!(long.get(WAIT).await.unwrap(), 4);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(short.state().await.unwrap(), TaskState::Pending, "expired");
    assert_eq!(long.state().await.unwrap(), TaskState::Success, "kept for the app's day");
    stop(worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_fetch_shows_it_while_its_heartbeat_goes_on() {
    let (app, broker) = app_with_broker().await;
    let worker = app.worker().heartbeat_ttl(Duration::from_millis(300)).spawn();
    let directory = app.broker().directory().unwrap();
    let now_ms = || chrono::Utc::now().timestamp_millis();
    // A fetch that delivers a task is recorded...
    let sent_at = now_ms();
    add::delay(&app, 1, 1).await.unwrap().get(WAIT).await.unwrap();
    let start = Instant::now();
    while directory.workers().await.unwrap().pop().is_none_or(|w| w.last_fetch_ms < sent_at) {
        assert!(start.elapsed() < WAIT, "the last fetch time never moved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and when fetches fail, it stays behind while the heartbeat goes on.
    let failing_from = now_ms();
    broker.fail_next(BrokerOp::Fetch, 10_000); // the broker answers heartbeats, not fetches
    let start = Instant::now();
    loop {
        let info = directory.workers().await.unwrap().pop().expect("announced");
        assert!(info.last_fetch_ms <= failing_from + 100, "no fetch succeeded: {info:?}");
        if info.heartbeat_ms - info.last_fetch_ms > 1_500 {
            break; // heartbeat fresh, fetch stale: visible
        }
        assert!(start.elapsed() < WAIT, "the last fetch time never fell behind: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.fail_next(BrokerOp::Fetch, 0);
    stop(worker).await;
}

#[task(unique_for = 600)]
async fn once_a_while(key: String) -> TaskResult<String> {
    Ok(key)
}

/// A unique call whose enqueue fails gives its lock back: the next call is sent (and
/// runs), instead of finding a phantom twin that was never queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_releases_its_uniqueness_lock() {
    let (app, broker) = app_with_broker().await;
    broker.fail_next(BrokerOp::Enqueue, 1);
    assert!(once_a_while::delay(&app, "k".into()).await.is_err(), "the enqueue fails");
    let worker = app.worker().spawn();
    let sent = once_a_while::delay(&app, "k".into()).await.expect("the next call is sent");
    assert_eq!(sent.get(WAIT).await.expect("and runs: it is no phantom twin"), "k");
    stop(worker).await;
}

static STUBBORN_STARTS: AtomicUsize = AtomicUsize::new(0);

#[task]
fn stubborn() -> TaskResult<()> {
    STUBBORN_STARTS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    Ok(())
}

/// A plain `fn` task still running when the grace period ends cannot be stopped: its
/// message is not given back for a second copy to run beside the first; the task ends
/// FAILURE, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_that_outlives_the_grace_period_is_not_run_twice() {
    let app = app();
    let worker = app.worker().grace_period(Duration::from_millis(100)).spawn();
    let res = stubborn::delay(&app).await.unwrap();
    eventually(|| STUBBORN_STARTS.load(Ordering::SeqCst) == 1).await;
    let report = stop(worker).await;
    assert_eq!(report.failed, 1, "{report:?}");
    let next = app.worker().spawn();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(STUBBORN_STARTS.load(Ordering::SeqCst), 1, "a second copy ran beside the first");
    match res.get(WAIT).await {
        Err(Error::TaskFailed { error, .. }) => assert!(error.contains("cannot stop"), "{error}"),
        other => panic!("expected FAILURE, got {other:?}"),
    }
    stop(next).await;
}

#[task]
async fn echo(text: String) -> TaskResult<String> {
    Ok(text)
}

#[task]
async fn inflate(n: usize) -> TaskResult<String> {
    Ok("x".repeat(n))
}

/// Sizes: a send over the limit is refused and sends nothing; a message over the limit
/// (from a producer with a larger one) goes to the dead letters and the worker goes on;
/// a result over the limit ends its task FAILURE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_results_over_the_size_limit_are_clear_errors() {
    let huge = "x".repeat(task_core::DEFAULT_MAX_MESSAGE_SIZE + 1);
    let (app, broker) = app_with_broker().await;
    match echo::delay(&app, huge).await {
        Err(Error::TooLarge { task, size, limit }) => {
            assert!(task.ends_with("echo") && size > limit && limit == task_core::DEFAULT_MAX_MESSAGE_SIZE);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(broker.len("default"), 0, "nothing was sent");

    // A worker with a small limit, fed by a producer with the default one.
    let small = App::builder()
        .broker(app.broker().clone())
        .backend(app.backend().clone())
        .max_message_size(4096)
        .build()
        .await
        .unwrap();
    let worker = small.worker().spawn();
    let big = echo::delay(&app, "y".repeat(8192)).await.unwrap();
    match big.get(WAIT).await {
        Err(Error::TaskFailed { error, .. }) => assert!(error.contains("over the limit of 4096 bytes"), "{error}"),
        other => panic!("expected FAILURE, got {other:?}"),
    }
    // The failure is stored before the message is buried: the letter may follow.
    let until = std::time::Instant::now() + WAIT;
    while !broker.dead_letters().iter().any(|d| d.reason.contains("over the limit")) {
        assert!(std::time::Instant::now() < until, "a dead letter");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fat = inflate::delay(&app, 10_000).await.unwrap();
    match fat.get(WAIT).await {
        Err(Error::TaskFailed { error, .. }) => assert!(error.contains("the result is"), "{error}"),
        other => panic!("expected FAILURE, got {other:?}"),
    }
    assert_eq!(echo::delay(&app, "small".into()).await.unwrap().get(WAIT).await.unwrap(), "small", "it goes on");
    stop(worker).await;
}

/// A worker's name for people, with its host expanded, is in the directory beside its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_named_for_people() {
    let app = app();
    let worker = app.worker().name("billing-%n@%h").spawn();
    let directory = app.broker().directory().unwrap();
    let start = std::time::Instant::now();
    let me = loop {
        let workers = directory.workers().await.unwrap();
        if let Some(me) = workers.into_iter().find(|w| w.id == worker.id().as_str()) {
            break me;
        }
        assert!(start.elapsed() < WAIT, "the worker never announced itself");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let host = &me.hostname;
    let first = host.split('.').next().unwrap();
    assert_eq!(me.name, format!("billing-{first}@{host}"));
    assert_ne!(me.name, me.id, "the id stays a UUID");
    stop(worker).await;
}

static BURST_RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST_AT_ONCE: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn busy_for_a_while() -> TaskResult<()> {
    let now = BURST_RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_AT_ONCE.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    BURST_RUNNING.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

/// Autoscale: a burst grows the pool from its minimum toward its maximum (never past
/// it), and an idle pool gives its slots back down to the minimum; the directory shows
/// the concurrency of the moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscale_grows_under_a_burst_and_shrinks_when_idle() {
    let app = app();
    let worker = app
        .worker()
        .autoscale(6, 1)
        .autoscale_keepalive(Duration::from_millis(100))
        .heartbeat_ttl(Duration::from_millis(150))
        .spawn();
    let directory = app.broker().directory().unwrap();
    let concurrency = || async {
        directory.workers().await.unwrap().into_iter().find(|w| w.id == worker.id().as_str()).map(|w| w.concurrency)
    };
    let start = Instant::now();
    while concurrency().await != Some(1) {
        assert!(start.elapsed() < WAIT, "the pool starts at its minimum: {:?}", concurrency().await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = app.send_batch((0..30).map(|_| busy_for_a_while::signature())).await.unwrap();
    for r in &sent {
        r.get(WAIT).await.unwrap();
    }
    let most = MOST_AT_ONCE.load(Ordering::SeqCst);
    assert!((4..=6).contains(&most), "the burst ran up to 6 at once, not 1: {most}");
    let start = Instant::now();
    while concurrency().await != Some(1) {
        assert!(start.elapsed() < WAIT, "idle, the pool shrinks back: {:?}", concurrency().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(worker).await;
}

/// Waits until a worker shows in the directory (it listens for remote control before).
async fn listed(app: &App) {
    let directory = app.broker().directory().unwrap();
    let start = Instant::now();
    while directory.workers().await.unwrap().is_empty() {
        assert!(start.elapsed() < WAIT, "the worker never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The one live worker's answer to `command`.
async fn ask_one(app: &App, command: &str) -> serde_json::Value {
    let answers = app.backend().remote_control().unwrap().ask(command, 1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(answers.len(), 1, "{command}");
    task_core::codec::decode::<serde_json::Value>(&answers[0], "an answer").unwrap()
}

/// Remote control on memory://: a live worker answers what it is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_answers_remote_control() {
    let app = app();
    let worker = app.worker().name("solo").concurrency(3).spawn();
    listed(&app).await;
    let ask = |command: &'static str| ask_one(&app, command);
    let pong = ask("ping").await;
    assert_eq!((pong["ok"].as_str(), pong["name"].as_str()), (Some("pong"), Some("solo")), "{pong}");
    assert_eq!(pong["worker"], worker.id().as_str());
    assert_eq!(ask("stats").await["concurrency"], 3);
    assert!(
        ask("registered").await["tasks"].as_array().unwrap().iter().any(|t| t.as_str().unwrap().ends_with("::add"))
    );
    assert_eq!(ask("active").await["active"], serde_json::json!([]));
    assert!(ask("nonsense").await["error"].as_str().unwrap().contains("unknown command"));
    stop(worker).await;
    let control = app.backend().remote_control().unwrap();
    assert!(control.ask("ping", 1, Duration::from_millis(200)).await.unwrap().is_empty(), "a stopped worker is silent");
}

#[task(queue = "extra")]
async fn extra() -> TaskResult<u8> {
    Ok(1)
}

/// Remote control changes a running worker: its pool grows and shrinks, and it takes
/// from a queue added, and no longer from a queue cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_control_resizes_the_pool_and_changes_the_queues() {
    let app = app();
    let worker = app.worker().concurrency(2).heartbeat_ttl(Duration::from_millis(150)).spawn();
    let directory = app.broker().directory().unwrap();
    let me = || async { directory.workers().await.unwrap().into_iter().find(|w| w.id == worker.id().as_str()) };
    let start = Instant::now();
    while me().await.is_none() {
        assert!(start.elapsed() < WAIT, "the worker never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ask = |command: String| {
        let app = &app;
        async move { ask_one(app, &command).await }
    };
    let until = |what: &'static str, f: Box<dyn Fn(&task_core::capability::WorkerInfo) -> bool>| {
        let me = &me;
        async move {
            let start = Instant::now();
            while !me().await.is_some_and(|w| f(&w)) {
                assert!(start.elapsed() < Duration::from_secs(20), "{what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(ask("pool-grow 3".into()).await["ok"].is_string());
    until("grown to 5", Box::new(|w| w.concurrency == 5)).await;
    assert!(ask("pool-shrink 10".into()).await["ok"].is_string());
    until("shrunk to 1, never 0", Box::new(|w| w.concurrency == 1)).await;
    assert!(ask("pool-grow x".into()).await["error"].is_string());

    ask("add-consumer extra".into()).await;
    assert_eq!(extra::delay(&app).await.unwrap().get(Duration::from_secs(20)).await.unwrap(), 1, "extra is taken");
    ask("cancel-consumer default".into()).await;
    until("default no longer consumed", Box::new(|w| w.queues == ["extra"])).await;
    let waits = add::delay(&app, 1, 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(waits.state().await.unwrap(), TaskState::Pending, "a cancelled queue is not taken from");
    ask("add-consumer default".into()).await;
    assert_eq!(waits.get(Duration::from_secs(20)).await.unwrap(), 2);
    stop(worker).await;
}

/// Remote control changes a task's rate limit and time limits on a running worker, as
/// Celery's `control rate_limit` and `time_limit`; unknown tasks and bad limits are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_control_changes_rate_and_time_limits() {
    let app = app();
    let worker = app.worker().concurrency(1).spawn();
    listed(&app).await;
    let ask = |command: String| {
        let app = &app;
        async move { ask_one(app, &command).await }
    };

    // `sleeps` is registered with a hard limit of 1 s: lifted, a 1.5 s run succeeds.
    let lifted = ask(format!("time-limit {} none none", sleeps::NAME)).await;
    assert!(lifted["ok"].is_string(), "{lifted}");
    assert_eq!(sleeps::delay(&app, 1500).await.unwrap().get(WAIT).await.unwrap(), 1500);
    // And a limit set where none was applies to the next run.
    ask(format!("time-limit {} none 0.1", add::NAME)).await;
    ask(format!("time-limit {} 0.05 0.2", sleeps::NAME)).await;
    let cut = sleeps::delay(&app, 60_000).await.unwrap();
    assert!(cut.get(WAIT).await.is_err(), "cut by the new hard limit");

    // One start an hour: the first `add` runs, the next is deferred by an hour.
    assert!(ask(format!("rate-limit {} 1/h", add::NAME)).await["ok"].is_string());
    assert_eq!(add::delay(&app, 1, 1).await.unwrap().get(WAIT).await.unwrap(), 2);
    let deferred = add::delay(&app, 2, 2).await.unwrap();
    let inspect = app.broker().inspect().unwrap();
    let start = Instant::now();
    while inspect.queue_stats("default").await.unwrap().scheduled == 0 {
        assert!(start.elapsed() < WAIT, "the second add was never deferred");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ask(format!("rate-limit {} none", add::NAME)).await;
    assert_eq!(add::delay(&app, 3, 3).await.unwrap().get(WAIT).await.unwrap(), 6, "lifted");
    assert_eq!(deferred.state().await.unwrap(), TaskState::Pending, "waits for its slot an hour from now");

    assert!(ask("rate-limit nope::nothing 1/s".into()).await["error"].as_str().unwrap().contains("unknown task"));
    assert!(ask(format!("rate-limit {} often", add::NAME)).await["error"].as_str().unwrap().contains("invalid"));
    assert!(ask(format!("time-limit {} 5 1", add::NAME)).await["error"].as_str().unwrap().contains("under the soft"));
    let report = worker.shutdown().await.unwrap();
    assert_eq!(report.rate_limited, 1, "only the second add was deferred");
}

static GATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs until the test opens the gate.
#[task]
async fn gated() -> TaskResult<()> {
    while !GATE.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Turns for `turn` to end, one each.
static TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

#[task]
async fn turn() -> TaskResult<()> {
    TURNS.acquire().await.unwrap().forget();
    Ok(())
}

/// An inbox left with less than one message a slot is topped up at once (a fetch that
/// does not wait), not only once it is empty: the slots do not idle through the round
/// trip of the next fetch. With one queued for two slots, the worker holds its
/// prefetch again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_tops_up_an_inbox_below_one_message_a_slot() {
    let app = app();
    let worker = app.worker().concurrency(2).prefetch(8).spawn();
    listed(&app).await;
    app.send_batch((0..20).map(|_| turn::signature())).await.unwrap();
    let inspect = app.broker().inspect().unwrap();
    let ready = || async { inspect.queue_stats("default").await.unwrap().ready };
    let until = |what: &'static str, wanted: fn(usize) -> bool| async move {
        let start = Instant::now();
        loop {
            let now = ready().await;
            if wanted(now) {
                return now;
            }
            assert!(start.elapsed() < WAIT, "{what}: {now} ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    until("the first fetch takes the prefetch", |n| n == 12).await;
    // Five end: two run, one is queued (or, caught between two runs, none).
    TURNS.add_permits(5);
    let left = until("topped up", |n| n < 12).await;
    assert!(left == 6 || left == 7, "back to the prefetch of 8: {left} ready");
    TURNS.add_permits(15);
    until("all taken", |n| n == 0).await;
    stop(worker).await;
}

/// `reserved` (Celery's `inspect reserved`): what a worker prefetched behind a busy
/// slot, in the order it will run them, and nothing once they ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_lists_what_it_prefetched() {
    let app = app();
    let worker = app.worker().concurrency(1).prefetch(3).spawn();
    listed(&app).await;
    let reserved = || async { ask_one(&app, "reserved").await["reserved"].as_array().unwrap().clone() };
    let busy = gated::delay(&app).await.unwrap();
    // One batch: a worker with a message waiting for its slot fetches no more, so two
    // sends apart could be taken one now and one only when the slot frees.
    let mut sent = app.send_batch([add::signature(1, 1), add::signature(2, 2)]).await.unwrap().into_iter();
    let (first, second) = (sent.next().unwrap(), sent.next().unwrap());
    let start = Instant::now();
    let held = loop {
        let held = reserved().await;
        if held.len() == 2 {
            break held;
        }
        assert!(start.elapsed() < WAIT, "never prefetched both: {held:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(held[0]["id"], first.id().as_str());
    assert_eq!(held[1]["id"], second.id().as_str());
    assert_eq!((held[0]["task"].as_str(), held[0]["queue"].as_str()), (Some(add::NAME), Some("default")));
    GATE.store(true, Ordering::Release);
    busy.get(WAIT).await.unwrap();
    assert_eq!(second.get(WAIT).await.unwrap(), 4);
    assert_eq!(reserved().await, Vec::<serde_json::Value>::new(), "nothing held once run");
    stop(worker).await;
}
