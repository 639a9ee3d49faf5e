//! Redis faults an operator meets: scripts flushed, memory full, a read-only replica,
//! connections killed in the middle of a busy drain. Each gives a clear error while it
//! lasts, loses nothing, and the worker resumes by itself.

use std::time::{Duration, Instant};

use task_core::{App, Error, TaskResult, task};
use task_redis::RedisConfig;
use test_support::RedisServer;

const WAIT: Duration = Duration::from_secs(30);

#[task(name = "faults.add")]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

async fn app(server: &RedisServer, namespace: &str) -> App {
    let config = RedisConfig::from_url(server.url()).namespace(namespace).op_timeout(Duration::from_secs(2));
    task_redis::app_builder(config).await.unwrap().build().await.unwrap()
}

/// Sends until a send succeeds (the fault is over) or `WAIT` passes.
async fn send_soon(app: &App, x: i64) -> task_core::AsyncResult<i64> {
    let start = Instant::now();
    loop {
        match add::delay(app, x, 1).await {
            Ok(sent) => return sent,
            Err(e) if start.elapsed() < WAIT => {
                tracing::debug!(error = %e, "not yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still failing after {WAIT:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_flushed_are_loaded_again() {
    let server = RedisServer::start();
    let namespace = test_support::namespace();
    let app = app(&server, &namespace).await;
    let worker = app.worker().spawn();
    assert_eq!(add::delay(&app, 1, 1).await.unwrap().get(WAIT).await.unwrap(), 2);
    server.cli(&["SCRIPT", "FLUSH"]);
    let sent = app.send_batch((0..50).map(|i| add::signature(i, 1))).await.expect("a send after SCRIPT FLUSH");
    for (i, r) in sent.iter().enumerate() {
        assert_eq!(r.get(WAIT).await.expect("a run after SCRIPT FLUSH"), i as i64 + 1);
    }
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_sends_clearly_and_loses_nothing() {
    let server = RedisServer::start();
    let namespace = test_support::namespace();
    let app = app(&server, &namespace).await;
    let before = add::delay(&app, 1, 1).await.unwrap();
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    match add::delay(&app, 2, 2).await {
        Err(Error::Broker(e)) => assert!(format!("{e:?}").contains("OOM"), "the error says Redis is full: {e:?}"),
        other => panic!("a send to a full Redis must fail clearly: {other:?}"),
    }
    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let worker = app.worker().spawn();
    assert_eq!(before.get(WAIT).await.unwrap(), 2, "what was queued before is not lost");
    assert_eq!(send_soon(&app, 3).await.get(WAIT).await.unwrap(), 4, "and the app goes on");
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_replica_refuses_writes_clearly_and_the_worker_resumes() {
    let primary = RedisServer::start();
    let server = RedisServer::start();
    let namespace = test_support::namespace();
    let app = app(&server, &namespace).await;
    let worker = app.worker().spawn();
    assert_eq!(add::delay(&app, 1, 1).await.unwrap().get(WAIT).await.unwrap(), 2);
    // A failover gone wrong: the server the app uses becomes a read-only replica.
    server.cli(&["REPLICAOF", "127.0.0.1", &primary.port().to_string()]);
    let start = Instant::now();
    let refused = loop {
        match add::delay(&app, 2, 2).await {
            Err(e) => break e,
            Ok(_) if start.elapsed() < WAIT => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(_) => panic!("writes to a replica must fail"),
        }
    };
    assert!(format!("{refused:?}").to_lowercase().contains("read only replica"), "the error says why: {refused:?}");
    server.cli(&["REPLICAOF", "NO", "ONE"]);
    assert_eq!(send_soon(&app, 5).await.get(WAIT).await.unwrap(), 6, "the worker resumes by itself");
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_during_a_busy_drain_lose_no_task() {
    let server = RedisServer::start();
    let namespace = test_support::namespace();
    let app = app(&server, &namespace).await;
    let sent = app.send_batch((0..3000).map(|i| add::signature(i, 1))).await.unwrap();
    let workers = self::app(&server, &namespace).await;
    let worker = workers.worker().concurrency(32).spawn();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    }
    for (i, r) in sent.iter().enumerate() {
        let start = Instant::now();
        let value = loop {
            match r.get(WAIT).await {
                Ok(v) => break v,
                Err(Error::Backend(_)) if start.elapsed() < WAIT => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("task {i} was lost: {e}"),
            }
        };
        assert_eq!(value, i as i64 + 1);
    }
    worker.shutdown().await.unwrap();
}
