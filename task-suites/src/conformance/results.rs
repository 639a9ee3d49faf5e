//! Result-store properties: merged records, TTLs, waits, forget, fenced and atomic settles.

use super::*;

/// Settles as a worker does: in one step where the broker and the backend share a store
/// ([`task_core::capability::pair`]), else stores, then acks. The error's kind.
async fn settle(
    h: &Harness,
    id: &TaskId,
    update: TaskMeta,
    ttl: Duration,
    consumer: &ConsumerId,
    delivery: &Delivery,
) -> Result<(), task_core::ErrorKind> {
    match task_core::capability::pair(h.broker.shared_store(), h.backend.settle_atomically()) {
        Some((store, atomic)) => {
            let settled = atomic.settle(id, update, ttl, consumer, delivery).await.map_err(|e| e.kind());
            store.settled(consumer, delivery);
            settled
        }
        None => {
            h.backend.store(id, update, ttl).await.map_err(|e| e.kind())?;
            h.broker.ack(consumer, delivery).await.map_err(|e| e.kind())
        }
    }
}

/// A settle stores the final state and acks the delivery; once the delivery was
/// recovered by another worker it is refused as fenced, and a backend that does both
/// in one step ([`task_core::capability::SettleAtomically`]) then stores nothing either.
pub async fn store_and_ack_settles_and_is_fenced(h: Harness) {
    let q = queue("settle");
    let ttl = Duration::from_secs(60);
    let done = |worker: &ConsumerId, result: u8| {
        let mut m = TaskMeta::state(TaskState::Success);
        m.worker = Some(worker.to_string());
        m.result = Some(vec![result]);
        m
    };
    let (slow, live) = (ConsumerId::new(), ConsumerId::new());
    h.broker.heartbeat(&live, Duration::from_secs(30)).await.unwrap();
    h.broker.enqueue(msg(&q, "job")).await.unwrap();
    let got = fetch(&h, &live, std::slice::from_ref(&q), 1, Duration::from_secs(1)).await;
    let id = TaskId::new();
    settle(&h, &id, done(&live, 7), ttl, &live, &got[0]).await.unwrap();
    let meta = h.backend.get(&id).await.unwrap().expect("stored");
    assert_eq!((meta.state, meta.result), (TaskState::Success, Some(vec![7])));
    let err = h.broker.ack(&live, &got[0]).await.expect_err("acked already");
    assert_eq!(err.kind(), task_core::ErrorKind::Fenced);

    h.broker.heartbeat(&slow, Duration::from_millis(200)).await.unwrap();
    h.broker.enqueue(msg(&q, "late")).await.unwrap();
    let old = fetch(&h, &slow, std::slice::from_ref(&q), 1, Duration::from_secs(1)).await;
    assert!(recover_soon(&h, &live).await.moved >= 1);
    let stale = TaskId::new();
    let err = settle(&h, &stale, done(&slow, 8), ttl, &slow, &old[0]).await.expect_err("a stale settle is refused");
    assert_eq!(err, task_core::ErrorKind::Fenced);
    if task_core::capability::pair(h.broker.shared_store(), h.backend.settle_atomically()).is_some() {
        assert!(h.backend.get(&stale).await.unwrap().is_none(), "a refused settle stores nothing");
    }
    let again = fetch(&h, &live, &[q], 1, Duration::from_secs(2)).await;
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["late"], "the recovered message is delivered again");
}

/// Stored fields merge: later updates keep what they do not set.
pub async fn result_store_merges_fields(h: Harness) {
    let id = TaskId::new();
    let ttl = Duration::from_secs(60);
    assert!(h.backend.get(&id).await.unwrap().is_none());
    let started = {
        let mut m = TaskMeta::state(TaskState::Started);
        m.task = Some("t".into());
        m.worker = Some("w1".into());
        m.started_ms = Some(5);
        m.args = Some(vec![0x81, 0xa1, b'x', 0x01]);
        m.queue = Some("q".into());
        m
    };
    h.backend.store(&id, started, ttl).await.unwrap();
    let done = {
        let mut m = TaskMeta::state(TaskState::Success);
        m.result = Some(vec![0x2a]);
        m.finished_ms = Some(9);
        m
    };
    h.backend.store(&id, done, ttl).await.unwrap();
    let meta = h.backend.get(&id).await.unwrap().expect("stored");
    assert_eq!(meta.state, TaskState::Success);
    assert_eq!(meta.task.as_deref(), Some("t"));
    assert_eq!(meta.worker.as_deref(), Some("w1"));
    assert_eq!(meta.result, Some(vec![0x2a]));
    assert_eq!((meta.started_ms, meta.finished_ms), (Some(5), Some(9)));
    assert_eq!((meta.args, meta.queue.as_deref()), (Some(vec![0x81, 0xa1, b'x', 0x01]), Some("q")));
}

/// Every field a write carries reads back, for the writes a worker makes (a backend may
/// send those in a compact form of their own) and for others.
pub async fn result_store_keeps_every_field(h: Harness) {
    let ttl = Duration::from_secs(60);
    let start = {
        let mut m = TaskMeta::state(TaskState::Started);
        m.task = Some("t".into());
        m.worker = Some("w1".into());
        m.queue = Some("q".into());
        m.retries = Some(2);
        m.started_ms = Some(5);
        m.args = Some(vec![0x91, 0x01]);
        m
    };
    let success = {
        let mut m = TaskMeta::state(TaskState::Success);
        m.worker = Some("w1".into());
        m.runtime_ms = Some(3);
        m.finished_ms = Some(9);
        m.result = Some(vec![0x2a]);
        m
    };
    // A run whose start was not stored: one write with all of it.
    let untracked = {
        let mut m = merged(&start, &success);
        m.state = TaskState::Success;
        m
    };
    let failure = {
        let mut m = merged(&start, &success);
        m.state = TaskState::Failure;
        m.error = Some("boom".into());
        m.progress = Some(vec![0x0a]);
        m
    };
    for writes in [vec![start.clone(), success.clone()], vec![untracked], vec![failure], vec![start, success]] {
        let id = TaskId::new();
        for write in &writes {
            h.backend.store(&id, write.clone(), ttl).await.unwrap();
        }
        let expected = writes.iter().skip(1).fold(writes[0].clone(), |all, w| merged(&all, w));
        let meta = h.backend.get(&id).await.unwrap().expect("stored");
        assert_eq!(meta, expected, "after {writes:?}");
    }
}

/// `base` with the fields `update` sets, in `update`'s state.
fn merged(base: &TaskMeta, update: &TaskMeta) -> TaskMeta {
    let u = update.clone();
    let b = base.clone();
    let mut m = TaskMeta::state(u.state);
    m.task = u.task.or(b.task);
    m.error = u.error.or(b.error);
    m.worker = u.worker.or(b.worker);
    m.queue = u.queue.or(b.queue);
    m.runtime_ms = u.runtime_ms.or(b.runtime_ms);
    m.retries = u.retries.or(b.retries);
    m.started_ms = u.started_ms.or(b.started_ms);
    m.finished_ms = u.finished_ms.or(b.finished_ms);
    m.result = u.result.or(b.result);
    m.progress = u.progress.or(b.progress);
    m.args = u.args.or(b.args);
    m
}

/// A record is gone after its TTL.
pub async fn result_ttl_expires(h: Harness) {
    let id = TaskId::new();
    h.backend.store(&id, TaskMeta::state(TaskState::Success), Duration::from_millis(300)).await.unwrap();
    assert!(h.backend.get(&id).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(h.backend.get(&id).await.unwrap().is_none(), "still there after its TTL");
}

/// A waiter wakes when the state becomes ready, not before.
pub async fn wait_wakes_on_ready_state(h: Harness) {
    let id = TaskId::new();
    let (h2, id2) = (h.clone(), id.clone());
    let waiter = tokio::spawn(async move { h2.backend.wait(&id2, Duration::from_secs(20)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.backend.store(&id, TaskMeta::state(TaskState::Started), Duration::from_secs(60)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "woke on a non-ready state");
    let done = {
        let mut m = TaskMeta::state(TaskState::Success);
        m.result = Some(vec![1]);
        m
    };
    h.backend.store(&id, done, Duration::from_secs(60)).await.unwrap();
    let meta = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").unwrap();
    assert_eq!(meta.expect("stored").state, TaskState::Success);
}

/// A wait that times out returns the record as it is.
pub async fn wait_times_out_with_current_state(h: Harness) {
    let id = TaskId::new();
    let start = Instant::now();
    assert!(h.backend.wait(&id, Duration::from_millis(200)).await.unwrap().is_none());
    assert!(start.elapsed() >= Duration::from_millis(150));
    h.backend.store(&id, TaskMeta::state(TaskState::Progress), Duration::from_secs(60)).await.unwrap();
    let meta = h.backend.wait(&id, Duration::from_millis(200)).await.unwrap();
    assert_eq!(meta.expect("stored").state, TaskState::Progress);
}

/// `forget` deletes.
pub async fn forget_deletes(h: Harness) {
    let id = TaskId::new();
    h.backend.store(&id, TaskMeta::state(TaskState::Failure), Duration::from_secs(60)).await.unwrap();
    h.backend.forget(&id).await.unwrap();
    assert!(h.backend.get(&id).await.unwrap().is_none());
}

/// Once a second worker has claimed a task (`STARTED`), the first one's late updates
/// are refused as fenced, and the second one's go through.
pub async fn a_stale_worker_cannot_overwrite_a_result(h: Harness) {
    let id = TaskId::new();
    let ttl = Duration::from_secs(60);
    let by = |state, worker: &str| {
        let mut m = TaskMeta::state(state);
        m.worker = Some(worker.to_owned());
        m
    };
    h.backend.store(&id, by(TaskState::Started, "old"), ttl).await.unwrap();
    h.backend.store(&id, by(TaskState::Started, "new"), ttl).await.unwrap();
    let late = {
        let mut m = by(TaskState::Success, "old");
        m.result = Some(vec![1]);
        m
    };
    let err = h.backend.store(&id, late, ttl).await.expect_err("the old worker's result must be refused");
    assert_eq!(err.kind(), task_core::ErrorKind::Fenced);
    let current = {
        let mut m = by(TaskState::Success, "new");
        m.result = Some(vec![2]);
        m
    };
    h.backend.store(&id, current, ttl).await.unwrap();
    let meta = h.backend.get(&id).await.unwrap().expect("stored");
    assert_eq!((meta.state, meta.result, meta.worker.as_deref()), (TaskState::Success, Some(vec![2]), Some("new")));
}
