//! Eager mode: a send runs the task in place, with no worker, through the real path.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use task_core::{App, Error, TaskContext, TaskResult, TaskState, task};

#[task]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

#[task]
fn double(x: i64) -> TaskResult<i64> {
    Ok(x * 2)
}

static FLAKY_RUNS: AtomicU32 = AtomicU32::new(0);

#[task(max_retries = 3)]
async fn flaky(ctx: TaskContext) -> TaskResult<u32> {
    FLAKY_RUNS.fetch_add(1, Ordering::SeqCst);
    if ctx.retries() < 2 {
        return Err(ctx.retry(Duration::from_secs(3600)));
    }
    Ok(ctx.retries())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    item: String,
    #[serde(skip)]
    scratch: u32,
}

#[task]
async fn scratch_of(order: Order) -> TaskResult<u32> {
    Ok(order.scratch)
}

#[task]
async fn broken() -> TaskResult<()> {
    Err(task_core::TaskError::fatal("no"))
}

#[tokio::test]
async fn a_send_runs_the_task_in_place_and_its_result_is_ready() {
    let app = App::builder().eager(true).build().await.unwrap();
    let res = add::delay(&app, 2, 3).await.unwrap();
    assert_eq!(res.state().await.unwrap(), TaskState::Success, "done when delay returns");
    assert_eq!(res.get(Duration::ZERO).await.unwrap(), 5);

    // A countdown is not waited for; a chain and a sync step run too.
    let later = add::signature(1, 1).countdown(Duration::from_secs(3600)).apply_async(&app).await.unwrap();
    assert_eq!(later.get(Duration::ZERO).await.unwrap(), 2);
    let chain = add::signature(1, 2).then(double::partial()).apply_async(&app).await.unwrap();
    assert_eq!(chain.get(Duration::ZERO).await.unwrap(), 6);

    // Retries run at once, up to their limit.
    let retried = flaky::delay(&app).await.unwrap();
    assert_eq!(retried.get(Duration::ZERO).await.unwrap(), 2);
    assert_eq!(FLAKY_RUNS.load(Ordering::SeqCst), 3);

    // The same serialization round trip as through a queue: a skipped field arrives as
    // its default; a failure is a failure.
    let order = Order { item: "tea".into(), scratch: 9 };
    assert_eq!(scratch_of::delay(&app, order).await.unwrap().get(Duration::ZERO).await.unwrap(), 0);
    assert!(matches!(broken::delay(&app).await.unwrap().get(Duration::ZERO).await, Err(Error::TaskFailed { .. })));
}

#[tokio::test]
async fn an_app_that_is_not_eager_leaves_tasks_queued() {
    let app = App::memory();
    assert!(!app.is_eager());
    let res = add::delay(&app, 2, 3).await.unwrap();
    assert_eq!(res.state().await.unwrap(), TaskState::Pending);
}
