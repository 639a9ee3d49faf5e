//! The process pool (`worker --pool process`) as an operator runs it, on a real Redis:
//! a stuck plain `fn` and a stuck `async fn` killed at their hard limit and failed
//! once, a child killed with SIGKILL replaced and its task run again at once, children
//! recycled after N tasks or over their memory, a task that ends its own process, and
//! remote control's shutdown stopping the whole pool. (Linux: the memory limit reads
//! `/proc`.)
#![cfg(target_os = "linux")]

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

use celerity_example_tasks::{exit_process, journal, leak, stuck_async, stuck_sync};
use task_core::{App, AsyncResult, TaskState};
use test_support::Persistence;

use support::{Setup, journal_lines, stop, wait_for_journal};

/// A pool of `n` children with a heartbeat long enough that only the supervisor can
/// have returned a dead child's messages within a test.
fn pool(setup: &Setup, n: &str, more: &[&str]) -> Pool {
    let mut args = vec!["--pool", "process", "-c", n, "--heartbeat-ttl", "300", "--grace-period", "5"];
    args.extend_from_slice(more);
    Pool(Some(setup.worker(&args)))
}

/// A running pool's supervisor, stopped (SIGTERM) when dropped, also by a failed test.
struct Pool(Option<Child>);

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            stop(child);
        }
    }
}

/// The pids of the pool's children listed in the worker directory, once there are `n`.
async fn children(app: &App, n: usize) -> HashSet<u32> {
    children_without(app, n, &HashSet::new()).await
}

/// The pids of the pool's children, once there are `n` and none of them is in `gone`.
async fn children_without(app: &App, n: usize, gone: &HashSet<u32>) -> HashSet<u32> {
    let start = Instant::now();
    loop {
        let listed = app.broker().directory().expect("Redis lists its workers").workers().await.unwrap();
        let pids: HashSet<u32> = listed.iter().map(|w| w.pid).collect();
        if pids.len() == n && pids.is_disjoint(gone) {
            return pids;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the pool never listed {n} children: {listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The task's record once it is final.
async fn final_state<T>(result: &AsyncResult<T>) -> task_core::TaskMeta {
    let start = Instant::now();
    loop {
        if let Some(meta) = result.info().await.unwrap()
            && meta.state.is_ready()
        {
            return meta;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "task {} never ended", result.id());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Once `result`'s task is `STARTED`: running on a child.
async fn started<T>(result: &AsyncResult<T>) {
    let start = Instant::now();
    while result.state().await.unwrap() != TaskState::Started {
        assert!(start.elapsed() < Duration::from_secs(30), "the task never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many times each tag is in the journal, and from which pids.
fn runs(setup: &Setup) -> HashMap<String, Vec<u32>> {
    let mut runs: HashMap<String, Vec<u32>> = HashMap::new();
    for (tag, pid) in journal_lines(&setup.journal) {
        runs.entry(tag).or_default().push(pid);
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_fn_and_a_stuck_async_loop_are_killed_at_their_hard_limit_and_fail_once() {
    let setup = Setup::new(Persistence::None);
    let app = setup.app().await;
    let worker = pool(&setup, "2", &[]);
    let before = children(&app, 2).await;

    let limit = Duration::from_secs(1);
    let sync = stuck_sync::signature("sync".into(), 600).time_limit(limit).apply_async(&app).await.unwrap();
    let spin = stuck_async::signature("spin".into(), 600).time_limit(limit).apply_async(&app).await.unwrap();
    let others = app.send_batch((0..20).map(|i| journal::signature(format!("j{i}"), 10))).await.unwrap();

    for stuck in [&sync, &spin] {
        let meta = final_state(stuck).await;
        assert_eq!(meta.state, TaskState::Failure, "{meta:?}");
        let error = meta.error.unwrap_or_default();
        assert!(error.contains("time limit exceeded"), "{error}");
    }
    for other in &others {
        assert_eq!(final_state(other).await.state, TaskState::Success);
    }
    // Both killed children were replaced by new ones.
    children_without(&app, 2, &before).await;
    let runs = runs(&setup);
    for tag in ["sync", "spin"] {
        assert_eq!(runs.get(&format!("start:{tag}")).map(Vec::len), Some(1), "{tag} started once: {runs:?}");
        assert!(!runs.contains_key(tag), "{tag} never got to its end: {runs:?}");
    }
    // The stuck tasks' messages are gone: nothing is left to run them a second time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inspect = app.broker().inspect().unwrap();
    let stats = inspect.queue_stats("default").await.unwrap();
    assert_eq!((stats.ready, stats.in_flight, stats.dead), (0, 0, 0), "{stats:?}");
    assert_eq!(self::runs(&setup).get("start:sync").map(Vec::len), Some(1));
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_killed_mid_task_is_replaced_and_its_task_runs_again_at_once() {
    let setup = Setup::new(Persistence::None);
    let app = setup.app().await;
    let worker = pool(&setup, "1", &[]);
    let before = children(&app, 1).await;

    let task = journal::signature("victim".into(), 3_000).apply_async(&app).await.unwrap();
    started(&task).await;
    let victim = *before.iter().next().unwrap();
    let killed = std::process::Command::new("kill").args(["-KILL", &victim.to_string()]).status().unwrap();
    assert!(killed.success());

    // The heartbeat lives 300 s: only the supervisor can have given the message back.
    assert_eq!(task.get(Duration::from_secs(60)).await.unwrap(), "victim");
    let after = children_without(&app, 1, &before).await;
    let runs = runs(&setup);
    assert_eq!(runs.get("victim"), Some(&after.iter().copied().collect::<Vec<_>>()), "{runs:?}");
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_are_recycled_after_their_tasks_and_over_their_memory() {
    let setup = Setup::new(Persistence::None);
    let app = setup.app().await;
    let worker = pool(&setup, "1", &["--max-tasks-per-child", "3"]);
    for i in 0..9 {
        // One at a time: each task's child is known.
        journal::signature(format!("r{i}"), 0)
            .apply_async(&app)
            .await
            .unwrap()
            .get(Duration::from_secs(60))
            .await
            .unwrap();
    }
    wait_for_journal(&setup.journal, 9).await;
    let lines = journal_lines(&setup.journal);
    let mut by_pid: HashMap<u32, usize> = HashMap::new();
    for (_, pid) in &lines {
        *by_pid.entry(*pid).or_default() += 1;
    }
    assert_eq!(by_pid.len(), 3, "three children of three tasks each: {lines:?}");
    assert!(by_pid.values().all(|n| *n == 3), "{by_pid:?}");
    drop(worker);

    // Over 200 MiB after a task: the child is replaced; a small task does not do it.
    let worker = pool(&setup, "1", &["--max-memory-per-child", "204800"]);
    let mut pids = Vec::new();
    for kib in [1, 1, 256 * 1024, 1, 256 * 1024, 1] {
        pids.push(leak::delay(&app, kib).await.unwrap().get(Duration::from_secs(60)).await.unwrap());
    }
    assert_eq!(pids[0], pids[1], "small tasks stay in their child: {pids:?}");
    assert_eq!(pids[1], pids[2], "the task that goes over completes in its child: {pids:?}");
    assert_ne!(pids[2], pids[3], "then the child is replaced: {pids:?}");
    assert_ne!(pids[4], pids[5], "{pids:?}");
    assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 3, "{pids:?}");
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_ends_its_process_takes_one_child_and_is_dead_lettered_after_the_limit() {
    let setup = Setup::new(Persistence::None);
    let app = setup.app().await;
    let worker = pool(&setup, "2", &[]);
    let fatal = exit_process::delay(&app).await.unwrap();
    let fine = app.send_batch((0..10).map(|i| journal::signature(format!("f{i}"), 0))).await.unwrap();

    let meta = final_state(&fatal).await;
    assert_eq!(meta.state, TaskState::Failure, "{meta:?}");
    let error = meta.error.unwrap_or_default();
    assert!(error.contains("delivered"), "dead-lettered for its deliveries: {error}");
    for task in &fine {
        assert_eq!(final_state(task).await.state, TaskState::Success);
    }
    let dead = app.broker().inspect().unwrap().dead_letters(100).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let exits = runs(&setup).get("exit").map_or(0, Vec::len);
    assert!(exits >= 2, "run once per delivery, on fresh children: {exits}");
    children(&app, 2).await;
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_shutdown_stops_the_whole_pool() {
    let setup = Setup::new(Persistence::None);
    let app = setup.app().await;
    let mut worker = pool(&setup, "2", &[]);
    let supervisor = worker.0.as_mut().unwrap();
    children(&app, 2).await;
    let control = app.backend().remote_control().expect("Redis carries remote control");
    // A child runs one task at a time: the pool's size is the supervisor's -c.
    let answers = control.ask("pool-grow 2", 2, Duration::from_secs(10)).await.unwrap();
    assert_eq!(answers.len(), 2, "each child answers");
    for answer in answers {
        let answer: HashMap<String, String> = task_core::codec::decode(&answer, "an answer").unwrap();
        assert!(answer.get("error").is_some_and(|e| e.contains("process pool")), "{answer:?}");
    }
    let answers = control.ask("shutdown", 2, Duration::from_secs(10)).await.unwrap();
    assert_eq!(answers.len(), 2, "each child answers");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = supervisor.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the supervisor never stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    worker.0 = None;
    assert!(app.broker().directory().unwrap().workers().await.unwrap().is_empty(), "no child is left listed");
}

/// Gone, or a zombie no one reaped (its parent was killed).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_of_a_killed_supervisor_stop_by_themselves_even_a_stuck_one() {
    let setup = Setup::new(Persistence::None);
    let app = setup.app().await;
    let mut worker = Pool(Some(setup.worker(&["--pool", "process", "-c", "2", "--grace-period", "1"])));
    let pids = children(&app, 2).await;
    // One child stuck in a loop that never yields and has no time limit.
    let stuck = stuck_async::delay(&app, "orphan".into(), 600).await.unwrap();
    started(&stuck).await;
    let mut supervisor = worker.0.take().unwrap();
    supervisor.kill().unwrap(); // SIGKILL: no one is left to stop the children
    supervisor.wait().unwrap();
    let start = Instant::now();
    while !pids.iter().all(|pid| gone(*pid)) {
        assert!(start.elapsed() < Duration::from_secs(60), "orphaned children still run: {pids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscale_grows_the_children_under_a_burst_and_retires_them_when_idle() {
    let setup = Setup::new(Persistence::None);
    let app = setup.app().await;
    let worker = pool(&setup, "1", &["--autoscale", "3,1", "--autoscale-keepalive", "1"]);
    let first = children(&app, 1).await;
    let burst = app.send_batch((0..12).map(|i| journal::signature(format!("b{i}"), 500))).await.unwrap();
    // Grown to the maximum while the backlog waits.
    let grown = children(&app, 3).await;
    assert!(first.is_subset(&grown), "the first child stays: {first:?} in {grown:?}");
    for task in &burst {
        assert_eq!(final_state(task).await.state, TaskState::Success);
    }
    let by_pid: HashSet<u32> = journal_lines(&setup.journal).into_iter().map(|(_, pid)| pid).collect();
    assert!(by_pid.len() >= 2, "the burst ran on several children: {by_pid:?}");
    // Idle past the keepalive: given back one at a time, down to the minimum, not replaced.
    let left = children(&app, 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(children(&app, 1).await, left, "the last child stays, and retired ones are not replaced");
    drop(worker);
}
