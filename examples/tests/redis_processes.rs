//! Real worker processes on a real Redis: a worker killed with SIGKILL mid-task, Redis
//! restarted under 10,000 tasks, a task longer than the recovery timeout, the
//! producer/worker example as a user runs it, a chord across processes with one killed,
//! and three `worker --beat` processes sharing one schedule.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use celerity_example_tasks::{journal, journal_all, journal_next};
use task_core::chord;
use test_support::Persistence;

mod support;

use support::{PRODUCER, Setup, journal_lines, results, stop, wait_for_journal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_loses_nothing_and_no_live_worker_runs_a_task_twice() {
    killed_mid_task(Setup::new(Persistence::None)).await;
}

/// The same on a Redis Cluster of three primaries: the queue on one node, the records
/// and indexes spread over all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_on_a_cluster_loses_nothing_either() {
    killed_mid_task(tokio::task::spawn_blocking(|| Setup::on_cluster(3, 0)).await.unwrap()).await;
}

async fn killed_mid_task(setup: Setup) {
    let app = setup.app().await;
    let mut doomed = setup.worker(&["-c", "8", "--heartbeat-ttl", "1"]);
    let survivor = setup.worker(&["-c", "8", "--heartbeat-ttl", "1"]);
    let doomed_pid = doomed.id();

    let sent = app.send_batch((0..1000).map(|i| journal::signature(format!("t{i}"), 20))).await.unwrap();
    wait_for_journal(&setup.journal, 200).await;
    doomed.kill().unwrap(); // SIGKILL, in the middle of its tasks
    doomed.wait().unwrap();

    let values = results(&sent).await;
    assert_eq!(values.len(), 1000);
    let mut runs: HashMap<String, Vec<u32>> = HashMap::new();
    for (tag, pid) in journal_lines(&setup.journal) {
        runs.entry(tag).or_default().push(pid);
    }
    assert_eq!(runs.len(), 1000, "every task ran");
    let survivor_pid = survivor.id();
    let by_survivor = runs.values().filter(|pids| pids.contains(&survivor_pid)).count();
    assert!(by_survivor > 0);
    for (tag, pids) in &runs {
        // A task the killed worker had finished but not yet acknowledged may run once
        // more (at least once); a live worker never runs one twice.
        assert!(pids.len() == 1 || (pids.len() == 2 && pids.contains(&doomed_pid)), "{tag} ran on {pids:?}");
    }
    let doubles = runs.values().filter(|p| p.len() > 1).count();
    assert!(doubles <= 8, "{doubles} tasks ran twice; at most the 8 in flight on the killed worker may");
    stop(survivor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_ten_thousand_tasks_loses_none() {
    let mut setup = Setup::new(Persistence::AppendOnly);
    let app = setup.app().await;
    let workers = [setup.worker(&["-c", "16"]), setup.worker(&["-c", "16"])];

    let sent = app.send_batch((0..10_000).map(|i| journal::signature(format!("r{i}"), 0))).await.unwrap();
    wait_for_journal(&setup.journal, 2_000).await;
    setup.server().stop(); // SIGTERM: Redis syncs its append-only file and exits
    let done_at_stop = journal_lines(&setup.journal).len();
    assert!(done_at_stop < 10_000, "Redis must go away in the middle of the run");
    tokio::time::sleep(Duration::from_millis(500)).await;
    setup.server().restart();

    let values = results(&sent).await;
    assert_eq!(values.len(), 10_000);
    let lines = journal_lines(&setup.journal);
    let mut tags: Vec<&str> = lines.iter().map(|(t, _)| t.as_str()).collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), 10_000, "every task ran");
    assert_eq!(lines.len(), 10_000, "and none ran twice: no worker died, so none was recovered");
    eprintln!("{done_at_stop} of 10000 were done when Redis stopped");
    for worker in workers {
        stop(worker);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_longer_than_the_recovery_timeout_runs_once_on_a_live_worker() {
    let setup = Setup::new(Persistence::None);
    let app = setup.app().await;
    let workers =
        [setup.worker(&["-c", "2", "--heartbeat-ttl", "1"]), setup.worker(&["-c", "2", "--heartbeat-ttl", "1"])];
    let long = journal::delay(&app, "long".into(), 4_000).await.unwrap();
    assert_eq!(results(std::slice::from_ref(&long)).await, ["long"]);
    assert_eq!(journal_lines(&setup.journal).len(), 1, "ran exactly once");
    for worker in workers {
        stop(worker);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_and_worker_processes_of_the_readme() {
    let setup = Setup::new(Persistence::None);
    let workers = [setup.worker(&["-c", "8"]), setup.worker(&["-c", "8"])];
    let out = setup.command(PRODUCER).arg("500").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("reverse(\"olleh\") = hello") && text.contains("all 500 results back"), "{text}");
    let pids: std::collections::HashSet<u32> = journal_lines(&setup.journal).into_iter().map(|(_, p)| p).collect();
    assert_eq!(pids.len(), 2, "both workers took work");
    for worker in workers {
        stop(worker);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_unknown_tasks_pushed_with_redis_cli_reach_the_dead_letters_and_the_worker_goes_on() {
    let mut setup = Setup::new(Persistence::None);
    let app = setup.app().await;
    let worker = setup.worker(&["-c", "2"]);
    let ready = format!("{}:{{default}}:ready:0", setup.namespace);
    // Raw bytes, no header, not MessagePack.
    setup.server().cli(&["RPUSH", &ready, "\u{1}\u{2} garbage"]);
    // A well-formed envelope for a task nobody registered, with the documented
    // 4-byte header, piped to `redis-cli -x` as an operator would.
    let envelope = task_core::Envelope::new("billing.unknown", empty_args(), "default");
    let mut entry = b"0000".to_vec();
    entry.extend(envelope.encode().unwrap());
    let mut cli = Command::new("redis-cli")
        .args(["-p", &setup.server().port().to_string(), "-x", "RPUSH", &ready])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(cli.stdin.as_mut().unwrap(), &entry).unwrap();
    drop(cli.stdin.take());
    assert!(cli.wait().unwrap().success());

    let err = app.result::<()>(envelope.id.clone()).get(Duration::from_secs(30)).await.unwrap_err();
    assert!(err.to_string().contains("unknown task `billing.unknown`"), "{err}");
    let inspect = app.broker().inspect().unwrap();
    let start = Instant::now();
    let dead = loop {
        let dead = inspect.dead_letters(10).await.unwrap();
        if dead.len() >= 2 || start.elapsed() > Duration::from_secs(30) {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(dead.iter().any(|d| d.reason.starts_with("undecodable message in queue `default`")), "{dead:?}");
    assert!(dead.iter().any(|d| d.reason.starts_with("unknown task `billing.unknown`")), "{dead:?}");
    // The worker process is still there and still working.
    let after = journal::delay(&app, "after".into(), 0).await.unwrap();
    assert_eq!(results(std::slice::from_ref(&after)).await, ["after"]);
    stop(worker);
}

fn empty_args() -> Vec<u8> {
    // `{}`: an empty MessagePack map of arguments.
    vec![0x80]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chord_of_a_thousand_and_chains_survive_a_killed_worker_and_call_back_once() {
    let setup = Setup::new(Persistence::None);
    let app = setup.app().await;
    let mut doomed = setup.worker(&["-c", "8", "--heartbeat-ttl", "1"]);
    let others =
        [setup.worker(&["-c", "8", "--heartbeat-ttl", "1"]), setup.worker(&["-c", "8", "--heartbeat-ttl", "1"])];

    let members = (0..1000).map(|i| journal::signature(format!("m{i}"), 10));
    let res = chord(members, journal_all::partial()).apply_async(&app).await.unwrap();
    let mut chains = Vec::new();
    for i in 0..300 {
        chains.push(
            journal::signature(format!("c{i}"), 10).then(journal_next::partial()).apply_async(&app).await.unwrap(),
        );
    }
    wait_for_journal(&setup.journal, 200).await;
    doomed.kill().unwrap(); // SIGKILL, with members in flight
    doomed.wait().unwrap();

    assert_eq!(res.get(Duration::from_secs(120)).await.unwrap(), 1000, "the callback got every result");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = journal_lines(&setup.journal);
    let callbacks: Vec<&String> = lines.iter().map(|(tag, _)| tag).filter(|t| t.starts_with("chord:")).collect();
    assert_eq!(callbacks, ["chord:1000"], "the callback ran once, with 1,000 results");
    let mut members: Vec<&String> = lines.iter().map(|(tag, _)| tag).filter(|t| t.starts_with('m')).collect();
    members.sort();
    members.dedup();
    assert_eq!(members.len(), 1000, "every member ran");
    for chain in &chains {
        assert!(chain.get(Duration::from_secs(60)).await.unwrap().starts_with("next:c"));
    }
    let lines = journal_lines(&setup.journal);
    let mut seconds: Vec<&String> = lines.iter().map(|(tag, _)| tag).filter(|t| t.starts_with("next:")).collect();
    assert_eq!(seconds.len(), 300, "each chain's second step ran once");
    seconds.sort();
    seconds.dedup();
    assert_eq!(seconds.len(), 300);
    for other in others {
        stop(other);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_with_beat_send_each_tick_once() {
    let setup = Setup::new(Persistence::None);
    let workers: Vec<Child> = (0..3).map(|_| setup.worker(&["-c", "2", "--beat"])).collect();
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    for worker in workers {
        stop(worker);
    }
    let ticks: Vec<String> =
        journal_lines(&setup.journal).into_iter().map(|(tag, _)| tag).filter(|t| t.starts_with("tick:")).collect();
    let mut unique = ticks.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ticks.len(), "a tick was sent twice: {ticks:?}");
    assert!((8..=11).contains(&ticks.len()), "10 s of a 1 s schedule on 3 schedulers sent {} ticks", ticks.len());
}
