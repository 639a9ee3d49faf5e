//! Partitioned queues (`RedisConfig::partitions`): one logical queue spread over the
//! nodes of a private Redis Cluster, checked slot by slot; one key's messages in one
//! partition, in order; workers fetching every partition; inspection, pause, dead
//! letters, recovery and purges of the queue as one; counts agreed through Redis; a
//! chord and sends-once on a partitioned queue; the same on one Redis.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use task_core::broker::{Broker, Message};
use task_core::capability::PeekAt;
use task_core::{App, ConsumerId, TaskId, TaskResult, chord, task};
use task_redis::{RedisBroker, RedisConfig};
use test_support::{RedisCluster, RedisServer};

/// One cluster for these tests (each has a namespace of its own).
fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3, 0))
}

async fn cluster_url() -> String {
    tokio::task::spawn_blocking(|| cluster().url()).await.unwrap()
}

fn msg(queue: &str, body: &str) -> Message {
    Message::new(TaskId::new(), queue, body.as_bytes().to_vec())
}

/// Fetches until `n` deliveries came (acking each), or 20 s passed.
async fn drain(broker: &RedisBroker, consumer: &ConsumerId, queues: &[String], n: usize) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let start = std::time::Instant::now();
    while got.len() < n && start.elapsed() < Duration::from_secs(20) {
        for d in broker.fetch(consumer, queues, 100, Duration::from_millis(500)).await.unwrap() {
            broker.ack(consumer, &d).await.unwrap();
            got.push((d.queue.clone(), String::from_utf8_lossy(&d.payload).into_owned()));
        }
    }
    got
}

/// 2,400 messages round robin over 8 partitions: 300 in each partition's ready list,
/// each list on the node that owns its slot, the partitions on all three nodes; the
/// queue's depth is their sum; one worker of the logical queue drains every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_queue_spreads_over_the_nodes_and_drains_as_one() {
    let namespace = test_support::namespace();
    let config = RedisConfig::from_url(cluster_url().await).namespace(&namespace).partitions("hot", 8);
    let broker = RedisBroker::connect(config).await.unwrap();
    broker.enqueue_batch((0..2400).map(|i| msg("hot", &format!("m{i}"))).collect()).await.unwrap();

    let ns = namespace.clone();
    let owners = tokio::task::spawn_blocking(move || {
        (0..8)
            .map(|p| {
                let key = format!("{ns}:{{hot#{p}}}:ready:0");
                let owner = cluster().owner_of(&key).expect("an owner");
                (owner.port(), owner.cli(&["LLEN", &key]))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(owners.iter().all(|(_, len)| len == "300"), "300 in each partition: {owners:?}");
    let nodes: HashSet<u16> = owners.iter().map(|(port, _)| *port).collect();
    assert_eq!(nodes.len(), 3, "the 8 partitions live on all three nodes: {owners:?}");

    let inspect = broker.inspect().unwrap();
    assert_eq!(inspect.queue_stats("hot").await.unwrap().ready, 2400);
    assert_eq!(inspect.queues().await.unwrap(), ["hot"], "listed once, by its name");

    let consumer = ConsumerId::new();
    let got = drain(&broker, &consumer, &["hot".to_owned()], 2400).await;
    assert_eq!(got.len(), 2400);
    let bodies: HashSet<&str> = got.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies.len(), 2400, "each message once");
    let by_partition = got.iter().fold(HashMap::<&str, usize>::new(), |mut m, (q, _)| {
        *m.entry(q.as_str()).or_default() += 1;
        m
    });
    assert_eq!(by_partition.len(), 8, "a delivery names its partition: {by_partition:?}");
    assert_eq!(inspect.queue_stats("hot").await.unwrap().ready, 0);
}

/// The messages of one key go to one partition, in the order they were sent; other
/// keys spread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_keys_messages_stay_in_one_partition_in_order() {
    let config = RedisConfig::from_url(cluster_url().await).namespace(test_support::namespace()).partitions("keyed", 4);
    let broker = RedisBroker::connect(config).await.unwrap();
    for i in 0..30 {
        let keyed = msg("keyed", &format!("k{i}")).with_partition_key(Some("user-7".into()));
        broker.enqueue(keyed).await.unwrap();
        broker.enqueue(msg("keyed", &format!("x{i}")).with_partition_key(Some(format!("other-{i}")))).await.unwrap();
    }
    let consumer = ConsumerId::new();
    let got = drain(&broker, &consumer, &["keyed".to_owned()], 60).await;
    let keyed: Vec<&(String, String)> = got.iter().filter(|(_, b)| b.starts_with('k')).collect();
    let partitions: HashSet<&str> = keyed.iter().map(|(q, _)| q.as_str()).collect();
    assert_eq!(partitions.len(), 1, "one key, one partition: {partitions:?}");
    let order: Vec<&str> = keyed.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(order, (0..30).map(|i| format!("k{i}")).collect::<Vec<_>>(), "in the order sent");
    let others: HashSet<&str> = got.iter().filter(|(_, b)| b.starts_with('x')).map(|(q, _)| q.as_str()).collect();
    assert_eq!(others.len(), 4, "30 other keys use every partition");
}

/// Pause, peek, dead letters, recovery and purge act on the whole queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queues_tools_treat_its_partitions_as_one() {
    let config = RedisConfig::from_url(cluster_url().await).namespace(test_support::namespace()).partitions("ops", 4);
    let broker = RedisBroker::connect(config).await.unwrap();
    let inspect = broker.inspect().unwrap();
    let pause = broker.pausing().unwrap();
    let queues = ["ops".to_owned()];
    broker.enqueue_batch((0..8).map(|i| msg("ops", &format!("p{i}"))).collect()).await.unwrap();
    pause.pause("ops").await.unwrap();
    assert!(inspect.queue_stats("ops").await.unwrap().paused);
    let consumer = ConsumerId::new();
    assert!(broker.fetch(&consumer, &queues, 10, Duration::from_millis(200)).await.unwrap().is_empty());
    assert_eq!(inspect.peek("ops", PeekAt::InFlight, 10).await.unwrap().len(), 0);
    pause.resume("ops").await.unwrap();

    // Four held by a consumer that dies: back at once, from every partition they were in.
    let doomed = ConsumerId::new();
    broker.heartbeat(&doomed, Duration::from_secs(60)).await.unwrap();
    let mut held = Vec::new();
    while held.len() < 4 {
        held.extend(broker.fetch(&doomed, &queues, 4 - held.len(), Duration::from_secs(1)).await.unwrap());
    }
    assert_eq!(inspect.queue_stats("ops").await.unwrap().in_flight, 4);
    broker.recover_consumer(&doomed).await.unwrap();
    assert_eq!(inspect.queue_stats("ops").await.unwrap().ready, 8);

    // Two dead letters in two partitions; listed, retried and purged by the queue's name.
    let mut buried = HashSet::new();
    while buried.len() < 2 {
        for d in broker.fetch(&consumer, &queues, 1, Duration::from_secs(1)).await.unwrap() {
            if buried.contains(&d.queue) {
                broker.release(&consumer, &d).await.unwrap();
            } else {
                broker.dead_letter(&consumer, &d, "bad").await.unwrap();
                buried.insert(d.queue.clone());
            }
        }
    }
    let dead = inspect.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(inspect.queue_stats("ops").await.unwrap().dead, 2);
    assert_eq!(inspect.retry_dead("ops", 1).await.unwrap(), 1);
    assert_eq!(inspect.purge_dead("ops").await.unwrap(), 1);
    assert_eq!(inspect.queue_stats("ops").await.unwrap().dead, 0);
    assert_eq!(inspect.purge("ops").await.unwrap(), 7);
    assert_eq!(inspect.queue_stats("ops").await.unwrap().ready, 0);
}

/// Every process agrees on the count through Redis: one that declares none follows it,
/// one that declares another fails to connect, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_agree_on_the_count_through_redis() {
    let url = cluster_url().await;
    let namespace = test_support::namespace();
    let producer =
        RedisBroker::connect(RedisConfig::from_url(&url).namespace(&namespace).partitions("agreed", 6)).await.unwrap();
    producer.enqueue_batch((0..12).map(|i| msg("agreed", &format!("a{i}"))).collect()).await.unwrap();

    let follower = RedisBroker::connect(RedisConfig::from_url(&url).namespace(&namespace)).await.unwrap();
    let got = drain(&follower, &ConsumerId::new(), &["agreed".to_owned()], 12).await;
    assert_eq!(got.len(), 12, "a worker that declares nothing serves every partition");

    let other = RedisConfig::from_url(&url).namespace(&namespace).partitions("agreed", 3);
    let e = RedisBroker::connect(other).await.unwrap_err().to_string();
    assert!(e.contains("`agreed`") && e.contains("3 partitions") && e.contains('6'), "{e}");
    let bad = RedisConfig::from_url(&url).namespace(&namespace).partitions("agreed", 0);
    let e = RedisBroker::connect(bad).await.unwrap_err().to_string();
    assert!(e.contains("1 to 1024"), "{e}");
}

#[task(name = "partitions.square")]
async fn square(n: u64) -> TaskResult<u64> {
    Ok(n * n)
}

#[task(name = "partitions.total")]
async fn total(values: Vec<u64>) -> TaskResult<u64> {
    Ok(values.iter().sum())
}

/// Tasks, a chord whose members and callback are on a partitioned queue, and callbacks
/// (sent once) run on a worker of that queue; the same on one Redis.
async fn tasks_and_a_chord(url: String) {
    let namespace = test_support::namespace();
    let config = RedisConfig::from_url(url).namespace(&namespace).partitions("default", 4);
    let app: App = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
    let worker = app.worker().concurrency(4).spawn();
    let sent = app.send_batch((0..40).map(square::signature)).await.unwrap();
    for (n, r) in (0u64..).zip(&sent) {
        assert_eq!(r.get(Duration::from_secs(20)).await.unwrap(), n * n);
    }
    let linked = square::signature(3).on_success(square::signature(4)).apply_async(&app).await.unwrap();
    assert_eq!(linked.get(Duration::from_secs(20)).await.unwrap(), 9);
    let joined = chord((1..=10).map(square::signature), total::partial()).apply_async(&app).await.unwrap();
    assert_eq!(joined.get(Duration::from_secs(30)).await.unwrap(), 385);
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_and_a_chord_run_on_a_partitioned_queue_of_a_cluster() {
    tasks_and_a_chord(cluster_url().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_and_a_chord_run_on_a_partitioned_queue_of_one_redis() {
    let server = RedisServer::start();
    tasks_and_a_chord(server.url()).await;
}
