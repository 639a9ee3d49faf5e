//! Celery interop with real processes: Python's Celery sends 40 tasks to the `celery`
//! queue, two Rust worker processes (the demo worker, `CELERITY_CELERY_QUEUES=celery`)
//! run them, one is killed with SIGKILL mid-run, and Python's `get()` still returns every
//! result: a message the killed worker held goes back to kombu's list and runs again.

use std::collections::HashMap;

use test_support::Persistence;

mod support;

use support::{Setup, Workers, journal_lines, stop, wait_for_journal};
use test_support::run_celery;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_worker_killed_mid_task_loses_no_celery_task() {
    let setup = Setup::new(Persistence::None).with_env(task_redis::ENV_CELERY_QUEUES, "celery");
    let url = setup.url.clone();
    let mut workers = Workers(
        (0..2).map(|_| setup.worker(&["-Q", "celery", "-c", "4", "--heartbeat-ttl", "2", "--prefetch", "4"])).collect(),
    );
    let sent = run_celery(
        &url,
        "ids = [app.send_task('proj.tasks.journal', args=[f'p{i}', 300]).id for i in range(40)]\nprint(' '.join(ids))",
    );
    wait_for_journal(&setup.journal, 4).await;
    let doomed = workers.0.remove(0);
    let doomed_pid = doomed.id();
    let mut doomed = doomed;
    doomed.kill().unwrap(); // SIGKILL, with tasks in hand
    doomed.wait().unwrap();
    let ids: Vec<&str> = sent.split_whitespace().collect();
    assert_eq!(ids.len(), 40);
    let code = format!(
        "from celery.result import AsyncResult\n\
         print(' '.join(AsyncResult(i, app=app).get(timeout=60) for i in {ids:?}))"
    );
    let got = run_celery(&url, &code);
    let expected: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    assert_eq!(got.split_whitespace().collect::<Vec<_>>(), expected, "every result, in Python");
    let mut runs: HashMap<String, Vec<u32>> = HashMap::new();
    for (tag, pid) in journal_lines(&setup.journal) {
        runs.entry(tag).or_default().push(pid);
    }
    assert_eq!(runs.len(), 40, "every task ran");
    for (tag, pids) in &runs {
        // At least once: a run the killed worker finished but had not acked runs again;
        // the live worker runs each once.
        assert!(pids.len() == 1 || (pids.len() == 2 && pids.contains(&doomed_pid)), "{tag} ran on {pids:?}");
    }
    for worker in std::mem::take(&mut workers.0) {
        stop(worker);
    }
}
