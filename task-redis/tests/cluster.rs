//! `redis+cluster://`: the conformance, control, workflow and beat suites on a private
//! Redis Cluster of three primaries, where each queue's keys, each task's record and
//! each index live on the node of their own slot; an idle worker of queues on two
//! nodes; the primary of a queue killed under load and its replica promoted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use task_core::broker::{Broker, Message};
use task_core::{App, ConsumerId, TaskId, TaskResult, task};
use task_redis::{RedisBackend, RedisBroker, RedisConfig};
use task_suites::conformance::{Harness, SUITE_MAX_DELIVERIES};
use test_support::RedisCluster;

mod support;
use support::until_ok;

/// One cluster for the suite (each test has a namespace of its own); its servers stop
/// with the test process.
fn shared() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3, 0))
}

async fn setup() -> Harness {
    let url = tokio::task::spawn_blocking(|| shared().url()).await.unwrap();
    let config = RedisConfig::from_url(url).namespace(test_support::namespace()).max_deliveries(SUITE_MAX_DELIVERIES);
    let broker = RedisBroker::connect(config.clone()).await.expect("broker on the cluster");
    let backend = RedisBackend::connect(config).await.expect("backend on the cluster");
    Harness::new(Arc::new(broker), Arc::new(backend))
}

task_suites::conformance_tests!(setup);

/// Two queue names whose keys live on different nodes of `cluster`.
fn queues_on_two_nodes(cluster: &RedisCluster, namespace: &str) -> (String, String) {
    let port = |q: &str| cluster.owner_of(&format!("{namespace}:{{{q}}}:wake")).expect("an owner").port();
    let first = format!("first-{}", &TaskId::new().as_str()[..8]);
    let second = (0..64)
        .map(|i| format!("second-{i}-{}", &TaskId::new().as_str()[..8]))
        .find(|q| port(q) != port(&first))
        .expect("64 names are not all on one node");
    (first, second)
}

/// An idle worker of two queues on two nodes blocks on both (one BLPOP over both
/// would be refused as CROSSSLOT) and wakes for a message on either; the wait that
/// lost leaves the next wake-up in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_over_queues_on_two_nodes_wakes_for_either() {
    let namespace = test_support::namespace();
    let ns = namespace.clone();
    let (url, (a, b)) =
        tokio::task::spawn_blocking(move || (shared().url(), queues_on_two_nodes(shared(), &ns))).await.unwrap();
    let config = RedisConfig::from_url(url).namespace(&namespace);
    let broker = RedisBroker::connect(config).await.expect("broker on the cluster");
    let consumer = ConsumerId::new();
    for (round, target) in [&b, &a, &b].into_iter().enumerate() {
        let (broker2, consumer2, queues) = (broker.clone(), consumer.clone(), vec![a.clone(), b.clone()]);
        let waiter = tokio::spawn(async move { broker2.fetch(&consumer2, &queues, 10, Duration::from_secs(20)).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        broker.enqueue(Message::new(TaskId::new(), target, format!("m{round}").into_bytes())).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .unwrap_or_else(|_| panic!("round {round}: woken by the message on {target}"))
            .unwrap()
            .expect("a fetch over both queues");
        assert_eq!(
            got.iter().map(|d| (d.queue.as_str(), d.payload.clone())).collect::<Vec<_>>(),
            [(target.as_str(), format!("m{round}").into_bytes())]
        );
        for delivery in &got {
            broker.ack(&consumer, delivery).await.unwrap();
        }
    }
}

/// The task-control, workflow and beat suites through `task_redis::app_builder`.
mod app {
    use task_redis::RedisConfig;
    use task_suites::control::AppHarness;

    async fn setup() -> AppHarness {
        let url = tokio::task::spawn_blocking(|| super::shared().url()).await.unwrap();
        let config = RedisConfig::from_url(url).namespace(test_support::namespace());
        let builder = task_redis::app_builder(config).await.expect("an app on the cluster");
        AppHarness { builder, keep_alive: None }
    }

    task_suites::control_tests!(setup);
    task_suites::workflow_tests!(setup);
    task_suites::beat_tests!(setup);
}

/// How many times each `n` ran.
fn runs() -> &'static Mutex<HashMap<u32, u32>> {
    static RUNS: OnceLock<Mutex<HashMap<u32, u32>>> = OnceLock::new();
    RUNS.get_or_init(Mutex::default)
}

static STARTED: AtomicU32 = AtomicU32::new(0);

#[task(name = "cluster.step")]
async fn step(n: u32) -> TaskResult<u32> {
    STARTED.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(20)).await;
    *runs().lock().unwrap().entry(n).or_default() += 1;
    Ok(n)
}

/// A cluster of three primaries with a replica each; the primary of the queue's slot
/// is killed with SIGKILL while a worker drains it. Its replica takes over the slot;
/// every task ends (at least once: a run whose ack died with the primary runs again),
/// none stays stuck, and the producer's next sends go to the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_of_a_queue_killed_under_load_loses_no_task() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1)).await.unwrap();
    let namespace = test_support::namespace();
    let config = RedisConfig::from_url(cluster.url()).namespace(&namespace).op_timeout(Duration::from_secs(2));
    let app: App = task_redis::app_builder(config).await.unwrap().build().await.unwrap();

    let sent = app.send_batch((0..1000).map(step::signature)).await.unwrap();
    // What the producer sent is on the replica before the primary dies (a send the
    // primary acknowledged and did not pass on would be lost with it: see the README).
    let ready = format!("{namespace}:{{default}}:ready:0");
    let (cluster_, key) = (cluster, ready.clone());
    let cluster = tokio::task::spawn_blocking(move || {
        cluster_.wait_for_replica_of(&key);
        cluster_
    })
    .await
    .unwrap();
    let worker = app.worker().concurrency(8).heartbeat_ttl(Duration::from_secs(2)).spawn();
    let start = Instant::now();
    while STARTED.load(Ordering::Relaxed) < 200 {
        assert!(start.elapsed() < Duration::from_secs(60), "the worker never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut cluster, key) = (cluster, ready.clone());
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.fail_over_owner_of(&key);
        cluster
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
    let after = app.send_batch((1000..1100).map(step::signature)).await.unwrap();
    for (n, result) in (1000..).zip(&after) {
        assert_eq!(result.get(Duration::from_secs(30)).await.unwrap(), n);
    }
    let report = worker.shutdown().await.unwrap();
    // This test's tasks only (another test of this file runs `step` with n from 5000).
    let runs: HashMap<u32, u32> =
        runs().lock().unwrap().iter().filter(|(n, _)| **n < 1100).map(|(n, r)| (*n, *r)).collect();
    assert_eq!(runs.len(), 1100, "every task ran");
    let twice = runs.values().filter(|n| **n > 1).count();
    assert!(twice <= 16, "{twice} tasks ran more than once; at most those in flight at the failover may");
    assert!(report.succeeded >= 1100, "{report:?}");
    drop(cluster);
}

/// A task's completion goes out on a sharded channel of its record's slot (SPUBLISH on
/// that node alone, where a classic PUBLISH would reach every node), and wakes its
/// waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_is_published_on_its_records_node_only() {
    use task_core::{ResultBackend, TaskMeta, TaskState};
    let namespace = test_support::namespace();
    let url = tokio::task::spawn_blocking(|| shared().url()).await.unwrap();
    let backend = Arc::new(RedisBackend::connect(RedisConfig::from_url(url).namespace(&namespace)).await.unwrap());
    let id = TaskId::new();
    let (b, i) = (backend.clone(), id.clone());
    let waiter = tokio::spawn(async move { b.wait(&i, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let record = format!("{namespace}:result:{id}");
    let spublished = |record: String| {
        tokio::task::spawn_blocking(move || {
            let owner = shared().owner_of(&record).expect("an owner");
            let stats = owner.cli(&["INFO", "commandstats"]);
            stats.lines().find(|l| l.starts_with("cmdstat_spublish:")).map(str::to_owned)
        })
    };
    let before = spublished(record.clone()).await.unwrap();
    let start = Instant::now();
    backend.store(&id, TaskMeta::state(TaskState::Success), Duration::from_secs(60)).await.unwrap();
    let woken = waiter.await.unwrap().unwrap().expect("a record");
    assert_eq!(woken.state, TaskState::Success);
    assert!(start.elapsed() < Duration::from_secs(10), "woken by the message, not at the end of the wait");
    let after = spublished(record).await.unwrap();
    assert!(after.is_some() && after != before, "an SPUBLISH on the record's node: {before:?} -> {after:?}");
}

/// Waiters of tasks whose records live on a primary that is killed: their sharded
/// subscriptions are made again on the promoted replica (one slot at a time: redis-rs
/// restores them itself or the keeper does), and each wakes when its task ends there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_on_a_killed_primary_resume_on_its_replica() {
    use task_core::{ResultBackend, TaskMeta, TaskState};
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1)).await.unwrap();
    let namespace = test_support::namespace();
    let config = RedisConfig::from_url(cluster.url()).namespace(&namespace).op_timeout(Duration::from_secs(2));
    let backend = Arc::new(RedisBackend::connect(config).await.unwrap());
    // Four ids whose records share a node, and two elsewhere.
    let ns = namespace.clone();
    let (cluster, doomed, others) = tokio::task::spawn_blocking(move || {
        let port = |id: &TaskId| cluster.owner_of(&format!("{ns}:result:{id}")).expect("an owner").port();
        let first = TaskId::new();
        let target = port(&first);
        let (mut doomed, mut others) = (vec![first], Vec::new());
        while doomed.len() < 4 || others.len() < 2 {
            let id = TaskId::new();
            if port(&id) == target { doomed.push(id) } else { others.push(id) }
        }
        doomed.truncate(4);
        others.truncate(2);
        (cluster, doomed, others)
    })
    .await
    .unwrap();
    let all: Vec<TaskId> = doomed.iter().chain(&others).cloned().collect();
    let waiters: Vec<_> = all
        .iter()
        .map(|id| {
            let (b, id) = (backend.clone(), id.clone());
            tokio::spawn(async move { b.wait(&id, Duration::from_secs(60)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let key = format!("{namespace}:result:{}", doomed[0]);
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.fail_over_owner_of(&key);
        cluster
    })
    .await
    .unwrap();
    let start = Instant::now();
    for id in &all {
        until_ok("a store after the failover", Duration::from_secs(30), || {
            backend.store(id, TaskMeta::state(TaskState::Success), Duration::from_secs(60))
        })
        .await;
    }
    for (id, waiter) in all.iter().zip(waiters) {
        let meta = waiter.await.unwrap().unwrap_or_else(|e| panic!("the wait of {id}: {e}"));
        assert_eq!(meta.map(|m| m.state), Some(TaskState::Success), "{id}");
    }
    assert!(start.elapsed() < Duration::from_secs(45), "the waiters woke when their tasks ended");
    drop(cluster);
}

/// `rediss+cluster://`: a cluster whose nodes speak TLS only (to clients, to replicas and
/// on the cluster bus), trusted through a private CA: tasks, a wait and a chord run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_runs_tasks_through_a_private_ca() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start_tls(3, 0)).await.unwrap();
    assert!(cluster.url().starts_with("rediss+cluster://"), "{}", cluster.url());
    let config = RedisConfig::from_url(cluster.url()).namespace(test_support::namespace()).ca_cert(cluster.ca_cert());
    let app: App = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
    let worker = app.worker().concurrency(4).spawn();
    let sent = app.send_batch((5000..5020).map(step::signature)).await.unwrap();
    for (n, result) in (5000..).zip(&sent) {
        assert_eq!(result.get(Duration::from_secs(20)).await.unwrap(), n);
    }
    worker.shutdown().await.unwrap();

    // Without the CA, the nodes' certificates are not trusted: a clear error.
    let untrusted = RedisConfig::from_url(cluster.url()).namespace(test_support::namespace());
    let e = RedisBroker::connect(untrusted).await.unwrap_err().to_string();
    assert!(e.contains("cannot connect the broker"), "{e}");
}
