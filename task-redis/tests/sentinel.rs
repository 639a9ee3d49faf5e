//! `redis+sentinel://`: the conformance suite on the primary a set of real Sentinels
//! names; a failover under load (the primary killed with SIGKILL while a worker drains,
//! every task ending once it is done, none lost, none stuck, the producer's next sends
//! going to the new primary); sends that wait for a replica; the same over TLS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use task_core::{App, TaskResult, task};
use task_redis::{RedisBackend, RedisBroker, RedisConfig};
use task_suites::conformance::{Harness, SUITE_MAX_DELIVERIES};
use test_support::SentinelSet;

mod support;
use support::until_ok;

/// One Sentinel set for the suite (each test has a namespace of its own); its servers
/// stop with the test process.
fn shared() -> &'static SentinelSet {
    static SET: OnceLock<SentinelSet> = OnceLock::new();
    SET.get_or_init(SentinelSet::start)
}

async fn setup() -> Harness {
    let url = tokio::task::spawn_blocking(|| shared().url()).await.unwrap();
    let config = RedisConfig::from_url(url).namespace(test_support::namespace()).max_deliveries(SUITE_MAX_DELIVERIES);
    let broker = RedisBroker::connect(config.clone()).await.expect("broker behind Sentinel");
    let backend = RedisBackend::connect(config).await.expect("backend behind Sentinel");
    Harness::new(Arc::new(broker), Arc::new(backend))
}

task_suites::conformance_tests!(setup);

/// How many times each `n` ran.
fn runs() -> &'static Mutex<HashMap<u32, u32>> {
    static RUNS: OnceLock<Mutex<HashMap<u32, u32>>> = OnceLock::new();
    RUNS.get_or_init(Mutex::default)
}

static STARTED: AtomicU32 = AtomicU32::new(0);

/// How long a call may keep failing after a failover.
const MINUTE: Duration = Duration::from_secs(60);

#[task(name = "sentinel.step")]
async fn step(n: u32) -> TaskResult<u32> {
    STARTED.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(20)).await;
    *runs().lock().unwrap().entry(n).or_default() += 1;
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_killed_under_load_loses_no_task_and_strands_none() {
    let mut set = tokio::task::spawn_blocking(SentinelSet::start).await.unwrap();
    let url = set.url();
    assert!(!url.contains(&set.primary.port().to_string()), "the app is given the Sentinels only: {url}");
    let namespace = test_support::namespace();
    let config = RedisConfig::from_url(&url).namespace(&namespace).op_timeout(Duration::from_secs(2));
    let app: App = task_redis::app_builder(config).await.unwrap().build().await.unwrap();

    let sent = app.send_batch((0..1000).map(step::signature)).await.unwrap();
    // What the producer sent is on the replica before the primary dies (a send the
    // primary acknowledged and did not pass on would be lost with it: see the README).
    let ready = format!("{namespace}:{{default}}:ready:0");
    let start = Instant::now();
    while set.replica.cli(&["LLEN", &ready]) != "1000" {
        assert!(start.elapsed() < Duration::from_secs(30), "the replica never had the 1,000 tasks");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let worker = app.worker().concurrency(8).heartbeat_ttl(Duration::from_secs(2)).spawn();
    let start = Instant::now();
    while STARTED.load(Ordering::Relaxed) < 200 {
        assert!(start.elapsed() < Duration::from_secs(60), "the worker never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let set = tokio::task::spawn_blocking(move || {
        set.fail_over();
        set
    })
    .await
    .unwrap();
    let at_failover = STARTED.load(Ordering::Relaxed);
    assert!(at_failover < 1000, "the failover came mid-drain ({at_failover} started)");

    for (n, result) in sent.iter().enumerate() {
        let what = format!("task {n} never ended after the failover");
        let value = until_ok(&what, Duration::from_secs(90), || result.get(Duration::from_secs(5))).await;
        assert_eq!(value, u32::try_from(n).unwrap());
    }
    // The producer follows too: what it sends now goes to the new primary and runs.
    let after = app.send_batch((1000..1100).map(step::signature)).await.unwrap();
    for (n, result) in (1000..).zip(&after) {
        assert_eq!(result.get(Duration::from_secs(30)).await.unwrap(), n);
    }
    let report = worker.shutdown().await.unwrap();
    let runs = runs().lock().unwrap().clone();
    assert_eq!(runs.len(), 1100, "every task ran");
    let twice = runs.values().filter(|n| **n > 1).count();
    // At least once: a run whose ack the old primary took with it runs again.
    assert!(twice <= 16, "{twice} tasks ran more than once; at most those in flight at the failover may");
    assert!(report.succeeded >= 1100, "{report:?}");
    drop(set);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_waits_for_a_replica_is_on_it_or_fails_with_the_reason() {
    let set = tokio::task::spawn_blocking(SentinelSet::start).await.unwrap();
    let namespace = test_support::namespace();
    let config =
        RedisConfig::from_url(set.url()).namespace(&namespace).wait_for_replicas(1, Some(Duration::from_millis(300)));
    let app: App = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
    let ready = format!("{namespace}:{{default}}:ready:0");

    step::delay(&app, 1).await.unwrap();
    assert_eq!(set.replica.cli(&["LLEN", &ready]), "1", "on the replica when the send returns");
    app.send_batch((2..12).map(step::signature)).await.unwrap();
    assert_eq!(set.replica.cli(&["LLEN", &ready]), "11", "a batch too");

    // A replica that does not answer: the send says it may not outlive its primary.
    set.replica.freeze();
    let refused = step::delay(&app, 99).await.map(|_| ()).unwrap_err().to_string();
    let batch = app.send_batch((100..102).map(step::signature)).await.map(|_| ()).unwrap_err().to_string();
    set.replica.resume();
    for e in [&refused, &batch] {
        assert!(e.contains("0 of 1 replicas acknowledged"), "{e}");
    }
    drop(set);
}

#[task(name = "sentinel.double")]
async fn double(n: u32) -> TaskResult<u32> {
    Ok(n * 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_sentinel_speaks_tls_to_the_sentinels_and_the_primary_through_a_failover() {
    let mut set = tokio::task::spawn_blocking(SentinelSet::start_tls).await.unwrap();
    let url = set.url();
    assert!(url.starts_with("rediss+sentinel://"), "{url}");
    let config = RedisConfig::from_url(&url)
        .ca_cert(set.ca_cert())
        .namespace(test_support::namespace())
        .op_timeout(Duration::from_secs(2));
    let app: App = task_redis::app_builder(config.clone()).await.unwrap().build().await.unwrap();
    let worker = app.worker().concurrency(2).spawn();
    assert_eq!(double::delay(&app, 21).await.unwrap().get(Duration::from_secs(10)).await.unwrap(), 42);

    set = tokio::task::spawn_blocking(move || {
        set.fail_over();
        set
    })
    .await
    .unwrap();
    let after = until_ok("no send after the failover", MINUTE, || double::delay(&app, 50)).await;
    // Result waits come back once the subscriber has moved too (it retries with pauses).
    let value = until_ok("no result after the failover", MINUTE, || after.get(Duration::from_secs(5))).await;
    assert_eq!(value, 100, "over TLS to the new primary");
    worker.shutdown().await.unwrap();

    // Without the CA, the servers' certificates are not trusted: a clear error, no hang.
    let untrusted = RedisConfig::from_url(&url).namespace(test_support::namespace()).op_timeout(Duration::from_secs(2));
    let e = task_redis::RedisBroker::connect(untrusted).await.unwrap_err().to_string();
    assert!(e.contains("cannot connect"), "{e}");
    drop(set);
}

#[task(name = "sentinel.triple")]
async fn triple(n: u32) -> TaskResult<u32> {
    Ok(n * 3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_is_left_for_the_promoted_replica() {
    let set = tokio::task::spawn_blocking(SentinelSet::start).await.unwrap();
    let config =
        RedisConfig::from_url(set.url()).namespace(test_support::namespace()).op_timeout(Duration::from_secs(1));
    let app: App = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
    let worker = app.worker().concurrency(2).spawn();
    assert_eq!(triple::delay(&app, 1).await.unwrap().get(Duration::from_secs(10)).await.unwrap(), 3);

    // It answers nothing and closes nothing: only time-outs tell the connections.
    set.primary.freeze();
    let set = tokio::task::spawn_blocking(move || {
        set.wait_for_promotion();
        set
    })
    .await
    .unwrap();
    let sent = until_ok("no send after the failover", MINUTE, || triple::delay(&app, 7)).await;
    let value = until_ok("no result after the failover", MINUTE, || sent.get(Duration::from_secs(5))).await;
    assert_eq!(value, 21);
    set.primary.resume();
    worker.shutdown().await.unwrap();
    drop(set);
}
