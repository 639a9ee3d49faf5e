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
    write_journal(&tag)?;
    Ok(tag)
}

/// The same under a Celery name, for Python's `app.send_task("proj.tasks.journal",
/// args=[tag, ms])` (the Celery interop tests).
#[task(name = "proj.tasks.journal")]
pub async fn celery_journal(tag: String, ms: u64) -> TaskResult<String> {
    journal(tag, ms).await
}

/// Appends `tag pid` to the `CELERITY_JOURNAL` file, if set.
fn write_journal(tag: &str) -> std::io::Result<()> {
    if let Ok(path) = std::env::var("CELERITY_JOURNAL") {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        // One write of one short line: appends from several processes do not interleave.
        file.write_all(format!("{tag} {}\n", std::process::id()).as_bytes())?;
    }
    Ok(())
}

/// A plain `fn` stuck for `secs`: journals `start:<tag>`, sleeps on its thread (no
/// time limit can stop it in a thread pool), then journals `<tag>`. Give it a time
/// limit below `secs` to see the process pool stop it.
#[task]
pub fn stuck_sync(tag: String, secs: u64) -> TaskResult<String> {
    write_journal(&format!("start:{tag}"))?;
    std::thread::sleep(Duration::from_secs(secs));
    write_journal(&tag)?;
    Ok(tag)
}

/// An `async fn` that never yields for `secs` (a busy loop with no `.await`: nothing
/// on its runtime thread can stop it): journals `start:<tag>`, then `<tag>` at the end.
#[task]
pub async fn stuck_async(tag: String, secs: u64) -> TaskResult<String> {
    write_journal(&format!("start:{tag}"))?;
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    write_journal(&tag)?;
    Ok(tag)
}

/// Keeps `kib` KiB more of this process's memory for good (a leak, on purpose), and
/// says which process it runs in.
#[task]
pub fn leak(kib: usize) -> TaskResult<u32> {
    let block = std::hint::black_box(vec![1u8; kib * 1024]);
    std::mem::forget(block);
    Ok(std::process::id())
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

/// Ends its own process at once (exit status 3): what a segfault or an `abort` in a
/// native library does to a worker. In a process pool it takes one child, which is
/// replaced; its message is recovered, and dead-lettered after the delivery limit.
#[task]
pub fn exit_process() -> TaskResult<()> {
    write_journal("exit")?;
    std::process::exit(3)
}
