//! Periodic tasks: a scheduler (`Beat`) that sends a task at every tick of an interval or
//! a cron schedule. Run as many schedulers as you like (one per worker process, say):
//! each tick is claimed in the broker and sent once.
//!
//! Run with: `cargo run --example periodic` (no server needed: `memory://`; it runs 5 s).
//! Against Redis: `CELERITY_BROKER_URL=redis://127.0.0.1:6379/0 cargo run --example periodic`.

use std::time::Duration;

use task_core::{App, Beat, Error, Missed, Schedule, TaskContext, TaskResult, task};
use task_redis as _;

/// A periodic task: says which tick sent it.
#[task]
async fn report(ctx: TaskContext, what: String) -> TaskResult<()> {
    println!("  {what} (task {})", ctx.id());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let app = App::from_env().await?;
    let worker = app.worker().spawn();

    let beat = Beat::new()
        // Every second, on the second (intervals are aligned to the Unix epoch).
        .entry("report.every-second", Schedule::every(Duration::from_secs(1)), || {
            report::signature("every second".into())
        })
        // Cron with a seconds field, in a time zone: every 2 seconds here.
        .entry("report.cron", Schedule::cron("*/2 * * * * *")?.in_time_zone("Europe/Paris")?, || {
            report::signature("cron */2 s, Paris time".into())
        })
        // Send the latest tick missed while no scheduler ran, once, at start.
        .missed(Missed::RunOnce);
    for (name, task, schedule) in beat.entries() {
        println!("{name}: {task}, {schedule}");
    }

    // Two schedulers on one broker, as in two worker processes: each tick is sent once.
    let first = beat.clone().spawn(&app);
    let second = beat.spawn(&app);
    tokio::time::sleep(Duration::from_secs(5)).await;
    first.shutdown().await?;
    second.shutdown().await?;
    worker.shutdown().await?;
    Ok(())
}
