//! Workflows: callbacks, a chain, a group and a chord.
//!
//! Run with: `cargo run --example workflows` (no server needed: `memory://`).
//! Against Redis: `CELERITY_BROKER_URL=redis://127.0.0.1:6379/0 cargo run --example workflows`.

use std::time::Duration;

use task_core::{App, Error, TaskError, TaskResult, chord, group, task};
use task_redis as _;

/// Downloads a page (pretend): its size in bytes.
#[task]
async fn fetch(url: String) -> TaskResult<u64> {
    Ok(url.len() as u64 * 1000)
}

/// Turns a size into kilobytes.
#[task]
async fn to_kb(bytes: u64) -> TaskResult<f64> {
    Ok(bytes as f64 / 1000.0)
}

/// Formats a number with a label: the label comes from the chain's caller, the number
/// from the step before.
#[task]
fn label(value: f64, unit: String) -> TaskResult<String> {
    Ok(format!("{value:.1} {unit}"))
}

/// A chord's callback: gets every member's result, in member order.
#[task]
async fn total(sizes: Vec<u64>) -> TaskResult<u64> {
    Ok(sizes.iter().sum())
}

/// Fails for good.
#[task(max_retries = 0)]
async fn refuse(bytes: u64) -> TaskResult<u64> {
    Err(TaskError::fatal(format!("{bytes} bytes is too many")))
}

/// Records that something happened (a callback).
#[task]
async fn notify(message: String) -> TaskResult<()> {
    println!("  notify: {message}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let app = App::from_env().await?;
    let worker = app.worker().concurrency(8).spawn();
    let wait = Duration::from_secs(10);

    // Callbacks: sent by the worker when the task ends.
    let page = fetch::signature("https://example.com".into())
        .on_success(notify::signature("the page is fetched".into()))
        .on_failure(notify::signature("the fetch failed".into()))
        .apply_async(&app)
        .await?;
    println!("callbacks: fetched {} bytes", page.get(wait).await?);

    // A chain: each result is the next task's first argument; the compiler checks the types.
    let chain =
        fetch::signature("https://example.org/a".into()).then(to_kb::partial()).then(label::partial("kB".into()));
    println!("chain: {}", chain.apply_async(&app).await?.get(wait).await?);

    // A failed step stops the chain; the chain's result names it.
    let broken = fetch::signature("https://example.org".into()).then(refuse::partial()).then(to_kb::partial());
    match broken.apply_async(&app).await?.get(wait).await {
        Err(Error::TaskFailed { error, .. }) => println!("broken chain: {error}"),
        other => println!("broken chain: unexpected {other:?}"),
    }

    // A group: in parallel, results in order.
    let urls = ["https://a.example", "https://bb.example", "https://ccc.example"];
    let sizes = group(urls.map(|u| fetch::signature(u.into()))).apply_async(&app).await?;
    println!("group: {:?}", sizes.get(wait).await?);

    // A chord: a group whose results all go to one callback, joined without polling.
    let sum = chord((1..=100).map(|i| fetch::signature(format!("https://example.com/{i}"))), total::partial())
        .apply_async(&app)
        .await?;
    println!("chord: the 100 pages weigh {} bytes", sum.get(wait).await?);

    worker.shutdown().await?;
    Ok(())
}
