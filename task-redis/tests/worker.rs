//! The worker pool on Redis, in one process: results, retries, delays, progress, bad
//! input, outages, lost replies.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use task_core::broker::{Broker, ConsumerId, Message};
use task_core::{App, Envelope, Error, ErrorKind, TaskContext, TaskError, TaskId, TaskResult, TaskState, task};
use task_redis::{RedisBackend, RedisBroker, RedisConfig};
use test_support::{Persistence, RedisServer};

const WAIT: Duration = Duration::from_secs(15);

#[task]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

#[task]
fn shout(text: String) -> String {
    text.to_uppercase()
}

#[task(max_retries = 2)]
async fn flaky(ctx: TaskContext) -> TaskResult<u32> {
    if ctx.attempt() < 3 {
        return Err(ctx.retry(Duration::from_millis(50)));
    }
    Ok(ctx.attempt())
}

#[task(max_retries = 0)]
async fn boom() -> TaskResult<()> {
    Err(TaskError::new("it broke"))
}

#[task]
async fn explode() -> TaskResult<()> {
    panic!("kaboom")
}

#[task]
async fn nap(ms: u64) -> TaskResult<u64> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

/// Runs of `revoked_nap` begun, and those that slept to their end.
static NAPS_BEGUN: AtomicU32 = AtomicU32::new(0);
static NAPS_ENDED: AtomicU32 = AtomicU32::new(0);

/// Only for the test of a revoke found by a deferred claim.
#[task]
async fn revoked_nap(ms: u64) -> TaskResult<()> {
    NAPS_BEGUN.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    NAPS_ENDED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Step {
    done: u32,
}

#[task]
async fn stepper(ctx: TaskContext, n: u32) -> TaskResult<u32> {
    ctx.set_progress(&Step { done: n - 1 }).await?;
    Ok(n)
}

/// Lets `early_progress` end.
static PROGRESS_RELEASED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[task]
async fn early_progress(ctx: TaskContext) -> TaskResult<()> {
    ctx.set_progress(&Step { done: 1 }).await?;
    while !PROGRESS_RELEASED.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The log lines of this thread's tests, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Sends this thread's logs here until the guard drops.
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn config(server: &RedisServer) -> RedisConfig {
    RedisConfig::from_url(server.url()).namespace(test_support::namespace())
}

async fn app(config: RedisConfig) -> (App, RedisBroker) {
    let broker = RedisBroker::connect(config.clone()).await.expect("broker");
    let backend = RedisBackend::connect(config).await.expect("backend");
    let app = App::builder().broker(Arc::new(broker.clone())).backend(Arc::new(backend)).build().await.unwrap();
    (app, broker)
}

/// The field names of the hash at `key`, sorted.
fn fields(server: &RedisServer, key: &str) -> Vec<String> {
    let mut fields: Vec<String> = server.cli(&["HKEYS", key]).lines().map(str::to_owned).collect();
    fields.sort();
    fields
}

/// Waits (polling) until `done`, failing with `what` (and what it says then) after WAIT.
async fn until(what: &str, mut done: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + WAIT;
    while let Err(now) = done() {
        assert!(Instant::now() < deadline, "{what}: {now}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `Ok` when `actual` is `wanted`, else what it is.
fn is(actual: String, wanted: &str) -> Result<(), String> {
    if actual == wanted { Ok(()) } else { Err(actual) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_end_to_end_on_redis() {
    let server = RedisServer::start();
    let (app, _) = app(config(&server)).await;
    let worker = app.worker().concurrency(4).spawn();

    assert_eq!(add::delay(&app, 2, 3).await.unwrap().get(WAIT).await.unwrap(), 5);
    assert_eq!(shout::delay(&app, "hi".into()).await.unwrap().get(WAIT).await.unwrap(), "HI");
    let retried = flaky::delay(&app).await.unwrap();
    assert_eq!(retried.get(WAIT).await.unwrap(), 3);
    assert_eq!(retried.info().await.unwrap().unwrap().retries, Some(2));
    let failed = boom::delay(&app).await.unwrap();
    assert!(matches!(failed.get(WAIT).await, Err(Error::TaskFailed { error, .. }) if error == "it broke"));
    let panicked = explode::delay(&app).await.unwrap();
    assert!(matches!(panicked.get(WAIT).await, Err(Error::TaskFailed { error, .. }) if error.contains("kaboom")));
    let progress = stepper::delay(&app, 10).await.unwrap();
    assert_eq!(progress.get(WAIT).await.unwrap(), 10);
    assert_eq!(progress.progress::<Step>().await.unwrap(), Some(Step { done: 9 }));

    let sent = Instant::now();
    let later = add::signature(1, 1).countdown(Duration::from_millis(500)).priority(5).apply_async(&app).await.unwrap();
    assert_eq!(later.state().await.unwrap(), TaskState::Pending);
    assert_eq!(later.get(WAIT).await.unwrap(), 2);
    assert!(sent.elapsed() >= Duration::from_millis(500), "ran before its countdown");

    let batch = app.send_batch((0..500).map(|i| add::signature(i, 1))).await.unwrap();
    for (i, r) in batch.iter().enumerate() {
        assert_eq!(r.get(WAIT).await.unwrap(), i as i64 + 1);
    }
    let report = worker.shutdown().await.unwrap();
    assert_eq!(report.succeeded, 505);
    assert_eq!((report.failed, report.retried), (2, 2));
    let stats = app.broker().inspect().unwrap().queue_stats("default").await.unwrap();
    assert_eq!((stats.ready, stats.scheduled, stats.in_flight), (0, 0, 0));
}

/// A success is stored and acked in one script only when the backend shares the
/// broker's Redis and namespace; otherwise the worker stores, then acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_and_acks_go_together_only_within_one_namespace() {
    let server = RedisServer::start();
    let config = config(&server);
    let broker = RedisBroker::connect(config.clone()).await.unwrap();
    let same = RedisBackend::connect(config.clone()).await.unwrap();
    let other = RedisBackend::connect(config.clone().namespace(test_support::namespace())).await.unwrap();
    use task_core::capability::pair;
    use task_core::{Broker as _, ResultBackend as _};
    let memory = task_core::memory::InMemoryBroker::new();
    assert!(pair(broker.shared_store(), same.settle_atomically()).is_some());
    assert!(pair(broker.shared_store(), other.settle_atomically()).is_none());
    assert!(pair(memory.shared_store(), same.settle_atomically()).is_none());

    let app = App::builder().broker(Arc::new(broker)).backend(Arc::new(other)).build().await.unwrap();
    let worker = app.worker().concurrency(4).spawn();
    let sent = app.send_batch((0..50).map(|i| add::signature(i, 1))).await.unwrap();
    for (i, r) in sent.iter().enumerate() {
        assert_eq!(r.get(WAIT).await.unwrap(), i as i64 + 1);
    }
    assert_eq!(worker.shutdown().await.unwrap().succeeded, 50);
    let stats = app.broker().inspect().unwrap().queue_stats("default").await.unwrap();
    assert_eq!((stats.ready, stats.in_flight), (0, 0), "acked after the separate store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_hashes_with_a_ttl_and_the_documented_layout() {
    let server = RedisServer::start();
    let config = config(&server);
    let ns = config.namespace_name().to_owned();
    let broker = RedisBroker::connect(config.clone()).await.unwrap();
    let backend = RedisBackend::connect(config.clone()).await.unwrap();
    // Claimed before every run: STARTED, then the end.
    let app = App::builder()
        .broker(Arc::new(broker))
        .backend(Arc::new(backend))
        .result_ttl(Duration::from_secs(300))
        .started_after(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let pending =
        add::signature(1, 2).queue("math").countdown(Duration::from_secs(60)).apply_async(&app).await.unwrap();
    assert_eq!(server.cli(&["ZCARD", &format!("{ns}:{{math}}:delayed")]), "1");
    assert_eq!(server.cli(&["SISMEMBER", &format!("{ns}:queues"), "math"]), "1");
    pending.forget().await.unwrap();

    let worker = app.worker().spawn();
    let r = add::delay(&app, 1, 2).await.unwrap();
    r.get(WAIT).await.unwrap();
    let key = format!("{ns}:result:{}", r.id());
    assert_eq!(server.cli(&["HGET", &key, "state"]), "SUCCESS");
    // The fields no reader needs one by one travel packed (backend/record.rs): the
    // claim's `run` group (with the arguments), the end's `end` group.
    assert_eq!(fields(&server, &key), ["end", "result", "run", "state", "worker"]);
    let read = app.backend().get(r.id()).await.unwrap().expect("the record");
    assert_eq!(
        (read.task.as_deref(), read.queue.as_deref(), read.retries),
        (Some(add::NAME), Some("default"), Some(0))
    );
    assert!(read.args.as_ref().is_some_and(|args| !args.is_empty()), "the arguments, from the run group");
    assert!(read.started_ms.is_some() && read.finished_ms.is_some() && read.runtime_ms.is_some(), "{read:?}");
    let ttl: i64 = server.cli(&["TTL", &key]).parse().unwrap();
    assert!((200..=300).contains(&ttl), "ttl {ttl}");
    // A per-call TTL wins over the app's.
    let brief = add::signature(2, 2).result_ttl(Duration::from_secs(30)).apply_async(&app).await.unwrap();
    brief.get(WAIT).await.unwrap();
    let ttl: i64 = server.cli(&["TTL", &format!("{ns}:result:{}", brief.id())]).parse().unwrap();
    assert!((1..=30).contains(&ttl), "ttl {ttl}");
    worker.shutdown().await.unwrap();

    let lean = App::builder()
        .broker(Arc::new(RedisBroker::connect(config.clone()).await.unwrap()))
        .backend(Arc::new(RedisBackend::connect(config).await.unwrap()))
        .track_started(false)
        .build()
        .await
        .unwrap();
    let worker = lean.worker().spawn();
    // A run whose start is not stored writes once: its start and end in one `run` group.
    let untracked = add::delay(&lean, 3, 4).await.unwrap();
    untracked.get(WAIT).await.unwrap();
    let key = format!("{ns}:result:{}", untracked.id());
    assert_eq!(fields(&server, &key), ["result", "run", "state", "worker"]);
    let read = lean.backend().get(untracked.id()).await.unwrap().expect("the record");
    assert_eq!((read.task.as_deref(), read.worker.is_some()), (Some(add::NAME), true));
    assert!(read.started_ms.is_some() && read.finished_ms.is_some() && read.runtime_ms.is_some(), "{read:?}");
    worker.shutdown().await.unwrap();

    // The default: a run that ends before `started_after` stores its start with its end,
    // in the one write of an untracked run.
    let (deferred, _) = self::app(self::config(&server).namespace(ns.clone())).await;
    let worker = deferred.worker().spawn();
    let quick = add::delay(&deferred, 5, 6).await.unwrap();
    assert_eq!(quick.get(WAIT).await.unwrap(), 11);
    let key = format!("{ns}:result:{}", quick.id());
    assert_eq!(fields(&server, &key), ["result", "run", "state", "worker"]);
    let read = deferred.backend().get(quick.id()).await.unwrap().expect("the record");
    assert_eq!(
        (read.task.as_deref(), read.queue.as_deref(), read.retries),
        (Some(add::NAME), Some("default"), Some(0))
    );
    assert!(read.worker.is_some() && read.started_ms.is_some() && read.runtime_ms.is_some(), "{read:?}");
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_longer_than_started_after_is_started_while_it_runs() {
    let server = RedisServer::start();
    let config = config(&server);
    let ns = config.namespace_name().to_owned();
    let (app, _) = app(config).await;
    assert_eq!(app.started_after(), task_core::DEFAULT_STARTED_AFTER);
    let worker = app.worker().spawn();
    let r = nap::delay(&app, 1_500).await.unwrap();
    let key = format!("{ns}:result:{}", r.id());
    until("never STARTED", || is(server.cli(&["HGET", &key, "state"]), "STARTED")).await;
    let running = app.backend().get(r.id()).await.unwrap().expect("the claim");
    assert_eq!((running.task.as_deref(), running.worker.as_deref()), (Some(nap::NAME), Some(worker.id().as_str())));
    assert!(running.started_ms.is_some() && running.finished_ms.is_none(), "{running:?}");
    assert_eq!(r.get(WAIT).await.unwrap(), 1_500);
    assert_eq!(fields(&server, &key), ["end", "result", "run", "state", "worker"], "claimed, then ended");
    let read = app.backend().get(r.id()).await.unwrap().expect("the record");
    assert_eq!(read.started_ms, running.started_ms, "the start is the run's, not the claim's");
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_whose_end_claims_first_and_finds_a_revoke_is_skipped() {
    let server = RedisServer::start();
    let config = config(&server);
    let ns = config.namespace_name().to_owned();
    let (app, _) = app(config).await;
    // A failure does not ack with its record: its end writes the claim first, which
    // finds the revoke the worker's memory missed (REVOKED in the record only).
    let r = boom::delay(&app).await.unwrap();
    let key = format!("{ns}:result:{}", r.id());
    server.cli(&["HSET", &key, "state", "REVOKED", "error", "revoked by hand"]);
    let worker = app.worker().spawn();
    until("never fetched", || is(server.cli(&["LLEN", &format!("{ns}:{{default}}:ready:0")]), "0")).await;
    let id = worker.id().as_str().to_owned();
    let processing = format!("{ns}:{{default}}:proc:{id}");
    until("never acked", || is(server.cli(&["LLEN", &processing]), "0")).await;
    let report = worker.shutdown().await.unwrap();
    assert_eq!((report.revoked, report.failed), (1, 0), "ended as a revoked task, not a failure: {report:?}");
    assert_eq!(
        (server.cli(&["HGET", &key, "state"]), server.cli(&["HGET", &key, "error"])),
        ("REVOKED".to_owned(), "revoked by hand".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_stored_progress_first_is_not_set_back_to_started() {
    let server = RedisServer::start();
    let config = config(&server);
    let ns = config.namespace_name().to_owned();
    let (app, _) = app(config).await;
    let worker = app.worker().spawn();
    let r = early_progress::delay(&app).await.unwrap();
    let key = format!("{ns}:result:{}", r.id());
    until("no progress", || is(server.cli(&["HGET", &key, "state"]), "PROGRESS")).await;
    // Well past the claim's 50 ms: it was not written over the progress.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.cli(&["HGET", &key, "state"]), "PROGRESS", "the state went back");
    assert_eq!(r.progress::<Step>().await.unwrap(), Some(Step { done: 1 }));
    PROGRESS_RELEASED.store(true, Ordering::SeqCst);
    r.get(WAIT).await.unwrap();
    let read = app.backend().get(r.id()).await.unwrap().expect("the record");
    assert_eq!((read.state, read.task.as_deref()), (TaskState::Success, Some(early_progress::NAME)));
    assert!(read.started_ms.is_some() && read.worker.is_some(), "the end says the start: {read:?}");
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_claim_that_finds_a_revoke_stops_the_run() {
    let server = RedisServer::start();
    let config = config(&server);
    let ns = config.namespace_name().to_owned();
    let (app, _) = app(config).await;
    let r = revoked_nap::delay(&app, 10_000).await.unwrap();
    // REVOKED in the record only: the revokes a worker holds in memory (loaded from
    // their set, then told by the channel) miss it, so the run starts.
    let key = format!("{ns}:result:{}", r.id());
    server.cli(&["HSET", &key, "state", "REVOKED", "error", "revoked by hand"]);
    let worker = app.worker().spawn();
    until("the run never began", || if NAPS_BEGUN.load(Ordering::SeqCst) > 0 { Ok(()) } else { Err("none".into()) })
        .await;
    // The claim, due after 50 ms, finds the revoke and stops the run; without it the
    // shutdown would wait for the nap to end.
    let id = worker.id().as_str().to_owned();
    let report = worker.shutdown().await.unwrap();
    assert_eq!(NAPS_ENDED.load(Ordering::SeqCst), 0, "the revoked run slept on");
    assert_eq!((report.revoked, report.succeeded), (1, 0), "{report:?}");
    assert_eq!(
        (server.cli(&["HGET", &key, "state"]), server.cli(&["HGET", &key, "error"])),
        ("REVOKED".to_owned(), "revoked by hand".to_owned())
    );
    assert_eq!(server.cli(&["LLEN", &format!("{ns}:{{default}}:proc:{}", id)]), "0", "acked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_unknown_tasks_pushed_by_hand_go_to_the_dead_letters() {
    let server = RedisServer::start();
    let config = config(&server);
    let ns = config.namespace_name().to_owned();
    let (app, broker) = app(config).await;
    let worker = app.worker().spawn();
    // As an operator would, with redis-cli: raw garbage with no header, and a valid
    // envelope naming a task nobody registered.
    let ready = format!("{ns}:{{default}}:ready:0");
    server.cli(&["RPUSH", &ready, "not a task at all"]);
    let unknown = Envelope::new("nobody.knows", rmp_serde::to_vec_named(&()).unwrap(), "default");
    broker.enqueue(Message::new(unknown.id.clone(), "default", unknown.encode().unwrap())).await.unwrap();
    let err = app.result::<()>(unknown.id.clone()).get(WAIT).await.unwrap_err();
    assert!(err.to_string().contains("unknown task `nobody.knows`"), "{err}");
    // The hand-pushed one is found at the next fetch (it pushed no wake token).
    let inspect = broker.inspect().unwrap();
    let start = Instant::now();
    let dead = loop {
        let dead = inspect.dead_letters(10).await.unwrap();
        if dead.len() == 2 || start.elapsed() > WAIT {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead.iter().any(|d| d.reason.starts_with("undecodable message") && d.payload == b"not a task at all"));
    assert!(dead.iter().any(|d| d.reason.starts_with("unknown task `nobody.knows`")));
    assert_eq!(add::delay(&app, 1, 1).await.unwrap().get(WAIT).await.unwrap(), 2, "the worker goes on");
    assert_eq!(worker.shutdown().await.unwrap().dead_lettered, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_whose_reply_is_lost_gives_its_messages_back() {
    let mut server = RedisServer::start_with(Persistence::AppendOnly);
    let config = config(&server).op_timeout(Duration::from_millis(500));
    let ns = config.namespace_name().to_owned();
    let (_, broker) = app(config).await;
    for i in 0..3 {
        broker.enqueue(Message::new(TaskId::new(), "q", format!("m{i}").into_bytes())).await.unwrap();
    }
    let me = ConsumerId::new();
    // What a fetch script leaves when its reply never reaches the worker: the message
    // sits in the worker's processing list, unseen by it.
    let ready = format!("{ns}:{{q}}:ready:0");
    let processing = format!("{ns}:{{q}}:proc:{me}");
    server.cli(&["LMOVE", &ready, &processing, "LEFT", "RIGHT"]);
    // The fetch that "lost" it failed: Redis went away.
    server.stop();
    assert!(broker.fetch(&me, &["q".into()], 10, Duration::ZERO).await.is_err());
    server.restart();
    let mut bodies = Vec::new();
    let start = Instant::now();
    while bodies.len() < 3 && start.elapsed() < WAIT {
        match broker.fetch(&me, &["q".into()], 10, Duration::from_millis(200)).await {
            Ok(got) => bodies.extend(got.iter().map(|d| String::from_utf8(d.payload.clone()).unwrap())),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await, // still reconnecting
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["m0", "m1", "m2"], "nothing stays unseen in the processing list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_calls_fail_clearly_within_the_operation_timeout() {
    let mut server = RedisServer::start();
    let (app, _) = app(config(&server).op_timeout(Duration::from_secs(1))).await;
    server.stop();
    let start = Instant::now();
    let err = add::delay(&app, 1, 2).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    match &err {
        Error::Broker(e) => assert!(matches!(e.kind(), ErrorKind::Connection | ErrorKind::Timeout), "{e}"),
        other => panic!("expected a broker error, got {other:?}"),
    }
    assert!(err.to_string().contains("cannot"), "{err}");
    let err = App::builder().broker_url(server.url()).build().await;
    assert!(err.is_err(), "connecting to a stopped Redis must fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_is_logged_when_redis_may_evict_keys() {
    let server = RedisServer::start();
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let logs = Captured::default();
    let _guard = logs.capture();
    RedisBroker::connect(config(&server)).await.unwrap();
    let text = logs.text();
    assert!(text.contains("maxmemory-policy is `allkeys-lru`, not `noeviction`"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_control_channel_breaks_nothing() {
    let server = RedisServer::start();
    let config = config(&server);
    let channel = format!("{}:control", config.namespace_name());
    let (app, _) = app(config).await;
    let worker = app.worker().spawn();
    for junk in ["terminate ", "terminate", "hello", ""] {
        server.cli(&["PUBLISH", &channel, junk]);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Waiters are still woken (this one waits for the pub/sub message: the task runs
    // only after its countdown) and workers still run tasks.
    let later = add::signature(2, 2).countdown(Duration::from_millis(500)).apply_async(&app).await.unwrap();
    assert_eq!(later.get(Duration::from_secs(5)).await.unwrap(), 4);
    let long = stepper::delay(&app, 3).await.unwrap();
    assert_eq!(long.get(WAIT).await.unwrap(), 3);
    worker.shutdown().await.unwrap();
}

/// Sends `m0`, `m1`, … to `queue` and buries each, oldest first, as the consumer it
/// returns.
async fn bury_each(broker: &RedisBroker, queue: &str, n: usize) -> ConsumerId {
    let me = ConsumerId::new();
    broker.heartbeat(&me, Duration::from_secs(30)).await.unwrap();
    for i in 0..n {
        broker.enqueue(Message::new(TaskId::new(), queue, format!("m{i}").into_bytes())).await.unwrap();
        let got = broker.fetch(&me, &[queue.to_owned()], 1, Duration::from_secs(1)).await.unwrap();
        broker.dead_letter(&me, &got[0], "no").await.unwrap();
    }
    me
}

/// The dead letters of a queue past their cap: the oldest is dropped, and a warning
/// says so (it was silent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_past_their_cap_are_dropped_with_a_warning() {
    let server = RedisServer::start();
    let logs = Captured::default();
    let _guard = logs.capture();
    let broker = RedisBroker::connect(config(&server).dead_letter_cap(2)).await.unwrap();
    bury_each(&broker, "capped", 3).await;
    let text = logs.text();
    assert_eq!(text.matches("dead letters are at their cap").count(), 1, "{text}");
    use task_core::Broker as _;
    let kept = broker.inspect().unwrap().dead_letters(10).await.unwrap();
    let bodies: Vec<&[u8]> = kept.iter().map(|d| d.payload.as_slice()).collect();
    assert_eq!(bodies, [b"m2".as_slice(), b"m1"], "the newest two are kept");
}

/// A dead letter that does not parse (pushed by hand) stays where it is, and a retry of
/// two letters goes past it to the next two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_goes_past_a_dead_letter_that_does_not_parse() {
    let server = RedisServer::start();
    let config = config(&server);
    let dead = format!("{}:{{unreadable}}:dead", config.namespace_name());
    let broker = RedisBroker::connect(config).await.unwrap();
    let me = bury_each(&broker, "unreadable", 2).await;
    // The oldest end of the list, where a retry begins.
    server.cli(&["RPUSH", &dead, "not a dead-letter record"]);
    use task_core::Broker as _;
    let inspect = broker.inspect().unwrap();
    assert_eq!(inspect.retry_dead("unreadable", 2).await.unwrap(), 2, "both readable letters");
    assert_eq!(inspect.retry_dead("unreadable", 10).await.unwrap(), 0);
    assert_eq!(server.cli(&["LRANGE", &dead, "0", "-1"]).trim(), "not a dead-letter record", "left in place");
    let back = broker.fetch(&me, &["unreadable".into()], 10, Duration::from_secs(1)).await.unwrap();
    let bodies: Vec<&[u8]> = back.iter().map(|d| d.payload.as_slice()).collect();
    assert_eq!(bodies, [b"m0".as_slice(), b"m1"], "oldest first");
}

/// Scripts Redis has run so far (EVALSHA and EVAL calls, from INFO commandstats).
fn scripts_run(server: &RedisServer) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

/// A top-up that found the queue empty is not tried again until the inbox is: a
/// worker with one message queued for two busy slots and nothing more to fetch waits,
/// it does not poll Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_up_that_found_the_queue_empty_does_not_poll() {
    let server = RedisServer::start();
    let (app, _) = app(config(&server)).await;
    let worker = app.worker().concurrency(2).prefetch(8).spawn();
    let naps = app.send_batch((0..3).map(|_| nap::signature(1_500))).await.unwrap();
    let inspect = app.broker().inspect().unwrap();
    let start = Instant::now();
    while inspect.queue_stats("default").await.unwrap().in_flight < 3 {
        assert!(start.elapsed() < WAIT, "never fetched all three");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = scripts_run(&server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = scripts_run(&server) - before;
    assert!(during < 20, "{during} scripts in 500 ms: the worker polls the empty queue");
    for nap in &naps {
        assert_eq!(nap.get(WAIT).await.unwrap(), 1_500);
    }
    worker.shutdown().await.unwrap();
}

/// A payload pushed by hand that starts with digits (text, JSON, a date) is all
/// payload: it reaches the dead letters whole, nothing of it taken for a header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_pushed_payload_starting_with_digits_is_kept_whole() {
    let server = RedisServer::start();
    let config = config(&server);
    let ns = config.namespace_name().to_owned();
    let (app, broker) = app(config).await;
    let worker = app.worker().spawn();
    let ready = format!("{ns}:{{default}}:ready:0");
    server.cli(&["RPUSH", &ready, "2024-11-30 nightly report"]);
    // A wake token, as a producer pushes with its message.
    server.cli(&["RPUSH", &format!("{ns}:{{default}}:wake"), "1"]);
    use task_core::Broker as _;
    let inspect = broker.inspect().unwrap();
    let start = Instant::now();
    let dead = loop {
        let dead = inspect.dead_letters(10).await.unwrap();
        if !dead.is_empty() || start.elapsed() > WAIT {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].payload, b"2024-11-30 nightly report", "the whole payload");
    worker.shutdown().await.unwrap();
}

/// A buried task's FAILURE writes its end time by name; a retried dead letter's new run
/// (same id) then claims and ends the record, and its own times are what is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_over_a_buried_record_reads_its_own_times() {
    use task_core::{Claim, ResultBackend, TaskMeta};
    let server = RedisServer::start();
    let backend = RedisBackend::connect(config(&server)).await.unwrap();
    let id = TaskId::new();
    let ttl = Duration::from_secs(60);
    let mut buried = TaskMeta::state(TaskState::Failure);
    (buried.task, buried.error, buried.finished_ms) = (Some(add::NAME.into()), Some("buried".into()), Some(1_000));
    backend.store(&id, buried, ttl).await.unwrap();

    let mut claim = TaskMeta::state(TaskState::Started);
    (claim.task, claim.queue, claim.retries, claim.started_ms, claim.args, claim.worker) =
        (Some(add::NAME.into()), Some("default".into()), Some(0), Some(5_000), Some(vec![0x90]), Some("w2".into()));
    assert!(matches!(backend.claim(&id, claim, ttl).await.unwrap(), Claim::Claimed));
    let mut end = TaskMeta::state(TaskState::Success);
    (end.task, end.worker, end.runtime_ms, end.finished_ms, end.result) =
        (Some(add::NAME.into()), Some("w2".into()), Some(7), Some(5_007), Some(vec![0x03]));
    backend.store(&id, end, ttl).await.unwrap();

    let read = backend.get(&id).await.unwrap().expect("the record");
    assert_eq!(read.state, TaskState::Success);
    assert_eq!((read.started_ms, read.finished_ms, read.runtime_ms), (Some(5_000), Some(5_007), Some(7)));
    assert_eq!(read.worker.as_deref(), Some("w2"));
}

/// The lines of `redis-cli monitor`.
type Monitor = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// `redis-cli monitor` on `server`, once it watches: every command, one per line.
async fn monitor(server: &RedisServer) -> (tokio::process::Child, Monitor) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "monitor"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-cli runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line()).await.expect("MONITOR answers").unwrap();
    assert_eq!(first.as_deref(), Some("OK"));
    (child, lines)
}

/// The next command MONITOR shows.
async fn next_command(lines: &mut Monitor) -> String {
    tokio::time::timeout(WAIT, lines.next_line()).await.expect("MONITOR goes on").unwrap().expect("a line")
}

/// Whether a MONITOR line is a read of `key` (`HGETALL`) by a client (not by a script).
fn reads(line: &str, key: &str) -> bool {
    line.contains("\"HGETALL\"") && line.contains(key) && !line.contains(" lua]")
}

/// The commands MONITOR shows from now until `server` runs an `ECHO` of `marker`.
async fn commands_until(server: &RedisServer, lines: &mut Monitor, marker: &str) -> Vec<String> {
    server.cli(&["ECHO", marker]);
    let mut seen = Vec::new();
    loop {
        let line = next_command(lines).await;
        if line.contains(marker) {
            return seen;
        }
        seen.push(line);
    }
}

/// A waiter woken by a final state gets the record with the message that woke it, and
/// reads it no more (a round trip less): the same record a read gives, binary result
/// and all. A record too large to publish is read as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_gets_the_final_record_with_the_message_that_wakes_it() {
    use task_core::{ResultBackend, TaskMeta};
    let server = RedisServer::start();
    let config = config(&server);
    let backend = RedisBackend::connect(config.clone()).await.unwrap();
    let (_child, mut lines) = monitor(&server).await;
    let ttl = Duration::from_secs(60);
    for (n, result) in [(1, vec![0xa5, b'H', b'E', b'L', b'L', b'O', 0xff]), (2, vec![b'x'; 100_000])] {
        let id = TaskId::new();
        let key = format!("{}:result:{id}", config.namespace_name());
        let waiter = {
            let (backend, id) = (backend.clone(), id.clone());
            tokio::spawn(async move { backend.wait(&id, WAIT).await })
        };
        // The waiter's first read (nothing yet), after which it waits for the message.
        while !reads(&next_command(&mut lines).await, &key) {}
        let mut end = TaskMeta::state(TaskState::Success);
        (end.task, end.queue, end.retries, end.started_ms, end.args) =
            (Some(add::NAME.into()), Some("default".into()), Some(0), Some(5_000), Some(vec![0x92, 0x01, 0x02]));
        (end.worker, end.runtime_ms, end.finished_ms, end.result) =
            (Some("w1".into()), Some(7), Some(5_007), Some(result.clone()));
        backend.store(&id, end, ttl).await.unwrap();
        let waited = waiter.await.unwrap().unwrap().expect("the final record");
        let marker = format!("after-the-end-{n}");
        let after = commands_until(&server, &mut lines, &marker).await.iter().filter(|l| reads(l, &key)).count();
        let read = backend.get(&id).await.unwrap().expect("the record");
        assert_eq!(waited, read, "the record as published is the record as read");
        assert_eq!(waited.result, Some(result));
        if n == 1 {
            assert_eq!(after, 0, "woken with the record: no read");
        } else {
            assert_eq!(after, 1, "a record of 100 KB is not published: it is read");
        }
    }
}

/// How many of the MONITOR lines `seen` are a script's call of `command` naming `key`
/// (or any key, for "").
fn script_calls(seen: &[String], command: &str, key: &str) -> usize {
    let command = format!("\"{command}\"");
    seen.iter().filter(|l| l.contains(" lua]") && l.contains(&command) && l.contains(key)).count()
}

/// A store call trims the recent-tasks list only once it is past its cap, and gives the
/// minute's counters their TTL only when it creates a count: below the cap, and in a
/// minute already counted, neither is a call of its own. Past the cap the list is cut
/// back to it, newest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recent_list_and_the_minute_counters_are_written_without_calls_that_do_nothing() {
    use task_core::{ResultBackend, TaskMeta};
    let server = RedisServer::start();
    let config = config(&server);
    let recent = format!("{}:idx:recent", config.namespace_name());
    let backend = RedisBackend::connect(config).await.unwrap();
    let end = || {
        let mut end = TaskMeta::state(TaskState::Success);
        (end.task, end.worker, end.args, end.result) =
            (Some(add::NAME.into()), Some("w1".into()), Some(vec![0x90]), Some(vec![0x03]));
        end
    };
    let ttl = Duration::from_secs(60);
    // Both writes in one minute: not within its last two seconds.
    let ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    while ms() % 60_000 > 58_000 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    backend.store(&TaskId::new(), end(), ttl).await.unwrap();
    let (_child, mut lines) = monitor(&server).await;
    backend.store(&TaskId::new(), end(), ttl).await.unwrap();
    let seen = commands_until(&server, &mut lines, "after-the-second").await;
    let calls = |command: &str, key: &str| script_calls(&seen, command, key);
    assert_eq!(calls("LPUSH", &recent), 1, "{seen:#?}");
    assert_eq!(calls("LTRIM", &recent), 0, "below its cap the list is not trimmed: {seen:#?}");
    assert_eq!(calls("HINCRBY", ":stats:"), 1, "{seen:#?}");
    assert_eq!(calls("EXPIRE", ":stats:"), 0, "the first write of the minute set the TTL: {seen:#?}");
    let minutes = server.cli(&["KEYS", "*:stats:*"]);
    let minute = minutes.lines().next().expect("this minute's counters");
    let left: i64 = server.cli(&["TTL", minute]).trim().parse().unwrap();
    assert!((7_000..=7_200).contains(&left), "the counters expire in two hours: {left}");

    // Filled to its cap by hand, the list is cut back to it by the next write.
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL").arg(&recent).query_async(&mut con).await.unwrap();
    for chunk in (0..task_core::HISTORY_CAP).collect::<Vec<_>>().chunks(10_000) {
        let ids: Vec<String> = chunk.iter().map(|n| format!("old-{n}")).collect();
        let _: usize = redis::cmd("RPUSH").arg(&recent).arg(ids).query_async(&mut con).await.unwrap();
    }
    let id = TaskId::new();
    backend.store(&id, end(), ttl).await.unwrap();
    let len: usize = redis::cmd("LLEN").arg(&recent).query_async(&mut con).await.unwrap();
    assert_eq!(len, task_core::HISTORY_CAP, "cut back to its cap");
    let ends: Vec<String> = redis::cmd("LRANGE").arg(&recent).arg(0).arg(0).query_async(&mut con).await.unwrap();
    let last: Vec<String> = redis::cmd("LRANGE").arg(&recent).arg(-1).arg(-1).query_async(&mut con).await.unwrap();
    assert_eq!(ends, [id.as_str().to_owned()], "the newest first");
    assert_eq!(last, [format!("old-{}", task_core::HISTORY_CAP - 2)], "the oldest one dropped");
}

/// A fetch from a queue with nothing above priority 0 pops that one list (one EXISTS
/// tells the nine above are empty); with a message above it, the higher one comes first
/// and every list is looked at again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_pops_only_the_lists_that_hold_messages_when_none_is_above_priority_0() {
    let server = RedisServer::start();
    let broker = RedisBroker::connect(config(&server)).await.unwrap();
    let me = ConsumerId::new();
    broker.heartbeat(&me, Duration::from_secs(30)).await.unwrap();
    let queue = ["prio".to_owned()];
    for i in 0..3 {
        broker.enqueue(Message::new(TaskId::new(), "prio", format!("low{i}").into_bytes())).await.unwrap();
    }
    let (_child, mut lines) = monitor(&server).await;
    // Two of three: the batch is full, so the script also asks whether any remain.
    let got = broker.fetch(&me, &queue, 2, Duration::from_secs(1)).await.unwrap();
    let seen = commands_until(&server, &mut lines, "after-the-low-fetch").await;
    let calls = |seen: &[String], command: &str| script_calls(seen, command, "");
    let bodies: Vec<&[u8]> = got.iter().map(|d| d.payload.as_slice()).collect();
    assert_eq!(bodies, [b"low0".as_slice(), b"low1"]);
    assert_eq!(calls(&seen, "LPOP"), 1, "only priority 0's list: {seen:#?}");
    assert!(calls(&seen, "LLEN") <= 2, "the wake list and priority 0's: {seen:#?}");

    let high = Message::new(TaskId::new(), "prio", b"high".to_vec()).with_priority(7);
    broker.enqueue(high).await.unwrap();
    let got = broker.fetch(&me, &queue, 2, Duration::from_secs(1)).await.unwrap();
    let seen = commands_until(&server, &mut lines, "after-the-high-fetch").await;
    let bodies: Vec<&[u8]> = got.iter().map(|d| d.payload.as_slice()).collect();
    assert_eq!(bodies, [b"high".as_slice(), b"low2"], "the higher priority first");
    assert_eq!(calls(&seen, "LPOP"), 10, "every list looked at, highest first: {seen:#?}");
}

/// The client of a MONITOR line (`[0 127.0.0.1:40732]`), or `lua` for a script's call.
fn client_of(line: &str) -> &str {
    line.split_once('[').and_then(|(_, rest)| rest.split_once(']')).map_or("", |(c, _)| c)
}

/// A waiter's first read goes right after its SUBSCRIBE, on the same connection (Redis
/// runs a connection's commands in order, so the read sees an end the subscription
/// missed), and a task that has already ended costs it that one read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_reads_on_its_subscribing_connection_right_after_the_subscribe() {
    use task_core::{ResultBackend, TaskMeta};
    let server = RedisServer::start();
    let config = config(&server);
    let backend = RedisBackend::connect(config.clone()).await.unwrap();
    let id = TaskId::new();
    let mut end = TaskMeta::state(TaskState::Success);
    (end.task, end.worker, end.result) = (Some(add::NAME.into()), Some("w1".into()), Some(vec![0x03]));
    backend.store(&id, end, Duration::from_secs(60)).await.unwrap();
    let (_child, mut lines) = monitor(&server).await;

    let waited = backend.wait(&id, WAIT).await.unwrap().expect("the final record");
    assert_eq!(waited.state, TaskState::Success);
    let seen = commands_until(&server, &mut lines, "after-the-wait").await;
    let key = format!("{}:result:{id}", config.namespace_name());
    let subscribe = seen
        .iter()
        .position(|l| l.contains("\"SUBSCRIBE\"") && l.contains(&format!("done:{id}")))
        .unwrap_or_else(|| panic!("no SUBSCRIBE of the task's channel in {seen:#?}"));
    let subscriber = client_of(&seen[subscribe]);
    let next = seen[subscribe + 1..].iter().find(|l| client_of(l) == subscriber);
    assert!(next.is_some_and(|l| reads(l, &key)), "the subscriber's next command is the read: {seen:#?}");
    assert_eq!(seen.iter().filter(|l| reads(l, &key)).count(), 1, "one read: {seen:#?}");
}

/// A waiter that listens where the final state was not stored (a demoted primary, now a
/// replica, before Sentinel moves its clients) hears only the replicated first message
/// (`+`): the primary saw no listener of its own and sent no record after it. The waiter
/// reads its state again soon after, rather than waiting out its time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_hears_only_the_announcement_reads_its_state_soon() {
    use task_core::{ResultBackend, TaskMeta};
    let primary = RedisServer::start();
    let replica = RedisServer::start_replica_of(&primary);
    // A message published before the link is up never reaches the replica.
    while !replica.cli(&["INFO", "replication"]).contains("master_link_status:up") {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = config(&primary);
    let writer = RedisBackend::connect(config.clone()).await.unwrap();
    let listener =
        RedisBackend::connect(RedisConfig::from_url(replica.url()).namespace(config.namespace_name())).await.unwrap();
    let id = TaskId::new();
    let waiter = {
        let (listener, id) = (listener.clone(), id.clone());
        tokio::spawn(async move { listener.wait(&id, Duration::from_secs(20)).await })
    };
    let channel = format!("{}:done:{id}", config.namespace_name());
    while !replica.cli(&["PUBSUB", "NUMSUB", &channel]).ends_with('1') {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut end = TaskMeta::state(TaskState::Success);
    (end.task, end.worker, end.result) = (Some(add::NAME.into()), Some("w1".into()), Some(vec![0x03]));
    writer.store(&id, end, Duration::from_secs(60)).await.unwrap();
    let waited = waiter.await.unwrap().unwrap();
    assert_eq!(waited.map(|m| m.state), Some(TaskState::Success), "woken by the announcement alone");
}

/// An idle worker's fetch waits in Redis right behind its `BLPOP`, on the same
/// connection: a message enqueued into the idle queue is in the reply that wakes it,
/// with no fetch sent after the wake-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_fetch_waits_behind_its_blpop_and_comes_back_with_the_message() {
    let server = RedisServer::start();
    let broker = RedisBroker::connect(config(&server)).await.unwrap();
    let me = ConsumerId::new();
    broker.heartbeat(&me, Duration::from_secs(30)).await.unwrap();
    let (_child, mut lines) = monitor(&server).await;
    let fetching = {
        let (broker, me) = (broker.clone(), me.clone());
        tokio::spawn(async move { broker.fetch(&me, &["default".into()], 10, Duration::from_secs(10)).await })
    };
    let blpop = loop {
        let line = next_command(&mut lines).await;
        if line.contains("\"BLPOP\"") {
            break line;
        }
    };
    let waiting = client_of(&blpop).to_owned();
    let id = TaskId::new();
    broker.enqueue(Message::new(id.clone(), "default", b"m".to_vec())).await.unwrap();
    let got = fetching.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
    let seen = commands_until(&server, &mut lines, "after-the-fetch").await;
    // After the BLPOP the waiting connection ran one command: the fetch script, with
    // nothing sent after the wake-up (on its own or any other connection).
    let wake = seen.iter().position(|l| l.contains(" lua]") && l.contains("\"RPUSH\"") && l.contains(":wake\""));
    let wake = wake.unwrap_or_else(|| panic!("the enqueue's wake token: {seen:#?}"));
    let after: Vec<&String> = seen[wake + 1..].iter().filter(|l| !l.contains(" lua]")).collect();
    assert_eq!(after.len(), 1, "one command after the wake-up: {seen:#?}");
    assert_eq!(client_of(after[0]), waiting, "on the waiting connection: {seen:#?}");
    assert!(after[0].contains("\"EVALSHA\"") && after[0].contains(":proc:"), "the fetch script: {seen:#?}");
}

/// Redis lost the scripts (restarted, flushed) while a worker waited: the fetch behind
/// the wait fails alone, and the worker fetches again at once, loading the script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_behind_a_wait_whose_script_was_flushed_is_made_again() {
    let server = RedisServer::start();
    let broker = RedisBroker::connect(config(&server)).await.unwrap();
    let me = ConsumerId::new();
    broker.heartbeat(&me, Duration::from_secs(30)).await.unwrap();
    // A first fetch loads the script; the second waits.
    assert!(broker.fetch(&me, &["default".into()], 10, Duration::ZERO).await.unwrap().is_empty());
    let fetching = {
        let (broker, me) = (broker.clone(), me.clone());
        tokio::spawn(async move { broker.fetch(&me, &["default".into()], 10, Duration::from_secs(10)).await })
    };
    let start = Instant::now();
    while !server.cli(&["CLIENT", "LIST"]).contains("cmd=blpop") && start.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.cli(&["SCRIPT", "FLUSH"]);
    broker.enqueue(Message::new(TaskId::new(), "default", b"m".to_vec())).await.unwrap();
    let got = fetching.await.unwrap().unwrap();
    assert_eq!(got.len(), 1, "fetched after the lost script");
}

/// A fetch dropped while it waits (fetches are cancel-safe; a stopping worker drops its
/// own) takes nothing after: the fetch it had queued in Redis behind its wait goes with
/// its connection, and a message enqueued then reaches another consumer, not the
/// dropped one's processing list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_dropped_while_it_waits_takes_nothing_after() {
    let server = RedisServer::start();
    let config = config(&server);
    let broker = RedisBroker::connect(config.clone()).await.unwrap();
    let (gone, other) = (ConsumerId::new(), ConsumerId::new());
    let queues: Vec<String> = vec!["default".into()];
    broker.heartbeat(&gone, Duration::from_secs(30)).await.unwrap();
    broker.heartbeat(&other, Duration::from_secs(30)).await.unwrap();
    // Its wait outlasts the test's patience below: a wait left in Redis would still be there.
    let dropped = tokio::time::timeout(Duration::from_millis(300), broker.fetch(&gone, &queues, 10, WAIT * 4));
    assert!(dropped.await.is_err(), "nothing to fetch: the wait was cut");
    let start = Instant::now();
    while server.cli(&["CLIENT", "LIST"]).contains("cmd=blpop") && start.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    broker.enqueue(Message::new(TaskId::new(), "default", b"m".to_vec())).await.unwrap();
    let got = broker.fetch(&other, &queues, 10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 1, "the other consumer has it");
    let held = format!("{}:{{default}}:proc:{gone}", config.namespace_name());
    assert_eq!(server.cli(&["LLEN", &held]), "0", "nothing in the dropped fetch's list");
}
