//! A Redis restart (an operator's restart, a failover, `CLIENT KILL`) leaves every
//! connection and subscription working by itself: the first call after it succeeds, and
//! workers hear the control channel again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use task_core::{App, TaskResult, TaskState, task};
use task_redis::RedisConfig;
use test_support::{Persistence, RedisServer};

const WAIT: Duration = Duration::from_secs(20);

#[task(name = "restart.add")]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

static LOOPING: AtomicBool = AtomicBool::new(false);

static UNTRACKED_RAN: AtomicBool = AtomicBool::new(false);

#[task(name = "restart.untracked", track_started = false)]
async fn untracked() -> TaskResult<()> {
    UNTRACKED_RAN.store(true, Ordering::SeqCst);
    Ok(())
}

#[task(name = "restart.endless", track_started = false)]
async fn endless() -> TaskResult<()> {
    LOOPING.store(true, Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn app(server: &RedisServer, namespace: &str) -> App {
    let config = RedisConfig::from_url(server.url()).namespace(namespace);
    task_redis::app_builder(config).await.unwrap().build().await.unwrap()
}

/// How many connections listen on the control channel.
fn control_listeners(server: &RedisServer, namespace: &str) -> i64 {
    let out = server.cli(&["PUBSUB", "NUMSUB", &format!("{namespace}:control")]);
    out.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// Stops Redis for a second and a half (long enough for every reconnect tried meanwhile
/// to fail), then starts it again on the same port and data.
async fn down_for_a_while(server: &mut RedisServer) {
    server.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.restart();
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "{what}: not in {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A producer idle while Redis restarted: its first call afterwards succeeds (the
/// connection noticed nothing until then), for sends, reads and waits alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_after_a_restart_succeeds() {
    let mut server = RedisServer::start_with(Persistence::AppendOnly);
    let namespace = test_support::namespace();
    let app = app(&server, &namespace).await;
    let workers = self::app(&server, &namespace).await;
    let worker = workers.worker().spawn();
    assert_eq!(add::delay(&app, 1, 1).await.unwrap().get(WAIT).await.unwrap(), 2);

    down_for_a_while(&mut server).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = add::delay(&app, 2, 3).await.expect("the first send after a restart");
    assert!(app.result::<i64>(sent.id().clone()).state().await.is_ok(), "the first read after a restart");
    assert_eq!(sent.get(WAIT).await.expect("the first wait after a restart"), 5);
    worker.shutdown().await.unwrap();
}

/// After a restart the workers listen on the control channel again: a revoke of an
/// untracked task (checked from memory) and a terminate both reach them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_hear_the_control_channel_after_a_restart() {
    let mut server = RedisServer::start_with(Persistence::AppendOnly);
    let namespace = test_support::namespace();
    let app = app(&server, &namespace).await;
    let worker = app.worker().spawn();
    assert_eq!(add::delay(&app, 1, 1).await.unwrap().get(WAIT).await.unwrap(), 2);
    eventually("the worker listens on the control channel", || control_listeners(&server, &namespace) >= 1).await;

    down_for_a_while(&mut server).await;
    eventually("the worker listens on the control channel again", || control_listeners(&server, &namespace) >= 1).await;
    // A worker that runs tasks again, then a terminate of a running task.
    assert_eq!(add::delay(&app, 2, 2).await.unwrap().get(WAIT).await.unwrap(), 4);
    let running = endless::delay(&app).await.unwrap();
    eventually("the endless task runs", || LOOPING.load(Ordering::SeqCst)).await;
    app.revoke(running.id(), true).await.unwrap();
    assert!(running.get(WAIT).await.is_err(), "a terminated task does not succeed");
    // The run's end (its run time) is written by the worker once the terminate stopped it.
    let start = Instant::now();
    loop {
        let meta = app.backend().get(running.id()).await.unwrap().expect("a record");
        if meta.runtime_ms.is_some() {
            assert_eq!(meta.state, TaskState::Revoked);
            break;
        }
        assert!(start.elapsed() < WAIT, "the terminate after the restart stopped nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A revoke of an untracked task, checked from the worker's memory at its start.
    let later = untracked::signature().countdown(Duration::from_millis(600)).apply_async(&app).await.unwrap();
    app.revoke(later.id(), false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!UNTRACKED_RAN.load(Ordering::SeqCst), "a task revoked after the restart ran");
    assert_eq!(later.state().await.unwrap(), TaskState::Revoked);
    // The events written after the restart reach the stream.
    let history = app.backend().history().expect("the Redis backend keeps a history");
    let start = Instant::now();
    while !history.events(1000).await.unwrap().iter().any(|e| e.task_id.as_ref() == Some(running.id())) {
        assert!(start.elapsed() < WAIT, "no event of the terminated task after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = worker.shutdown().await.unwrap();
    assert_eq!(report.revoked, 2, "{report:?}");
}

/// `CLIENT KILL` of every connection, normal and pub/sub: the same healing, with Redis up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_killed_heals_by_itself() {
    let server = RedisServer::start();
    let namespace = test_support::namespace();
    let app = app(&server, &namespace).await;
    let workers = self::app(&server, &namespace).await;
    let worker = workers.worker().spawn();
    assert_eq!(add::delay(&app, 1, 1).await.unwrap().get(WAIT).await.unwrap(), 2);
    eventually("the worker listens on the control channel", || control_listeners(&server, &namespace) >= 1).await;

    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    let sent = add::delay(&app, 2, 3).await.expect("the first send after CLIENT KILL");
    assert_eq!(sent.get(WAIT).await.expect("the first wait after CLIENT KILL"), 5);
    eventually("the worker listens on the control channel again", || control_listeners(&server, &namespace) >= 1).await;
    worker.shutdown().await.unwrap();
}

/// A short wait that times out, then a long one at once on the same task: the second
/// hears the completion (the first's unsubscribe must not cancel the second's subscribe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_right_after_a_timed_out_one_hears_the_completion() {
    let server = RedisServer::start();
    let namespace = test_support::namespace();
    let app = app(&server, &namespace).await;
    let workers = self::app(&server, &namespace).await;
    let worker = workers.worker().concurrency(16).spawn();
    let mut waits = Vec::new();
    for i in 0..64 {
        let app = app.clone();
        waits.push(tokio::spawn(async move {
            let res = add::signature(i, 1).countdown(Duration::from_millis(300)).apply_async(&app).await.unwrap();
            for _ in 0..20 {
                assert!(res.get(Duration::from_millis(1)).await.is_err(), "not done yet");
            }
            let started = Instant::now();
            let value = res.get(Duration::from_secs(5)).await;
            (value.ok(), started.elapsed())
        }));
    }
    for (i, wait) in waits.into_iter().enumerate() {
        let (value, took) = wait.await.unwrap();
        assert_eq!(value, Some(i as i64 + 1), "wait {i} missed the completion (waited {took:?})");
    }
    worker.shutdown().await.unwrap();
}
