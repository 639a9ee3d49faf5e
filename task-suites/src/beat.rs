//! The periodic-task suite: a tick claimed once by the broker, several schedulers
//! sending each tick once, missed ticks, and the list of running schedules. Run on
//! `memory://` and on Redis with the harness of the control suite.
//!
//! ```ignore
//! task_suites::beat_tests!(setup); // setup: async fn() -> AppHarness, as for control_tests!
//! ```

use std::sync::Mutex;
use std::time::Duration;

use crate::control::AppHarness;
use task_core::{Beat, Missed, Schedule, TaskContext, TaskId, TaskResult, task};

const WAIT: Duration = Duration::from_secs(60);

/// Expands to one `#[tokio::test]` per property; `$setup` is an `async fn() -> AppHarness`.
#[macro_export]
macro_rules! beat_tests {
    ($setup:path) => {
        $crate::beat_tests!(@each $setup;
            a_tick_is_claimed_once, three_schedulers_send_each_tick_once,
            missed_ticks_run_once_or_are_skipped, running_schedules_are_listed);
    };
    (@each $setup:path; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::beat::$name($setup().await).await;
            }
        )*
    };
}
/// The broker's tick claim: a tick is claimed once, and never after a later one.
pub async fn a_tick_is_claimed_once(h: AppHarness) {
    let app = h.app().await;
    let join = app.broker().tick_store().expect("tick claims");
    let entry = format!("claims-{}", TaskId::new());
    assert_eq!(join.last_tick(&entry).await.unwrap(), None);
    assert!(join.claim_tick(&entry, 2_000).await.unwrap());
    assert!(!join.claim_tick(&entry, 2_000).await.unwrap(), "the same tick twice");
    assert!(!join.claim_tick(&entry, 1_000).await.unwrap(), "an earlier tick (a lagging clock)");
    assert!(join.claim_tick(&entry, 3_000).await.unwrap());
    assert_eq!(join.last_tick(&entry).await.unwrap(), Some(3_000));
}

static TICKS: Mutex<Vec<(String, TaskId)>> = Mutex::new(Vec::new());

#[task(name = "celerity.workflow.tick")]
async fn tick(ctx: TaskContext, entry: String) -> TaskResult<()> {
    TICKS.lock().unwrap().push((entry, ctx.id().clone()));
    Ok(())
}

fn ticks_of(entry: &str) -> Vec<TaskId> {
    TICKS.lock().unwrap().iter().filter(|(e, _)| e == entry).map(|(_, id)| id.clone()).collect()
}

/// Three schedulers (three apps on one broker) run a 1 s entry for about 4.5 s: each
/// tick is sent once (a tick sent twice would run twice, with the same derived id).
pub async fn three_schedulers_send_each_tick_once(h: AppHarness) {
    let app = h.app().await;
    let worker = app.worker().spawn();
    let entry = format!("every-second-{}", TaskId::new());
    let beat = {
        let entry = entry.clone();
        Beat::new()
            .entry(entry.clone(), Schedule::every(Duration::from_secs(1)), move || tick::signature(entry.clone()))
    };
    let mut schedulers = Vec::new();
    for _ in 0..3 {
        schedulers.push(beat.clone().spawn(&h.app().await));
    }
    tokio::time::sleep(Duration::from_millis(4500)).await;
    for scheduler in schedulers {
        scheduler.shutdown().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = ticks_of(&entry);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "a tick ran twice: {ids:?}");
    assert!((3..=5).contains(&ids.len()), "4.5 s of a 1 s schedule sent {} ticks", ids.len());
    worker.shutdown().await.unwrap();
}

/// `Missed::RunOnce` sends the latest missed tick once at start (and not again at the
/// next start); `Missed::Skip` sends nothing until the next tick.
pub async fn missed_ticks_run_once_or_are_skipped(h: AppHarness) {
    let app = h.app().await;
    let worker = app.worker().spawn();
    let join = app.broker().tick_store().expect("tick claims");
    let hourly = Schedule::every(Duration::from_secs(3600));
    let now = task_core::time::now_ms();
    let missed = hourly.last_at_or_before(now).unwrap();
    let beat_of = |entry: &str, policy| {
        let name = entry.to_owned();
        Beat::new().entry(entry, hourly.clone(), move || tick::signature(name.clone())).missed(policy)
    };

    let catch_up = format!("catch-up-{}", TaskId::new());
    assert!(join.claim_tick(&catch_up, missed - 3_600_000).await.unwrap(), "it ran an hour before");
    for _ in 0..2 {
        let scheduler = beat_of(&catch_up, Missed::RunOnce).spawn(&app);
        let start = std::time::Instant::now();
        while ticks_of(&catch_up).is_empty() && start.elapsed() < WAIT {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        scheduler.shutdown().await.unwrap();
    }
    assert_eq!(ticks_of(&catch_up).len(), 1, "the missed tick runs once, not at every start");
    assert_eq!(join.last_tick(&catch_up).await.unwrap(), Some(missed));

    let skip = format!("skip-{}", TaskId::new());
    assert!(join.claim_tick(&skip, missed - 3_600_000).await.unwrap());
    let scheduler = beat_of(&skip, Missed::Skip).spawn(&app);
    tokio::time::sleep(Duration::from_millis(500)).await;
    scheduler.shutdown().await.unwrap();
    assert!(ticks_of(&skip).is_empty(), "skipped");
    worker.shutdown().await.unwrap();
}

/// A running scheduler lists its entries (for `celerity schedule` and the dashboard);
/// two entries with one name are refused.
pub async fn running_schedules_are_listed(h: AppHarness) {
    let app = h.app().await;
    let name = format!("listed-{}", TaskId::new());
    let schedule = Schedule::cron("0 30 2 * * *").unwrap().in_time_zone("Europe/Paris").unwrap();
    let n = name.clone();
    let scheduler = Beat::new().entry(name.clone(), schedule, move || tick::signature(n.clone())).spawn(&app);
    let join = app.broker().tick_store().expect("tick claims");
    let start = std::time::Instant::now();
    let entry = loop {
        let all = join.schedules().await.unwrap();
        if let Some(entry) = all.into_iter().find(|e| e.name == name) {
            break entry;
        }
        assert!(start.elapsed() < WAIT, "the entry is listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entry.task, "celerity.workflow.tick");
    assert_eq!(entry.schedule, "cron `0 30 2 * * *` (Europe/Paris)");
    assert!(entry.next_ms.unwrap() > task_core::time::now_ms());
    scheduler.shutdown().await.unwrap();

    let twice = Beat::new()
        .entry("same", Schedule::every(Duration::from_secs(1)), || tick::signature("a".into()))
        .entry("same", Schedule::every(Duration::from_secs(2)), || tick::signature("b".into()));
    let err = twice.run_until(&app, async {}).await.unwrap_err();
    assert!(err.to_string().contains("two periodic entries are named `same`"), "{err}");
}
