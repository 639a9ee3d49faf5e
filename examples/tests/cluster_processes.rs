//! Worker processes on a private Redis Cluster (three primaries, a replica each): a
//! partitioned queue drained by three worker processes while the primary of one of its
//! partitions is killed with SIGKILL and its replica promoted. Every task is accounted
//! for: each one ran and ended SUCCESS, none is left in a queue or a processing list.

use std::collections::HashMap;

use celerity_example_tasks::journal;

mod support;

use support::{Setup, Workers, journal_lines, results, stop, wait_for_journal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_queue_drained_by_three_processes_survives_a_killed_primary() {
    let setup = tokio::task::spawn_blocking(|| Setup::on_cluster(3, 1).with_partitions("default=6")).await.unwrap();
    let app = setup.app().await;
    let sent = app.send_batch((0..1000).map(|i| journal::signature(format!("c{i}"), 100))).await.unwrap();
    // What was sent is on the replicas before a primary dies (a send a primary took and
    // did not pass on would be lost with it: see the README).
    let partitions: Vec<String> = (0..6).map(|p| format!("{}:{{default#{p}}}:ready:0", setup.namespace)).collect();
    let (setup, partitions) = tokio::task::spawn_blocking(move || {
        let cluster = setup.cluster.as_ref().expect("a cluster");
        for key in &partitions {
            cluster.wait_for_replica_of(key);
        }
        (setup, partitions)
    })
    .await
    .unwrap();
    let mut workers = Workers((0..3).map(|_| setup.worker(&["-c", "8", "--heartbeat-ttl", "2"])).collect());
    wait_for_journal(&setup.journal, 200).await;
    let (setup, killed) = tokio::task::spawn_blocking(move || {
        let mut setup = setup;
        let killed = setup.cluster.as_mut().expect("a cluster").fail_over_owner_of(&partitions[0]);
        (setup, killed)
    })
    .await
    .unwrap();
    let done_at_kill = journal_lines(&setup.journal).len();
    assert!(done_at_kill < 1000, "the primary must die mid-drain ({done_at_kill} done)");
    eprintln!("killed the primary on port {killed} after {done_at_kill} tasks");

    let values = results(&sent).await;
    assert_eq!(values.len(), 1000);
    let mut runs: HashMap<String, usize> = HashMap::new();
    for (tag, _) in journal_lines(&setup.journal) {
        *runs.entry(tag).or_default() += 1;
    }
    assert_eq!(runs.len(), 1000, "every task ran");
    let twice = runs.values().filter(|n| **n > 1).count();
    // At least once: a run whose ack died with the primary runs again; at most those in
    // flight on the three workers.
    assert!(twice <= 24, "{twice} tasks ran more than once");

    let inspect = app.broker().inspect().expect("the Redis broker inspects");
    let stats = inspect.queue_stats("default").await.unwrap();
    assert_eq!((stats.ready, stats.scheduled, stats.in_flight, stats.dead), (0, 0, 0, 0), "{stats:?}");
    for worker in std::mem::take(&mut workers.0) {
        stop(worker);
    }
}
