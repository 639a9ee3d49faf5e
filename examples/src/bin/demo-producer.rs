//! A producer process: sends tasks to the workers (`demo-worker`) through Redis and
//! waits for their results. The seed of running workers on other machines.
//!
//! Run with (Redis on 127.0.0.1:6379):
//!   CELERITY_BROKER_URL=redis://127.0.0.1:6379/0 cargo run -p celerity-examples --bin demo-worker -- worker -c 8
//!   CELERITY_BROKER_URL=redis://127.0.0.1:6379/0 cargo run -p celerity-examples --bin demo-producer -- 1000

use std::time::{Duration, Instant};

use celerity_example_tasks::{journal, reverse};
// Linked for the redis:// driver.
use task_redis as _;

#[tokio::main]
async fn main() -> Result<(), task_core::Error> {
    let count: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100);
    let app = task_core::App::from_env().await?;
    println!("broker: {}", app.broker_url());

    let start = Instant::now();
    let hello = reverse::delay(&app, "olleh".into()).await?;
    let results = app.send_batch((0..count).map(|i| journal::signature(format!("job-{i}"), 0))).await?;
    println!("sent {} tasks in {:?}", count + 1, start.elapsed());

    println!("reverse(\"olleh\") = {}", hello.get(Duration::from_secs(30)).await?);
    for r in &results {
        r.get(Duration::from_secs(60)).await?;
    }
    println!("all {count} results back in {:?}", start.elapsed());
    Ok(())
}
