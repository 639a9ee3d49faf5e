//! The fetch loop: holds at most `prefetch` messages (in the [`Inbox`], run by
//! `concurrency` slots), heartbeats and recovers dead peers, and shuts down gracefully.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::decide::NextFetch;
use super::execute::Runner;
use super::inbox::{Inbox, slot};
use super::{Worker, WorkerReport};
use crate::broker::{Broker, ConsumerId};
use crate::capability::WorkerInfo;
use crate::error::Error;
use crate::events::{Event, EventKind};

/// Back-off after a failed fetch: doubles from the first to the last.
const FETCH_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Runs `worker` until `signal`; says whether remote control stopped it instead.
pub(super) async fn run<F>(worker: Worker, signal: F) -> Result<(WorkerReport, bool), Error>
where
    F: Future<Output = ()> + Send,
{
    let Worker {
        app,
        id,
        concurrency,
        prefetch,
        queues,
        grace_period,
        heartbeat_ttl,
        fetch_wait,
        name,
        layers,
        autoscale,
        pool: _,
        max_tasks_per_child: _,
        max_memory_per_child: _,
        link,
    } = worker;
    app.registry().check()?;
    if queues.is_empty() || queues.iter().any(|q| q.trim().is_empty()) {
        return Err(Error::Config(format!(
            "a worker needs at least one queue, and no empty queue name (got {queues:?})"
        )));
    }
    let prefetch = prefetch.unwrap_or(concurrency).max(concurrency);
    let broker = app.broker().clone();
    broker.heartbeat(&id, heartbeat_ttl).await?;

    let (broker_url, backend_url) = (crate::redact_url(app.broker_url()), crate::redact_url(app.backend_url()));
    info!(worker = %id, %name, broker = broker_url, backend = backend_url, concurrency, ?queues, "celerity worker ready");
    for entry in app.registry().entries() {
        info!(task = entry.name(), kind = if entry.is_blocking() { "sync" } else { "async" }, "registered task");
    }

    let (ready_hooks, shutdown_hooks) = (layers.1.clone(), layers.2.clone());
    let runner = Arc::new(Runner::new(app.clone(), id.clone()).with_layers(layers).with_link(link));
    runner.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone_from(&queues);
    // With autoscale the pool starts at its minimum; `concurrency` is its maximum.
    let mut current = autoscale.map_or(concurrency, |((min, _), _)| min);
    runner.counters.concurrency.store(current, Ordering::Relaxed);
    let info = WorkerInfo::new(
        id.to_string(),
        crate::host::hostname(),
        std::process::id(),
        concurrency,
        queues.clone(),
        app.registry().names().map(str::to_owned).collect(),
        crate::time::now_ms(),
    );
    let mut info = info;
    let me = super::control::Me { id: id.to_string(), name: name.clone() };
    info.name = name;
    info.task_queues = app
        .registry()
        .names()
        .filter_map(|name| {
            let own = app.registry().get(name)?.options().queue;
            Some((name.to_owned(), app.queue_of(name, own).to_owned()))
        })
        .collect();
    // Listening before it announces itself: a worker in the directory answers.
    // `celerity control shutdown` stops this worker as its own signal would.
    let remote_stop = Arc::new(tokio::sync::Notify::new());
    let inbox = Arc::new(Inbox::default());
    let controlled = app.backend().remote_control().map(|control| {
        let (runner, inbox) = (Arc::downgrade(&runner), Arc::downgrade(&inbox));
        control.listen(super::control::on_request(runner, inbox, me, remote_stop.clone()))
    });
    for hook in &ready_hooks {
        hook(&info);
    }
    let heart = tokio::spawn(heartbeat(broker.clone(), id.clone(), heartbeat_ttl, info, runner.clone()));
    let terminator =
        app.backend().terminations().map(|requests| requests.listen(terminate_on_request(Arc::downgrade(&runner))));
    // `concurrency` slots take the fetched messages from the inbox, one run at a time.
    let mut slots = JoinSet::new();
    for _ in 0..current {
        slots.spawn(slot(inbox.clone(), runner.clone()));
    }
    let mut idle_since = tokio::time::Instant::now();
    // An idle worker must come round to give slots back: it waits for work no longer.
    let fetch_wait =
        autoscale.map_or(fetch_wait, |(_, keepalive)| fetch_wait.min(keepalive.max(Duration::from_millis(50))));
    let mut fetch_backoff = FETCH_BACKOFF.0;
    tokio::pin!(signal);
    let mut remotely = false;
    // The last top-up found the queues empty.
    let mut dry = false;

    'fetching: loop {
        // A slot ends only by a panic in the worker's own code (a task's panic is
        // caught and stored): another takes its place.
        while let Some(ended) = slots.try_join_next() {
            // A slot that returned was retired by autoscale; one that failed is replaced.
            if let Err(e) = ended {
                error!(error = ?e, "a worker slot failed; its message is recovered when this worker stops");
                slots.spawn(slot(inbox.clone(), runner.clone()));
            }
        }
        // `celerity control pool-grow / pool-shrink`.
        let asked = runner.counters.resize.swap(0, Ordering::AcqRel);
        if asked != 0 {
            let target = current.saturating_add_signed(asked).max(1);
            info!(from = current, to = target, "remote control: the pool resized");
            current = resize(&mut slots, &inbox, &runner, current, target);
        }
        if let Some((bounds, keepalive)) = autoscale {
            if inbox.queued() > 0 || inbox.busy() >= current {
                idle_since = tokio::time::Instant::now();
            }
            let target = super::decide::scale(current, bounds, inbox.queued(), idle_since.elapsed(), keepalive);
            if target != current {
                info!(from = current, to = target, "autoscale: the pool resized");
                idle_since = tokio::time::Instant::now();
            }
            current = resize(&mut slots, &inbox, &runner, current, target);
        }
        // The prefetch grows with a pool grown past it.
        let room = prefetch.max(current).saturating_sub(inbox.busy() + inbox.queued());
        // Fetched messages wait for a slot, not for a fetch: a fetch may block (the
        // queue is empty) while slots free up, and would leave them waiting that long.
        // Below one message a slot, a fetch that does not wait tops the inbox up.
        inbox.set_low(current);
        let queued = inbox.queued();
        runner.counters.saturated.store(room == 0 || queued > 0, std::sync::atomic::Ordering::Relaxed);
        let next = super::decide::next_fetch(room, queued, current, dry);
        if next == NextFetch::Wait {
            tokio::select! {
                biased;
                () = &mut signal => break 'fetching,
                () = remote_stop.notified() => {
                    remotely = true;
                    break 'fetching;
                }
                () = inbox.changed() => {}
            }
            continue;
        }
        let wait = if next == NextFetch::TopUp { Duration::ZERO } else { fetch_wait };
        tokio::select! {
            biased;
            () = &mut signal => break 'fetching,
            () = remote_stop.notified() => {
                remotely = true;
                break 'fetching;
            }
            () = runner.reconfigured.notified() => continue 'fetching,
            fetched = fetch_from(&*broker, &id, &runner, room, wait) => match fetched {
                Ok(batch) => {
                    fetch_backoff = FETCH_BACKOFF.0;
                    dry = next == NextFetch::TopUp && batch.is_empty();
                    runner.counters.last_fetch_ms.store(crate::time::now_ms(), std::sync::atomic::Ordering::Relaxed);
                    inbox.push(batch);
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?fetch_backoff, "fetch failed; retrying");
                    tokio::select! {
                        biased;
                        () = &mut signal => break 'fetching,
                        () = remote_stop.notified() => {
                            remotely = true;
                            break 'fetching;
                        }
                        () = tokio::time::sleep(fetch_backoff) => {}
                    }
                    fetch_backoff = (fetch_backoff * 2).min(FETCH_BACKOFF.1);
                }
            },
        }
    }

    shutdown(&*broker, &id, &runner, &inbox, &mut slots, grace_period, heart).await;
    // No more terminate requests or remote commands for this worker.
    drop(terminator);
    drop(controlled);
    let report = runner.counters.report();
    for hook in &shutdown_hooks {
        hook(&report);
    }
    Ok((report, remotely))
}

async fn shutdown(
    broker: &dyn Broker,
    id: &ConsumerId,
    runner: &Runner,
    inbox: &Inbox,
    slots: &mut JoinSet<()>,
    grace: Duration,
    heart: tokio::task::JoinHandle<()>,
) {
    // The slots stop after the run each is in; what none started goes back.
    let held = inbox.close();
    info!(worker = %id, unstarted = held.len(), running = inbox.busy(), ?grace, "shutting down");
    for delivery in held {
        match broker.release(id, &delivery).await {
            Ok(()) => {
                runner.counters.released.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                warn!(error = %e, "cannot give back an unstarted message; it is recovered when this worker's heartbeat expires");
            }
        }
    }
    if tokio::time::timeout(grace, async { while slots.join_next().await.is_some() {} }).await.is_err() {
        warn!(
            still_running = inbox.busy(),
            "grace period over: aborting running tasks; their messages go back to the queue, but those of plain `fn` tasks end FAILURE (their threads cannot be stopped)"
        );
        slots.abort_all();
    }
    while slots.join_next().await.is_some() {}
    runner.settle_stranded().await;
    // The heartbeat kept this worker alive through the grace period; it stops before
    // the worker leaves the directory, or a beat in flight would announce it again.
    heart.abort();
    let _ = heart.await;
    if let Err(e) = broker.deregister(id).await {
        error!(error = %e, "cannot deregister; held messages are recovered when this worker's heartbeat expires");
    }
    let report = runner.counters.report();
    let detail = format!("succeeded={} failed={}", report.succeeded, report.failed);
    runner.record(Event::new(EventKind::WorkerOffline).worker(id.to_string()).detail(detail)).await;
    info!(worker = %id, report = ?runner.counters.report(), "worker stopped");
}

/// Runs `target` slots where `current` run: spawns the missing ones, or asks the inbox
/// to retire the extra ones (each after the run it is in); returns `target`.
fn resize(slots: &mut JoinSet<()>, inbox: &Arc<Inbox>, runner: &Arc<Runner>, current: usize, target: usize) -> usize {
    for _ in current..target {
        slots.spawn(slot(inbox.clone(), runner.clone()));
    }
    for _ in target..current {
        inbox.retire_one();
    }
    runner.counters.concurrency.store(target, Ordering::Relaxed);
    target
}

/// A fetch from the queues the worker takes from now (remote control may change them);
/// with none left, a wait of `wait` that fetches nothing.
async fn fetch_from(
    broker: &dyn Broker,
    id: &ConsumerId,
    runner: &Runner,
    room: usize,
    wait: Duration,
) -> Result<Vec<crate::message::Delivery>, crate::error::BrokerError> {
    let queues = runner.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    if queues.is_empty() {
        tokio::time::sleep(wait).await;
        return Ok(Vec::new());
    }
    broker.fetch(id, &queues, room, wait).await
}

/// Aborts the tasks that a revoke with terminate names, if they run here.
fn terminate_on_request(runner: std::sync::Weak<Runner>) -> crate::capability::OnTerminate {
    Box::new(move |id| {
        if runner.upgrade().is_some_and(|runner| runner.terminate(id)) {
            info!(id = %id, "terminating a revoked task");
        }
    })
}

/// Keeps this worker alive in the broker and returns dead peers' messages.
async fn heartbeat(broker: Arc<dyn Broker>, id: ConsumerId, ttl: Duration, mut info: WorkerInfo, runner: Arc<Runner>) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut kind = EventKind::WorkerOnline;
    loop {
        tick.tick().await;
        if let Err(e) = broker.heartbeat(&id, ttl).await {
            warn!(error = %e, "heartbeat failed");
            continue;
        }
        let report = runner.counters.report();
        let active = runner.running.lock().unwrap_or_else(|p| p.into_inner()).len();
        let last_fetch = runner.counters.last_fetch_ms.load(std::sync::atomic::Ordering::Relaxed).max(info.started_ms);
        let detail = format!(
            "active={active} succeeded={} failed={} last_fetch_ms_ago={}",
            report.succeeded,
            report.failed,
            (crate::time::now_ms() - last_fetch).max(0)
        );
        if let Some(directory) = broker.directory() {
            info.heartbeat_ms = crate::time::now_ms();
            info.succeeded = report.succeeded;
            info.failed = report.failed;
            info.last_fetch_ms = last_fetch;
            info.active = u64::try_from(active).unwrap_or(u64::MAX);
            info.saturated = runner.counters.saturated.load(std::sync::atomic::Ordering::Relaxed);
            info.concurrency = runner.counters.concurrency.load(std::sync::atomic::Ordering::Relaxed);
            info.queues = runner.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            if let Err(e) = directory.announce(&info, ttl).await {
                warn!(error = %e, "cannot announce this worker");
            }
        }
        // After the announce: a driver's events may name the worker by its directory
        // entry (Celery's events carry its node name).
        runner.record(Event::new(kind).worker(id.to_string()).detail(detail)).await;
        kind = EventKind::WorkerHeartbeat;
        match broker.recover().await {
            Ok(recovery) => {
                if recovery.moved > 0 {
                    info!(recovered = recovery.moved, "returned messages of a dead worker to their queues");
                }
                for letter in &recovery.buried {
                    runner.end_buried(letter).await;
                }
            }
            Err(e) => warn!(error = %e, "recovery failed"),
        }
    }
}
