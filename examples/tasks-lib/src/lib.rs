//! Tasks that live in a library crate.
//!
//! A worker binary that depends on this crate runs these tasks with no list written
//! by hand: `#[task]` registers each one at link time. Make sure the crate is linked
//! (`use celerity_example_tasks as _;` if you call nothing from it).

use std::io::Write;
use std::time::Duration;

use task_core::{TaskContext, TaskResult, task};

/// Reverses a text.
#[task]
pub async fn reverse(text: String) -> TaskResult<String> {
    Ok(text.chars().rev().collect())
}

/// Pretends to send an e-mail (a sync task: runs on the blocking pool).
#[task(name = "emails.send", queue = "emails", max_retries = 5)]
pub fn send_email(to: String, subject: String) -> TaskResult<String> {
    if !to.contains('@') {
        return Err(task_core::TaskError::fatal(format!("`{to}` is not an e-mail address")));
    }
    Ok(format!("sent `{subject}` to {to}"))
}

/// Sleeps, reporting progress as it goes.
#[task]
pub async fn slow_count(ctx: TaskContext, to: u32, step_ms: u64) -> TaskResult<u32> {
    for i in 1..=to {
        tokio::time::sleep(Duration::from_millis(step_ms)).await;
        ctx.set_progress(&(i, to)).await?;
    }
    Ok(to)
}

/// Works for `ms` milliseconds, then appends `tag pid` to the file named by
/// `CELERITY_JOURNAL` (when set): a record of every completed run, across processes,
/// that tests read to count how often each task ran.
#[task]
pub async fn journal(tag: String, ms: u64) -> TaskResult<String> {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Ok(path) = std::env::var("CELERITY_JOURNAL") {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        // One write of one short line: appends from several processes do not interleave.
        file.write_all(format!("{tag} {}\n", std::process::id()).as_bytes())?;
    }
    Ok(tag)
}

/// A chord's callback: gets every member's tag, journals `chord:<count>`, returns the count.
#[task]
pub async fn journal_all(tags: Vec<String>) -> TaskResult<usize> {
    journal(format!("chord:{}", tags.len()), 0).await?;
    Ok(tags.len())
}

/// A periodic task: journals `tick:<its task id>` (the id is derived from the tick, so a
/// tick sent twice would show up as two equal lines).
#[task]
pub async fn journal_tick(ctx: TaskContext) -> TaskResult<()> {
    journal(format!("tick:{}", ctx.id()), 0).await?;
    Ok(())
}

/// The periodic entries of the demo worker (`demo-worker worker --beat`): `journal_tick`
/// every `CELERITY_DEMO_TICK_SECS` seconds (default 5).
pub fn demo_beat() -> task_core::Beat {
    let secs = std::env::var("CELERITY_DEMO_TICK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    task_core::Beat::new().entry(
        "demo.tick",
        task_core::Schedule::every(Duration::from_secs(secs)),
        journal_tick::signature,
    )
}

/// A chain's second step: journals `next:<what the first step returned>`.
#[task]
pub async fn journal_next(previous: String) -> TaskResult<String> {
    journal(format!("next:{previous}"), 0).await
}
