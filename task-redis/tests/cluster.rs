//! `redis+cluster://`: the conformance suite on a private Redis Cluster of three
//! primaries, where each queue's keys, each task's record and each index live on the
//! node of their own slot.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use task_core::broker::{Broker, Message};
use task_core::{ConsumerId, TaskId};
use task_redis::{RedisBackend, RedisBroker, RedisConfig};
use task_suites::conformance::{Harness, SUITE_MAX_DELIVERIES};
use test_support::RedisCluster;

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
