//! The task-control properties of a hardened worker: huge durations, a revoke that is
//! final, a message whose workers all die, a busy worker, a purge and its locks. Run by
//! `control_tests!` with the rest of the control suite, on `memory://` and on Redis.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use task_core::broker::ConsumerId;
use task_core::{Envelope, Error, TaskContext, TaskError, TaskResult, TaskState, group, task};

use crate::control::{AppHarness, WAIT, add};

#[task(name = "celerity.suite.never_again", max_retries = 1)]
async fn never_again(ctx: TaskContext) -> TaskResult<()> {
    Err(ctx.retry(Duration::MAX))
}

/// `Duration::MAX` (or any huge value) as a wait, a countdown, an expiry or a retry's
/// delay means "very far", and never overflows a clock: nothing panics, the worker (whose
/// slot ran the retry) goes on with the next task.
pub async fn huge_durations_saturate_and_never_panic(h: AppHarness) {
    let app = h.app().await;
    let worker = app.worker().concurrency(1).spawn();
    let sum = add::delay(&app, 2, 3).await.unwrap();
    assert_eq!(sum.get(Duration::MAX).await.unwrap(), 5, "a wait of Duration::MAX ends when the task does");
    assert_eq!(
        group(vec![add::signature(1, 1)]).apply_async(&app).await.unwrap().get(Duration::MAX).await.unwrap(),
        [2]
    );

    let far = add::signature(1, 2).countdown(Duration::MAX).expires(Duration::MAX).apply_async(&app).await.unwrap();
    let retried = never_again::delay(&app).await.unwrap();
    let start = Instant::now();
    while retried.state().await.unwrap() != TaskState::Retry {
        assert!(start.elapsed() < WAIT, "the retry requested for Duration::MAX is stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(far.state().await.unwrap(), TaskState::Pending, "a countdown of Duration::MAX waits");
    let next = add::delay(&app, 4, 4).await.unwrap();
    assert_eq!(next.get(WAIT).await.unwrap(), 8, "the worker goes on after a retry far ahead");
    worker.shutdown().await.unwrap();
}

static PERSISTENT_GO: AtomicBool = AtomicBool::new(false);
static PERSISTENT_LATE: Mutex<Option<Result<(), String>>> = Mutex::new(None);

#[task(name = "celerity.suite.persistent")]
async fn persistent(ctx: TaskContext) -> TaskResult<u32> {
    ctx.set_progress(&1u32).await.map_err(TaskError::new)?;
    while !PERSISTENT_GO.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let late = ctx.set_progress(&2u32).await.map_err(|e| e.to_string());
    *PERSISTENT_LATE.lock().unwrap() = Some(late);
    Ok(7)
}

/// A revoke without terminate lets the running task finish, but its record stays
/// REVOKED: the run's later progress is refused (the task sees the error) and its
/// success does not land; `ready()` never goes back to false.
pub async fn a_revoke_is_final_for_the_run_it_revoked(h: AppHarness) {
    let app = h.app().await;
    let worker = app.worker().concurrency(1).spawn();
    let res = persistent::delay(&app).await.unwrap();
    let start = Instant::now();
    while res.state().await.unwrap() != TaskState::Progress {
        assert!(start.elapsed() < WAIT, "the task never reported progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.revoke(res.id(), false).await.unwrap();
    assert!(matches!(res.get(WAIT).await, Err(Error::TaskRevoked { .. })), "get() says revoked");
    assert!(res.ready().await.unwrap());
    PERSISTENT_GO.store(true, Ordering::SeqCst);
    let start = Instant::now();
    while PERSISTENT_LATE.lock().unwrap().is_none() {
        assert!(start.elapsed() < WAIT, "the task never went on");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let late = PERSISTENT_LATE.lock().unwrap().clone().unwrap();
    assert!(late.is_err_and(|e| e.contains("refused")), "a late progress is refused");
    let report = worker.shutdown().await.unwrap();
    assert_eq!(report.succeeded, 1, "the run ended: {report:?}");
    assert!(report.refused >= 1, "the refused write is counted: {report:?}");
    assert_eq!(res.state().await.unwrap(), TaskState::Revoked, "the success did not land");
    assert!(res.ready().await.unwrap());
}

#[task(name = "celerity.suite.deadly", unique_for = 600)]
async fn deadly(key: String) -> TaskResult<String> {
    Ok(key)
}

#[task(name = "celerity.suite.after_deadly")]
async fn after_deadly(key: String) -> TaskResult<String> {
    Ok(key)
}

/// A message whose every worker dies while holding it goes to the dead letters at
/// recovery, and its task ends there too: `FAILURE` with the reason (a waiter learns
/// it at once), the rest of its chain failed, its uniqueness lock given back.
pub async fn a_message_whose_workers_all_die_ends_its_task(h: AppHarness) {
    let app = h.app().await;
    let queue = format!("deadly-{}", &task_core::TaskId::new().as_str()[..8]);
    let key = queue.clone();
    let chain = deadly::signature(key.clone()).queue(&queue).then(after_deadly::partial());
    let last = chain.apply_async(&app).await.unwrap();
    // A worker on another queue: it runs recovery for every queue, and never takes ours.
    let recoverer = app.worker().queues(["elsewhere"]).heartbeat_ttl(Duration::from_millis(300)).spawn();
    let queues = [queue.clone()];
    let start = Instant::now();
    let mut deliveries = 0;
    'delivering: loop {
        // A worker that takes the message and dies: alive while it waits for it (its
        // heartbeat renewed), then silent.
        let dying = ConsumerId::new();
        let waiting = Instant::now();
        loop {
            app.broker().heartbeat(&dying, Duration::from_millis(150)).await.unwrap();
            let got = app.broker().fetch(&dying, &queues, 1, Duration::from_millis(50)).await.unwrap();
            if !got.is_empty() {
                break;
            }
            if waiting.elapsed() > Duration::from_secs(3) {
                break 'delivering; // not back in 3 s: buried
            }
        }
        deliveries += 1;
        assert!(start.elapsed() < WAIT, "the message came back {deliveries} times and was never buried");
    }
    assert!(deliveries >= 2, "delivered {deliveries} times");
    match last.get(WAIT).await {
        Err(Error::TaskFailed { error, .. }) => {
            assert!(error.contains("chain step 1 of 2") && error.contains("delivered"), "{error}");
        }
        other => panic!("the chain's last step should fail, naming the first: {other:?}"),
    }
    let inspect = app.broker().inspect().unwrap();
    let letters = inspect.dead_letters(1000).await.unwrap();
    let letter = letters.iter().find(|d| d.queue == queue).expect("the message is a dead letter");
    let first = Envelope::decode(&letter.payload).unwrap().id;
    let record = app.backend().get(&first).await.unwrap().expect("the first step has a record");
    assert_eq!(record.state, TaskState::Failure, "{record:?}");
    assert!(record.error.as_deref().is_some_and(|e| e.contains("delivered")), "{record:?}");
    // Its lock is free: the same call is sent again, not answered with the dead twin.
    let again = deadly::signature(key).queue(&queue).apply_async(&app).await.unwrap();
    assert_ne!(again.id(), &first, "the uniqueness lock of the buried task was given back");
    recoverer.shutdown().await.unwrap();
}

static HOLDING: AtomicBool = AtomicBool::new(false);
static RELEASE: AtomicBool = AtomicBool::new(false);

#[task(name = "celerity.suite.holding")]
async fn holding() -> TaskResult<()> {
    HOLDING.store(true, Ordering::SeqCst);
    while !RELEASE.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A worker whose every slot is taken does not fetch, so its last fetch ages: it says
/// it is saturated, apart from a worker that cannot reach its queues; and stops saying
/// so once a slot is free.
pub async fn a_busy_worker_says_so(h: AppHarness) {
    let app = h.app().await;
    let worker = app.worker().concurrency(1).prefetch(1).heartbeat_ttl(Duration::from_millis(300)).spawn();
    let directory = app.broker().directory().expect("the suite needs a worker directory");
    let mine = |workers: Vec<task_core::capability::WorkerInfo>, id: &ConsumerId| {
        workers.into_iter().find(|w| w.id == id.as_str())
    };
    let busy = holding::delay(&app).await.unwrap();
    let start = Instant::now();
    loop {
        let me = mine(directory.workers().await.unwrap(), worker.id());
        if HOLDING.load(Ordering::SeqCst) && me.as_ref().is_some_and(|w| w.saturated) {
            break;
        }
        assert!(start.elapsed() < WAIT, "the busy worker never said it is saturated: {me:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    RELEASE.store(true, Ordering::SeqCst);
    busy.get(WAIT).await.unwrap();
    let start = Instant::now();
    while mine(directory.workers().await.unwrap(), worker.id()).is_some_and(|w| w.saturated) {
        assert!(start.elapsed() < WAIT, "the worker still says it is saturated with a free slot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await.unwrap();
}

/// A purged task will never run: its uniqueness lock goes with it, so the same call
/// made after the purge is sent, not answered with the purged twin.
pub async fn purging_a_queue_gives_back_its_tasks_uniqueness_locks(h: AppHarness) {
    let app = h.app().await;
    let queue = format!("purged-{}", &task_core::TaskId::new().as_str()[..8]);
    let key = queue.clone();
    let ready = deadly::signature(key.clone()).queue(&queue).apply_async(&app).await.unwrap();
    let later = deadly::signature(format!("{key}-later"))
        .queue(&queue)
        .countdown(Duration::from_secs(600))
        .apply_async(&app)
        .await
        .unwrap();
    let twin = deadly::signature(key.clone()).queue(&queue).apply_async(&app).await.unwrap();
    assert_eq!(twin.id(), ready.id(), "a pending twin answers before the purge");
    let purged = app.broker().inspect().unwrap().purge(&queue).await.unwrap();
    assert_eq!(purged, 2);
    let again = deadly::signature(key).queue(&queue).apply_async(&app).await.unwrap();
    assert_ne!(again.id(), ready.id(), "the lock of the purged ready task was given back");
    let again_later = deadly::signature(format!("{}-later", queue)).queue(&queue).apply_async(&app).await.unwrap();
    assert_ne!(again_later.id(), later.id(), "and that of the purged scheduled task");
}
