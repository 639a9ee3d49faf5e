//! The capabilities the CLI and the dashboard read: the worker directory, inspection, history and events.

use super::*;

/// A worker's announcement is listed with what it said, and gone after its TTL.
pub async fn workers_announce_themselves_until_they_expire(h: Harness) {
    let directory = h.broker.directory().expect("the suite needs a worker directory");
    let id = ConsumerId::new();
    let mut info = task_core::capability::WorkerInfo::new(
        id.to_string(),
        "host-a".into(),
        4242,
        8,
        vec!["emails".into(), "default".into()],
        vec!["a.task".into(), "b.task".into()],
        1_000,
    );
    info.succeeded = 7;
    info.last_fetch_ms = 1_500;
    info.active = 3;
    h.broker.heartbeat(&id, Duration::from_millis(400)).await.unwrap();
    directory.announce(&info, Duration::from_millis(400)).await.unwrap();
    let listed = directory.workers().await.unwrap();
    assert_eq!(listed.iter().find(|w| w.id == info.id), Some(&info));
    tokio::time::sleep(Duration::from_millis(900)).await;
    let listed = directory.workers().await.unwrap();
    assert!(listed.iter().all(|w| w.id != info.id), "expired with its TTL");
}

/// `peek` shows scheduled and held messages without taking them; dead letters are
/// counted, retried (oldest first, as new messages) and purged.
pub async fn inspection_peeks_and_handles_dead_letters(h: Harness) {
    use task_core::capability::PeekAt;
    let inspect = h.broker.inspect().expect("the suite needs Inspect");
    let q = queue("inspect");
    let c = ConsumerId::new();
    h.broker.heartbeat(&c, Duration::from_secs(30)).await.unwrap();
    let later = SystemTime::now() + Duration::from_secs(60);
    h.broker.enqueue(msg(&q, "later").with_eta(Some(later))).await.unwrap();
    h.broker.enqueue_batch(vec![msg(&q, "d1"), msg(&q, "d2"), msg(&q, "d3"), msg(&q, "held")]).await.unwrap();
    let got = fetch(&h, &c, std::slice::from_ref(&q), 4, Duration::from_secs(1)).await;
    assert_eq!(got.len(), 4);
    let scheduled = inspect.peek(&q, PeekAt::Scheduled, 10).await.unwrap();
    assert_eq!(scheduled.iter().map(|p| p.payload.clone()).collect::<Vec<_>>(), [b"later".to_vec()]);
    assert!(scheduled[0].due_ms.is_some_and(|d| d > 0));
    let held = inspect.peek(&q, PeekAt::InFlight, 10).await.unwrap();
    assert_eq!(held.len(), 4);
    assert!(held.iter().all(|p| p.worker.as_deref() == Some(c.as_str())));
    for d in &got[..3] {
        h.broker.dead_letter(&c, d, "test").await.unwrap();
    }
    assert_eq!(inspect.queue_stats(&q).await.unwrap().dead, 3);
    assert_eq!(inspect.retry_dead(&q, 2).await.unwrap(), 2);
    let again = fetch(&h, &c, std::slice::from_ref(&q), 10, Duration::from_secs(1)).await;
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["d1", "d2"], "oldest dead letters first");
    assert_eq!(again[0].delivery_count, 1, "a retried dead letter starts afresh");

    // One dead letter alone: picked from the list, retried once.
    for d in &again {
        h.broker.dead_letter(&c, d, "again").await.unwrap();
    }
    let letters: Vec<_> =
        inspect.dead_letters(100).await.unwrap().into_iter().filter(|d| d.queue == q && d.reason == "again").collect();
    let d2 = letters.iter().find(|d| d.payload == b"d2").expect("d2 is a dead letter");
    assert!(inspect.retry_dead_letter(d2).await.unwrap());
    assert!(!inspect.retry_dead_letter(d2).await.unwrap(), "retried already");
    let one = fetch(&h, &c, std::slice::from_ref(&q), 10, Duration::from_secs(1)).await;
    assert_eq!(one.iter().map(body).collect::<Vec<_>>(), ["d2"]);
    assert!(!inspect.retry_dead_task(&task_core::TaskId::new()).await.unwrap(), "no such dead task");
    assert_eq!(inspect.queue_stats(&q).await.unwrap().dead, 2);
    assert_eq!(inspect.purge_dead(&q).await.unwrap(), 2);
    assert_eq!(inspect.queue_stats(&q).await.unwrap().dead, 0);
}

/// A retry puts back the dead letters it found, each once, while a worker buries them
/// again as fast as they come back (a task no worker knows does that).
pub async fn a_retry_of_the_dead_letters_retries_each_once_as_they_are_buried_again(h: Harness) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let inspect = h.broker.inspect().expect("the suite needs Inspect");
    let q = queue("reburied");
    let c = ConsumerId::new();
    h.broker.heartbeat(&c, Duration::from_secs(30)).await.unwrap();
    h.broker.enqueue_batch((0..40).map(|i| msg(&q, &format!("m{i}"))).collect()).await.unwrap();
    let mut held = Vec::new();
    while held.len() < 40 {
        held.extend(fetch(&h, &c, std::slice::from_ref(&q), 40, Duration::from_secs(1)).await);
    }
    for d in &held {
        h.broker.dead_letter(&c, d, "unknown").await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let burier = {
        let (broker, q, c, stop) = (h.broker.clone(), q.clone(), c.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for d in broker.fetch(&c, std::slice::from_ref(&q), 10, Duration::from_millis(20)).await.unwrap() {
                    broker.dead_letter(&c, &d, "unknown again").await.unwrap();
                }
            }
        })
    };
    let retried = inspect.retry_dead(&q, 1_000).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    burier.await.unwrap();
    assert_eq!(retried, 40, "each letter of the start once, none of those buried since");
    let ready = fetch(&h, &c, std::slice::from_ref(&q), 100, Duration::from_millis(100)).await;
    let stats = inspect.queue_stats(&q).await.unwrap();
    assert_eq!(stats.dead + ready.len(), 40, "none lost, none doubled: {stats:?}");
}

/// The recent-tasks history lists changed tasks newest first, filtered by state, name
/// and time, and counts finished ones in the current minute.
pub async fn history_lists_recent_tasks_and_counts_them_per_minute(h: Harness) {
    use task_core::capability::TaskFilter;
    let history = h.backend.history().expect("the suite needs a task history");
    let ttl = Duration::from_secs(60);
    let tag = TaskId::new().to_string();
    let name = |n: &str| format!("{n}-{tag}");
    let before = history.throughput(1).await.unwrap()[0];
    let since = task_core::time::now_ms();
    let ids: Vec<TaskId> = (0..4).map(|_| TaskId::new()).collect();
    for (i, id) in ids.iter().enumerate() {
        let task = if i < 3 { name("alpha") } else { name("beta") };
        let started = {
            let mut m = TaskMeta::state(TaskState::Started);
            m.task = Some(task);
            m.worker = Some("w".into());
            m.started_ms = Some(task_core::time::now_ms());
            m
        };
        h.backend.store(id, started, ttl).await.unwrap();
    }
    let done = |state| {
        let mut m = TaskMeta::state(state);
        m.worker = Some("w".into());
        m
    };
    h.backend.store(&ids[0], done(TaskState::Success), ttl).await.unwrap();
    h.backend.store(&ids[1], done(TaskState::Failure), ttl).await.unwrap();
    h.backend.store(&ids[3], done(TaskState::Success), ttl).await.unwrap();

    let mine = |found: Vec<task_core::RecentTask>| -> Vec<TaskId> {
        found.into_iter().filter(|(id, _, _)| ids.contains(id)).map(|(id, _, _)| id).collect()
    };
    let all = mine(history.recent(&TaskFilter::new().since_ms(since), 100).await.unwrap());
    assert_eq!(all.len(), 4, "each task once");
    assert_eq!(all[0], ids[3], "the last started first");
    // A driver may index by name and state a moment after the write (Redis: within 250 ms).
    let start = std::time::Instant::now();
    loop {
        let alpha = mine(history.recent(&TaskFilter::new().task(name("alpha")), 100).await.unwrap());
        if alpha.len() == 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the alpha tasks are listed: {alpha:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed =
        mine(history.recent(&TaskFilter::new().state(TaskState::Failure).task(name("alpha")), 100).await.unwrap());
    assert_eq!(failed, [ids[1].clone()]);
    let running =
        mine(history.recent(&TaskFilter::new().state(TaskState::Started).since_ms(since), 100).await.unwrap());
    assert_eq!(running, [ids[2].clone()]);
    let now = history.throughput(1).await.unwrap()[0];
    if now.minute_ms == before.minute_ms {
        assert_eq!((now.succeeded - before.succeeded, now.failed - before.failed), (2, 1));
    } else {
        assert!(now.succeeded + now.failed <= 3, "a new minute started meanwhile");
    }
    // A task revoked before it started is listed too (it will never start).
    let queued = TaskId::new();
    h.backend.revoke(&queued, "revoked", false, ttl).await.unwrap();
    let revoked = history.recent(&TaskFilter::new().state(TaskState::Revoked).since_ms(since), 1000).await.unwrap();
    assert!(revoked.iter().any(|(id, at, _)| id == &queued && *at >= since), "a revoked queued task is listed");
    let hour = history.throughput(60).await.unwrap();
    assert_eq!(hour.len(), 60);
    assert!(hour.windows(2).all(|w| w[1].minute_ms - w[0].minute_ms == 60_000), "consecutive minutes, oldest first");
}

/// One write after a quiet spell, with nothing after it, still reaches the events and
/// the counts (a driver that gathers them must send them without waiting for a next).
pub async fn a_lone_write_is_counted(h: Harness) {
    let history = h.backend.history().expect("the suite needs a task history");
    let name = format!("lone-{}", TaskId::new());
    let write = {
        let mut m = TaskMeta::state(TaskState::Started);
        m.task = Some(name.clone());
        m.worker = Some("w1".into());
        m
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    h.backend.store(&TaskId::new(), write, Duration::from_secs(60)).await.unwrap();
    let start = std::time::Instant::now();
    loop {
        let stats = history.task_stats().await.unwrap();
        if stats.counts.iter().any(|c| c.task == name) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the lone write was never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every state write adds its event (newest first), recorded events join them, and the
/// counts by task name and state and the run-time histogram follow the final writes.
pub async fn events_and_task_stats_follow_the_writes(h: Harness) {
    use task_core::{Event, EventKind};
    let history = h.backend.history().expect("the suite needs a task history");
    let ttl = Duration::from_secs(60);
    let name = format!("events-{}", TaskId::new());
    let (a, b) = (TaskId::new(), TaskId::new());
    let write = |state, runtime_ms| {
        let mut m = TaskMeta::state(state);
        m.task = Some(name.clone());
        m.worker = Some("w1".into());
        m.runtime_ms = runtime_ms;
        m
    };
    h.backend.store(&a, write(TaskState::Started, None), ttl).await.unwrap();
    let progress = {
        let mut m = TaskMeta::state(TaskState::Progress);
        m.progress = Some(vec![0x01]);
        m.task = Some(name.clone());
        m
    };
    h.backend.store(&a, progress, ttl).await.unwrap();
    h.backend.store(&a, write(TaskState::Success, Some(42)), ttl).await.unwrap();
    h.backend.store(&b, write(TaskState::Started, None), ttl).await.unwrap();
    h.backend.store(&b, write(TaskState::Failure, Some(70_000)), ttl).await.unwrap();
    let dead = Event::new(EventKind::TaskDeadLettered).task(&b, &name).worker("w1").detail("unknown task");
    history.record_event(&dead).await.unwrap();
    let gone = format!("worker-{name}");
    let since = task_core::time::now_ms() - 1;
    history.record_event(&Event::new(EventKind::WorkerOffline).worker(gone.clone())).await.unwrap();
    let offline = history.workers_offline(since).await.unwrap();
    assert!(offline.iter().any(|(w, at)| w == &gone && *at >= since), "{offline:?}");
    assert!(history.workers_offline(task_core::time::now_ms() + 1_000).await.unwrap().is_empty());

    // A driver may gather events and counts for a moment before it writes them (Redis:
    // a quarter of a second): wait for them.
    let start = std::time::Instant::now();
    let (events, stats) = loop {
        let events: Vec<Event> =
            history.events(7).await.unwrap().into_iter().filter(|e| e.kind != EventKind::WorkerOffline).collect();
        let stats = history.task_stats().await.unwrap();
        if events.len() == 6 && stats.runtimes.iter().any(|r| r.task == name) {
            break (events, stats);
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the events never showed: {events:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let dead_letter = events.iter().find(|e| e.kind == EventKind::TaskDeadLettered).expect("the recorded event");
    assert_eq!(dead_letter.detail.as_deref(), Some("unknown task"));
    // The store's own events keep their order, newest first.
    let stored: Vec<&Event> = events.iter().filter(|e| e.kind != EventKind::TaskDeadLettered).collect();
    let kinds: Vec<EventKind> = stored.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::TaskFailed,
            EventKind::TaskStarted,
            EventKind::TaskSucceeded,
            EventKind::TaskProgress,
            EventKind::TaskStarted
        ],
        "newest first: {events:?}"
    );
    assert_eq!(stored[0].task_id.as_ref(), Some(&b));
    assert!(events.iter().all(|e| e.task.as_deref() == Some(name.as_str())), "{events:?}");
    assert_eq!(stored[2].worker.as_deref(), Some("w1"));
    let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "distinct ids");

    let count = |state| stats.counts.iter().find(|c| c.task == name && c.state == state).map_or(0, |c| c.count);
    assert_eq!((count(TaskState::Started), count(TaskState::Success), count(TaskState::Failure)), (2, 1, 1));
    assert_eq!(count(TaskState::Progress), 0, "progress is an event, not a count");
    let runtime = stats.runtimes.iter().find(|r| r.task == name).expect("a run-time histogram");
    assert_eq!(runtime.count, 2);
    assert!((runtime.sum_secs - 70.042).abs() < 1e-9, "{runtime:?}");
    assert_eq!(runtime.buckets.iter().find(|(le, _)| *le == 0.05).map(|(_, n)| *n), Some(1));
    assert_eq!(runtime.buckets.last().map(|(_, n)| *n), Some(1), "70 s is past the last bound");
}

/// The first minute: a store no worker ever used answers every question with nothing
/// (no error), and so does it once the last worker is gone.
pub async fn a_fresh_store_answers_every_question(h: Harness) {
    let q = queue("fresh");
    if let Some(directory) = h.broker.directory() {
        assert!(directory.workers().await.expect("workers of a fresh store").is_empty());
    }
    if let Some(inspect) = h.broker.inspect() {
        assert_eq!(inspect.queue_stats(&q).await.expect("depths of an unknown queue"), Default::default());
        assert!(!inspect.queues().await.expect("queues of a fresh store").contains(&q));
        inspect.dead_letters(100).await.expect("dead letters of a fresh store");
        for at in [task_core::capability::PeekAt::Scheduled, task_core::capability::PeekAt::InFlight] {
            assert!(inspect.peek(&q, at, 10).await.expect("peek an unknown queue").is_empty());
        }
        assert_eq!(inspect.purge(&q).await.expect("purge an unknown queue"), 0);
        assert_eq!(inspect.retry_dead(&q, 10).await.expect("retry the dead of an unknown queue"), 0);
        assert_eq!(inspect.purge_dead(&q).await.expect("purge the dead of an unknown queue"), 0);
    }
    if let Some(ticks) = h.broker.tick_store() {
        ticks.schedules().await.expect("schedules of a fresh store");
    }
    if let Some(history) = h.backend.history() {
        let filter = task_core::capability::TaskFilter::new().task(format!("never-{q}"));
        assert!(history.recent(&filter, 10).await.expect("recent tasks of a fresh store").is_empty());
        let minutes = history.throughput(5).await.expect("throughput of a fresh store");
        assert_eq!(minutes.len(), 5);
        history.events(10).await.expect("events of a fresh store");
        history.task_stats().await.expect("counts of a fresh store");
        history.workers_offline(0).await.expect("stopped workers of a fresh store");
    }
    assert!(h.backend.get(&TaskId::new()).await.expect("an unknown record").is_none());
}

/// A dead letter given back (all of a queue's, or one) keeps the priority its envelope
/// names: an urgent task that failed is urgent when retried.
pub async fn a_retried_dead_letter_keeps_its_priority(h: Harness) {
    let q = queue("dead-priority");
    let inspect = h.broker.inspect().expect("the suite needs Inspect");
    let c = ConsumerId::new();
    h.broker.heartbeat(&c, Duration::from_secs(30)).await.unwrap();
    for priority in [7u8, 3] {
        let mut envelope = task_core::Envelope::new("t", vec![0x80], &q);
        envelope.priority = priority;
        let message = Message::new(envelope.id.clone(), &q, envelope.encode().unwrap()).with_priority(priority);
        h.broker.enqueue(message).await.unwrap();
        let got = fetch(&h, &c, std::slice::from_ref(&q), 1, Duration::from_secs(1)).await;
        h.broker.dead_letter(&c, &got[0], "buried for the test").await.unwrap();
    }
    // One of them alone, then the rest.
    let letters = inspect.dead_letters(100).await.unwrap();
    let seven = letters.iter().find(|d| d.queue == q && task_core::Envelope::priority_in(&d.payload) == 7).unwrap();
    assert!(inspect.retry_dead_letter(seven).await.unwrap());
    assert_eq!(inspect.retry_dead(&q, 10).await.unwrap(), 1);
    let got = fetch(&h, &c, std::slice::from_ref(&q), 10, Duration::from_secs(1)).await;
    let priorities: Vec<u8> = got.iter().map(|d| d.priority).collect();
    assert_eq!(priorities, [7, 3], "each back at its own priority, highest first");
}

/// A paused queue takes sends and gives nothing to a fetch, says it is paused, and gives
/// its messages again once resumed (a fetch waiting meanwhile gets them).
pub async fn a_paused_queue_keeps_its_messages_until_resumed(h: Harness) {
    let Some(pausing) = h.broker.pausing() else { return };
    let inspect = h.broker.inspect().expect("the suite needs Inspect");
    let q = queue("paused");
    let c = ConsumerId::new();
    h.broker.heartbeat(&c, Duration::from_secs(30)).await.unwrap();
    pausing.pause(&q).await.unwrap();
    h.broker.enqueue(msg(&q, "held")).await.expect("a paused queue still takes sends");
    assert!(fetch(&h, &c, std::slice::from_ref(&q), 10, Duration::from_millis(300)).await.is_empty());
    let stats = inspect.queue_stats(&q).await.unwrap();
    assert!(stats.paused && stats.ready == 1, "{stats:?}");
    let waiting = {
        let h = h.clone();
        let (c, q) = (c.clone(), q.clone());
        tokio::spawn(async move { fetch(&h, &c, &[q], 10, Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    pausing.resume(&q).await.unwrap();
    let got = waiting.await.unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["held"], "resumed, the waiting fetch gets it");
    assert!(!inspect.queue_stats(&q).await.unwrap().paused);
}
