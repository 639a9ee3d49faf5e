//! The quickstart: define tasks, run a worker pool, enqueue, read results.
//!
//! Run with: `cargo run --example quickstart` (no server needed: `memory://`).
//! Against Redis: `CELERITY_BROKER_URL=redis://127.0.0.1:6379/0 cargo run --example quickstart`.

use std::time::Duration;

use task_core::{App, Error, TaskContext, TaskError, TaskResult, task};
// The redis:// driver registers itself when linked.
use task_redis as _;

/// An async task.
#[task]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

/// A sync task: runs on the blocking pool, so it may block or burn CPU.
#[task(queue = "text")]
fn word_count(text: String) -> TaskResult<usize> {
    Ok(text.split_whitespace().count())
}

/// Fails twice, then succeeds: retried with exponential back-off and jitter.
#[task(max_retries = 3)]
async fn flaky_fetch(ctx: TaskContext, url: String) -> TaskResult<String> {
    if ctx.attempt() < 3 {
        return Err(TaskError::new(format!("connection reset fetching {url} (attempt {})", ctx.attempt())));
    }
    Ok(format!("200 OK from {url} on attempt {}", ctx.attempt()))
}

/// Always fails: ends FAILURE, and `get` reports its error.
#[task(max_retries = 0)]
async fn divide(x: i64, y: i64) -> TaskResult<i64> {
    x.checked_div(y).ok_or_else(|| TaskError::fatal("division by zero"))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().with_env_filter("info").with_target(false).init();
    let app = App::from_env().await?;
    println!("broker: {}  results: {}", app.broker_url(), app.backend_url());

    // A worker pool in this process; in production it runs in its own processes.
    let worker = app.worker().concurrency(4).queues(["default", "text"]).spawn();

    let sum = add::delay(&app, 1, 2).await?;
    let words =
        word_count::signature("the quick brown fox".into()).countdown(Duration::from_secs(1)).apply_async(&app).await?;
    let fetched = flaky_fetch::delay(&app, "https://example.com".into()).await?;
    let failed = divide::delay(&app, 1, 0).await?;
    println!("sent 4 tasks; the handler could answer now");

    let wait = Duration::from_secs(30);
    println!("add(1, 2)                 = {}", sum.get(wait).await?);
    println!("word_count(..) after 1 s  = {}", words.get(wait).await?);
    println!("flaky_fetch(..)           = {}", fetched.get(wait).await?);
    match failed.get(wait).await {
        Err(Error::TaskFailed { error, .. }) => {
            println!("divide(1, 0)              failed: {error} (state {})", failed.state().await?);
        }
        other => println!("divide(1, 0)              unexpected: {other:?}"),
    }

    let report = worker.shutdown().await?; // graceful: running tasks finish
    println!("worker stopped: {} succeeded, {} failed, {} retried", report.succeeded, report.failed, report.retried);
    Ok(())
}
