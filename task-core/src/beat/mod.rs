//! Periodic tasks: [`Beat`], a scheduler that sends a signature at every tick of a
//! [`Schedule`] (Celery's beat), safe to run in any number of processes at once.
//!
//! Every tick is a fixed time that all schedulers compute alike; the broker keeps the
//! last claimed tick of each entry and lets a scheduler claim a tick only if it is
//! later ([`TickStore::claim_tick`]: one compare-and-set in Redis). So with three
//! schedulers (one per worker process, say) each tick is sent once, and a scheduler
//! whose clock lags cannot send a tick again. The task id of a tick's run is derived
//! from the entry and the tick, so it is the same whichever scheduler sent it.
//!
//! A scheduler that starts after ticks were missed (no scheduler ran) either skips
//! them ([`Missed::Skip`], the default) or sends the latest one once
//! ([`Missed::RunOnce`]). A scheduler that falls behind (a long pause) sends only the
//! latest due tick. If a scheduler dies between claiming a tick and sending it, that
//! tick is lost (at most once per tick, never twice).
//!
//! [`TickStore::claim_tick`]: crate::capability::TickStore::claim_tick

mod schedule;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

pub use schedule::Schedule;

use crate::app::App;
use crate::capability::TickStore;
use crate::client::Signature;
use crate::error::{BrokerError, Error};
use crate::id::TaskId;
use crate::scheduled::ScheduledEntry;
use crate::time::now_ms;

/// How often a scheduler records its entries for the CLI and the dashboard.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(10);

/// What a scheduler does with ticks that passed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missed {
    /// Skip them: the next tick is the first after the start (the default).
    #[default]
    Skip,
    /// Send the latest missed tick once at start, then go on as usual.
    RunOnce,
}

/// A periodic scheduler: entries, each a name, a [`Schedule`] and the signature to send.
///
/// ```
/// use std::time::Duration;
/// use task_core::{task, App, Beat, Schedule, TaskResult};
///
/// #[task]
/// async fn cleanup(older_than_days: u32) -> TaskResult<u32> { Ok(older_than_days) }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), task_core::Error> {
/// let app = App::memory();
/// let beat = Beat::new()
///     .entry("cleanup-hourly", Schedule::every(Duration::from_secs(3600)), || cleanup::signature(30))
///     .entry("nightly", Schedule::cron("0 30 2 * * *")?.in_time_zone("Europe/Paris")?, || {
///         cleanup::signature(7).queue("maintenance")
///     });
/// let scheduler = beat.spawn(&app); // in every worker process, if you like
/// # scheduler.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Beat {
    entries: Vec<Entry>,
    missed: Missed,
}

#[derive(Clone)]
struct Entry {
    name: String,
    schedule: Schedule,
    task: &'static str,
    make: Arc<dyn Fn() -> Signature<()> + Send + Sync>,
}

impl Beat {
    /// A scheduler without entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry: at every tick of `schedule`, `make()` is sent. The name identifies
    /// the entry across schedulers and restarts: keep it stable.
    pub fn entry<T: 'static>(
        mut self,
        name: impl Into<String>,
        schedule: Schedule,
        make: impl Fn() -> Signature<T> + Send + Sync + 'static,
    ) -> Self {
        let task = make().task_name();
        let make = Arc::new(move || make().cast());
        self.entries.push(Entry { name: name.into(), schedule, task, make });
        self
    }

    /// What to do with ticks missed while no scheduler ran.
    pub fn missed(mut self, policy: Missed) -> Self {
        self.missed = policy;
        self
    }

    /// The entries: name, task name and schedule.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &'static str, &Schedule)> {
        self.entries.iter().map(|e| (e.name.as_str(), e.task, &e.schedule))
    }

    /// True without entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs the scheduler in a tokio task until [`BeatHandle::shutdown`].
    pub fn spawn(self, app: &App) -> BeatHandle {
        let (stop, stopped) = oneshot::channel::<()>();
        let app = app.clone();
        let task = tokio::spawn(async move {
            self.run_until(&app, async {
                let _ = stopped.await;
            })
            .await
        });
        BeatHandle { stop, task }
    }

    /// Runs the scheduler until `shutdown` completes. Needs a broker that keeps ticks
    /// (memory and Redis have it); entry names must be unique.
    pub async fn run_until(self, app: &App, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let join = app.broker().tick_store().ok_or_else(|| {
            Error::Config(format!("periodic tasks need a broker that claims ticks; {} does not", app.broker_url()))
        })?;
        let mut names = HashSet::new();
        if let Some(twice) = self.entries.iter().find(|e| !names.insert(e.name.as_str())) {
            return Err(Error::Config(format!("two periodic entries are named `{}`", twice.name)));
        }
        let scheduler = format!(
            "{}:{}:{}",
            crate::host::hostname(),
            std::process::id(),
            TaskId::new().as_str().get(..8).unwrap_or_default()
        );
        let run = Run { app, join, scheduler, entries: &self.entries };
        let start = now_ms();
        if self.missed == Missed::RunOnce {
            run.catch_up(start).await;
        }
        let mut next: Vec<Option<i64>> = self.entries.iter().map(|e| e.schedule.next_after(start)).collect();
        run.announce(&next).await;
        let mut announce_at = start + millis(ANNOUNCE_EVERY);
        info!(scheduler = %run.scheduler, entries = self.entries.len(), "periodic scheduler started");
        tokio::pin!(shutdown);
        loop {
            let wake = next.iter().flatten().copied().chain([announce_at]).min().unwrap_or(announce_at);
            let pause = Duration::from_millis(u64::try_from(wake - now_ms()).unwrap_or(0));
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(pause) => {}
            }
            let now = now_ms();
            for (entry, due) in self.entries.iter().zip(next.iter_mut()) {
                let Some(at) = due.filter(|at| *at <= now) else { continue };
                // Late (a long pause): only the latest due tick is sent.
                let tick = entry.schedule.last_at_or_before(now).unwrap_or(at).max(at);
                run.fire(entry, tick).await;
                *due = entry.schedule.next_after(now.max(tick));
            }
            if now >= announce_at {
                run.announce(&next).await;
                announce_at = now + millis(ANNOUNCE_EVERY);
            }
        }
        info!(scheduler = %run.scheduler, "periodic scheduler stopped");
        Ok(())
    }
}

/// One running scheduler.
struct Run<'a> {
    app: &'a App,
    join: &'a dyn TickStore,
    scheduler: String,
    entries: &'a [Entry],
}

impl Run<'_> {
    /// [`Missed::RunOnce`]: sends the latest tick before `now` of each entry if it came
    /// after the entry's last claimed tick (and the entry ran before).
    async fn catch_up(&self, now: i64) {
        for entry in self.entries {
            let Some(missed) = entry.schedule.last_at_or_before(now) else { continue };
            match self.join.last_tick(&entry.name).await {
                Ok(Some(last)) if last < missed => {
                    info!(entry = %entry.name, tick = %schedule::utc(missed), "sending a tick missed while no scheduler ran");
                    self.fire(entry, missed).await;
                }
                Ok(_) => {}
                Err(e) => warn!(entry = %entry.name, error = %e, "cannot read the last tick; missed ticks are skipped"),
            }
        }
    }

    /// Claims `tick` of `entry`; the one scheduler that claims it sends the task.
    async fn fire(&self, entry: &Entry, tick: i64) {
        let mut claimed = Err(BrokerError::new(crate::ErrorKind::Other, "not tried"));
        for attempt in 0..3 {
            claimed = self.join.claim_tick(&entry.name, tick).await;
            if claimed.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
        }
        match claimed {
            Ok(true) => {
                let id = TaskId::derived(&format!("beat:{}:{tick}", entry.name));
                match (entry.make)().task_id(id.clone()).apply_async(self.app).await {
                    Ok(_) => {
                        info!(entry = %entry.name, task = entry.task, %id, tick = %schedule::utc(tick), "periodic task sent");
                    }
                    Err(e) => {
                        error!(entry = %entry.name, task = entry.task, error = %e, "cannot send a periodic task; this tick is lost");
                    }
                }
            }
            Ok(false) => debug!(entry = %entry.name, tick, "tick sent by another scheduler"),
            Err(e) => error!(entry = %entry.name, error = %e, "cannot claim a tick; it is skipped"),
        }
    }

    /// Records the entries for the CLI and the dashboard.
    async fn announce(&self, next: &[Option<i64>]) {
        let mut records = Vec::with_capacity(self.entries.len());
        let expires_ms = now_ms() + 3 * millis(ANNOUNCE_EVERY);
        for (entry, next_ms) in self.entries.iter().zip(next) {
            records.push(ScheduledEntry {
                name: entry.name.clone(),
                task: entry.task.to_owned(),
                schedule: entry.schedule.to_string(),
                next_ms: *next_ms,
                last_ms: self.join.last_tick(&entry.name).await.ok().flatten(),
                scheduler: self.scheduler.clone(),
                expires_ms,
            });
        }
        if let Err(e) = self.join.announce_schedule(&records).await {
            warn!(error = %e, "cannot record the periodic entries");
        }
    }
}

/// A running scheduler.
#[derive(Debug)]
pub struct BeatHandle {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl BeatHandle {
    /// Stops the scheduler; returns how its run ended.
    pub async fn shutdown(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        self.task.await.map_err(|e| Error::Config(format!("the periodic scheduler panicked: {e}")))?
    }
}

impl std::fmt::Debug for Beat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries: Vec<(&str, &str, String)> =
            self.entries.iter().map(|e| (e.name.as_str(), e.task, e.schedule.to_string())).collect();
        f.debug_struct("Beat").field("entries", &entries).field("missed", &self.missed).finish()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
