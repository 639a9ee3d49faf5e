//! The conformance suite every [`Broker`] and [`ResultBackend`] must pass
//! (feature `test-util`), written once and run against `memory://` here and against
//! Redis in `task-redis` (apalis's `generic_storage_test!` habit).
//!
//! ```ignore
//! async fn setup() -> task_core::testing::Harness { /* a fresh broker + backend */ }
//! task_core::conformance_tests!(setup);
//! ```
//!
//! The broker must send a message to the dead letters after
//! [`SUITE_MAX_DELIVERIES`] deliveries. Every test uses queue names of its own, so
//! the tests may share one server and run in parallel.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[cfg(feature = "macros")]
pub mod control;
pub mod workflow;

use crate::backend::ResultBackend;
use crate::broker::{Broker, ConsumerId, Delivery, Message};
use crate::id::TaskId;
use crate::state::{TaskMeta, TaskState};

/// The delivery limit the suite expects the broker to be configured with.
pub const SUITE_MAX_DELIVERIES: u32 = 2;

/// A fresh broker and backend for one test.
#[derive(Debug, Clone)]
pub struct Harness {
    /// The broker under test (dead-lettering after [`SUITE_MAX_DELIVERIES`]).
    pub broker: Arc<dyn Broker>,
    /// The backend under test.
    pub backend: Arc<dyn ResultBackend>,
    /// Anything that must live as long as the test (a private server, say).
    pub keep_alive: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Harness {
    /// A harness of a broker and a backend.
    pub fn new(broker: Arc<dyn Broker>, backend: Arc<dyn ResultBackend>) -> Self {
        Self { broker, backend, keep_alive: None }
    }

    /// Keeps `guard` alive until the test ends.
    pub fn keep_alive(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self.keep_alive = Some(Arc::new(guard));
        self
    }
}

/// Expands to one `#[tokio::test]` per property of the suite; `$setup` is a path to
/// an `async fn() -> Harness`. The calling crate needs `tokio` (macros, rt-multi-thread).
#[macro_export]
macro_rules! conformance_tests {
    ($setup:path) => {
        $crate::conformance_tests!(@each $setup;
            push_fetch_ack, fetch_waits_then_returns_empty, blocked_fetch_wakes_on_enqueue,
            delayed_message_waits_for_its_eta, retry_is_delivered_after_its_delay,
            redelivery_after_a_consumer_dies, dead_letter_after_max_deliveries,
            release_returns_without_counting, explicit_dead_letter_keeps_reason,
            ack_after_recovery_is_fenced, store_and_ack_settles_and_is_fenced, priorities_highest_first, batch_enqueue_keeps_order,
            fetch_respects_max_and_queue_order, result_store_merges_fields, result_store_keeps_every_field, result_ttl_expires,
            wait_wakes_on_ready_state, wait_times_out_with_current_state, forget_deletes,
            a_stale_worker_cannot_overwrite_a_result, a_mixed_batch_keeps_priorities_and_delays,
            workers_announce_themselves_until_they_expire, inspection_peeks_and_handles_dead_letters,
            history_lists_recent_tasks_and_counts_them_per_minute, events_and_task_stats_follow_the_writes,
            a_lone_write_is_counted);
    };
    (@each $setup:path; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::testing::$name($setup().await).await;
            }
        )*
    };
}

fn queue(tag: &str) -> String {
    format!("conf-{tag}-{}", &TaskId::new().as_str()[..8])
}

fn msg(queue: &str, body: &str) -> Message {
    Message::new(TaskId::new(), queue, body.as_bytes().to_vec())
}

fn body(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.payload).into_owned()
}

async fn fetch(h: &Harness, c: &ConsumerId, queues: &[String], max: usize, wait: Duration) -> Vec<Delivery> {
    h.broker.fetch(c, queues, max, wait).await.expect("fetch")
}

/// Recovers until something moves or 10 s pass, heartbeating `live` meanwhile.
async fn recover_soon(h: &Harness, live: &ConsumerId) -> usize {
    let start = Instant::now();
    loop {
        h.broker.heartbeat(live, Duration::from_secs(30)).await.expect("heartbeat");
        let moved = h.broker.recover().await.expect("recover");
        if moved > 0 || start.elapsed() > Duration::from_secs(10) {
            return moved;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Enqueue, fetch, ack: the message is delivered once, with count 1, then gone.
pub async fn push_fetch_ack(h: Harness) {
    let q = queue("ack");
    let c = ConsumerId::new();
    h.broker.heartbeat(&c, Duration::from_secs(30)).await.unwrap();
    h.broker.enqueue(msg(&q, "one")).await.unwrap();
    let got = fetch(&h, &c, std::slice::from_ref(&q), 10, Duration::from_secs(1)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(body(&got[0]), "one");
    assert_eq!(got[0].delivery_count, 1);
    assert_eq!(got[0].queue, q);
    h.broker.ack(&c, &got[0]).await.unwrap();
    assert!(fetch(&h, &c, &[q], 10, Duration::ZERO).await.is_empty());
}

/// An empty queue: fetch waits about `wait`, then returns nothing.
pub async fn fetch_waits_then_returns_empty(h: Harness) {
    let c = ConsumerId::new();
    let start = Instant::now();
    assert!(fetch(&h, &c, &[queue("empty")], 5, Duration::from_millis(300)).await.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(250), "returned after {:?}", start.elapsed());
}

/// A blocked fetch returns the message enqueued while it waits, alone or in a batch.
pub async fn blocked_fetch_wakes_on_enqueue(h: Harness) {
    let q = queue("wake");
    let c = ConsumerId::new();
    for batch in [false, true] {
        let (h2, q2, c2) = (h.clone(), q.clone(), c.clone());
        let waiter = tokio::spawn(async move { fetch(&h2, &c2, &[q2], 2, Duration::from_secs(20)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        if batch {
            h.broker.enqueue_batch(vec![msg(&q, "b1"), msg(&q, "b2")]).await.unwrap();
        } else {
            h.broker.enqueue(msg(&q, "late")).await.unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").unwrap();
        let want: &[&str] = if batch { &["b1", "b2"] } else { &["late"] };
        assert_eq!(got.iter().map(body).collect::<Vec<_>>(), want);
    }
}

/// A message with an eta is not delivered before it, and is after.
pub async fn delayed_message_waits_for_its_eta(h: Harness) {
    let q = queue("eta");
    let c = ConsumerId::new();
    let eta = SystemTime::now() + Duration::from_millis(700);
    h.broker.enqueue(msg(&q, "later").with_eta(Some(eta))).await.unwrap();
    assert!(fetch(&h, &c, std::slice::from_ref(&q), 1, Duration::from_millis(100)).await.is_empty());
    let got = fetch(&h, &c, &[q], 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert!(SystemTime::now() >= eta, "delivered before its eta");
}

/// `retry` acks the delivery and the replacement arrives after its delay.
pub async fn retry_is_delivered_after_its_delay(h: Harness) {
    let q = queue("retry");
    let c = ConsumerId::new();
    h.broker.enqueue(msg(&q, "try1")).await.unwrap();
    let got = fetch(&h, &c, std::slice::from_ref(&q), 1, Duration::from_secs(1)).await;
    let eta = SystemTime::now() + Duration::from_millis(500);
    h.broker.retry(&c, &got[0], msg(&q, "try2").with_eta(Some(eta))).await.unwrap();
    assert!(fetch(&h, &c, std::slice::from_ref(&q), 1, Duration::from_millis(100)).await.is_empty());
    let again = fetch(&h, &c, &[q], 1, Duration::from_secs(10)).await;
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["try2"]);
    assert_eq!(again[0].delivery_count, 1, "a retry is a new message");
}

/// A consumer stops heartbeating: another one's `recover` returns its message, counted.
pub async fn redelivery_after_a_consumer_dies(h: Harness) {
    let q = queue("dies");
    let (dead, live) = (ConsumerId::new(), ConsumerId::new());
    h.broker.heartbeat(&dead, Duration::from_millis(200)).await.unwrap();
    h.broker.enqueue(msg(&q, "job")).await.unwrap();
    assert_eq!(fetch(&h, &dead, std::slice::from_ref(&q), 1, Duration::from_secs(1)).await.len(), 1);
    assert!(recover_soon(&h, &live).await >= 1);
    let got = fetch(&h, &live, &[q], 1, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].delivery_count, 2);
    h.broker.ack(&live, &got[0]).await.unwrap();
}

/// Past the delivery limit, a recovered message goes to the dead letters with a reason.
pub async fn dead_letter_after_max_deliveries(h: Harness) {
    let q = queue("limit");
    h.broker.enqueue(msg(&q, "poison")).await.unwrap();
    for _ in 0..SUITE_MAX_DELIVERIES {
        let dying = ConsumerId::new();
        h.broker.heartbeat(&dying, Duration::from_millis(200)).await.unwrap();
        assert_eq!(fetch(&h, &dying, std::slice::from_ref(&q), 1, Duration::from_secs(2)).await.len(), 1);
        assert!(recover_soon(&h, &ConsumerId::new()).await >= 1);
    }
    assert!(fetch(&h, &ConsumerId::new(), std::slice::from_ref(&q), 1, Duration::from_millis(200)).await.is_empty());
    let inspect = h.broker.inspect().expect("the suite needs Inspect");
    let dead = inspect.dead_letters(1000).await.unwrap();
    let ours = dead.iter().find(|d| d.queue == q).expect("dead-lettered");
    assert_eq!(ours.payload, b"poison");
    assert!(ours.reason.contains("delivered"), "reason: {}", ours.reason);
}

/// `release` puts a message back at the front, and the next delivery is not counted twice.
pub async fn release_returns_without_counting(h: Harness) {
    let q = queue("release");
    let c = ConsumerId::new();
    h.broker.enqueue_batch(vec![msg(&q, "a"), msg(&q, "b")]).await.unwrap();
    let got = fetch(&h, &c, std::slice::from_ref(&q), 1, Duration::from_secs(1)).await;
    h.broker.release(&c, &got[0]).await.unwrap();
    let again = fetch(&h, &c, &[q], 2, Duration::from_secs(1)).await;
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(again[0].delivery_count, 1);
}

/// `dead_letter` keeps the payload and the reason, and the message is gone from the queue.
pub async fn explicit_dead_letter_keeps_reason(h: Harness) {
    let q = queue("bury");
    let c = ConsumerId::new();
    h.broker.enqueue(msg(&q, "\u{1}garbage")).await.unwrap();
    let got = fetch(&h, &c, std::slice::from_ref(&q), 1, Duration::from_secs(1)).await;
    h.broker.dead_letter(&c, &got[0], "undecodable: test").await.unwrap();
    let dead = h.broker.inspect().expect("Inspect").dead_letters(1000).await.unwrap();
    let ours = dead.iter().find(|d| d.queue == q).expect("dead-lettered");
    assert_eq!(ours.reason, "undecodable: test");
    assert_eq!(ours.payload, b"\x01garbage");
    assert!(fetch(&h, &c, &[q], 1, Duration::ZERO).await.is_empty());
}

/// A consumer whose message was recovered cannot ack it (fencing).
pub async fn ack_after_recovery_is_fenced(h: Harness) {
    let q = queue("fence");
    let (slow, live) = (ConsumerId::new(), ConsumerId::new());
    h.broker.heartbeat(&slow, Duration::from_millis(200)).await.unwrap();
    h.broker.enqueue(msg(&q, "job")).await.unwrap();
    let old = fetch(&h, &slow, std::slice::from_ref(&q), 1, Duration::from_secs(1)).await;
    assert!(recover_soon(&h, &live).await >= 1);
    let new = fetch(&h, &live, std::slice::from_ref(&q), 1, Duration::from_secs(2)).await;
    let err = h.broker.ack(&slow, &old[0]).await.expect_err("a stale ack must be refused");
    assert_eq!(err.kind(), crate::ErrorKind::Fenced);
    let fenced = |r: Result<(), crate::BrokerError>| r.expect_err("refused").kind() == crate::ErrorKind::Fenced;
    assert!(fenced(h.broker.retry(&slow, &old[0], msg(&q, "stale retry")).await));
    assert!(fenced(h.broker.release(&slow, &old[0]).await));
    assert!(fenced(h.broker.dead_letter(&slow, &old[0], "stale").await));
    assert!(
        fetch(&h, &live, std::slice::from_ref(&q), 5, Duration::ZERO).await.is_empty(),
        "a refused retry enqueues nothing"
    );
    h.broker.ack(&live, &new[0]).await.unwrap();
}

/// `store_and_ack` stores the final state and acks the delivery; once the delivery was
/// recovered by another worker it is refused as fenced, and a backend that does both
/// in one step ([`ResultBackend::stores_acks_of`]) then stores nothing either.
pub async fn store_and_ack_settles_and_is_fenced(h: Harness) {
    let q = queue("settle");
    let ttl = Duration::from_secs(60);
    let done = |worker: &ConsumerId, result: u8| TaskMeta {
        worker: Some(worker.to_string()),
        result: Some(vec![result]),
        ..TaskMeta::state(TaskState::Success)
    };
    let (slow, live) = (ConsumerId::new(), ConsumerId::new());
    h.broker.heartbeat(&live, Duration::from_secs(30)).await.unwrap();
    h.broker.enqueue(msg(&q, "job")).await.unwrap();
    let got = fetch(&h, &live, std::slice::from_ref(&q), 1, Duration::from_secs(1)).await;
    let id = TaskId::new();
    let ack = crate::Ack { broker: &*h.broker, consumer: &live, delivery: &got[0] };
    h.backend.store_and_ack(&id, done(&live, 7), ttl, ack).await.unwrap();
    let meta = h.backend.get(&id).await.unwrap().expect("stored");
    assert_eq!((meta.state, meta.result), (TaskState::Success, Some(vec![7])));
    let err = h.broker.ack(&live, &got[0]).await.expect_err("acked already");
    assert_eq!(err.kind(), crate::ErrorKind::Fenced);

    h.broker.heartbeat(&slow, Duration::from_millis(200)).await.unwrap();
    h.broker.enqueue(msg(&q, "late")).await.unwrap();
    let old = fetch(&h, &slow, std::slice::from_ref(&q), 1, Duration::from_secs(1)).await;
    assert!(recover_soon(&h, &live).await >= 1);
    let stale = TaskId::new();
    let ack = crate::Ack { broker: &*h.broker, consumer: &slow, delivery: &old[0] };
    let err = h.backend.store_and_ack(&stale, done(&slow, 8), ttl, ack).await.expect_err("a stale settle is refused");
    assert_eq!(err.kind(), crate::ErrorKind::Fenced);
    if h.backend.stores_acks_of(&*h.broker) {
        assert!(h.backend.get(&stale).await.unwrap().is_none(), "a refused settle stores nothing");
    }
    let again = fetch(&h, &live, &[q], 1, Duration::from_secs(2)).await;
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["late"], "the recovered message is delivered again");
}

/// Higher priorities first; FIFO within one priority.
pub async fn priorities_highest_first(h: Harness) {
    let q = queue("prio");
    let c = ConsumerId::new();
    for (p, b) in [(0, "low1"), (9, "top"), (5, "mid"), (0, "low2")] {
        h.broker.enqueue(msg(&q, b).with_priority(p)).await.unwrap();
    }
    let got = fetch(&h, &c, &[q], 10, Duration::from_secs(1)).await;
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["top", "mid", "low1", "low2"]);
    assert_eq!(got[0].priority, 9);
}

/// A batch arrives whole and in order.
pub async fn batch_enqueue_keeps_order(h: Harness) {
    let q = queue("batch");
    let c = ConsumerId::new();
    let bodies: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    h.broker.enqueue_batch(bodies.iter().map(|b| msg(&q, b)).collect()).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 100 {
        let batch = fetch(&h, &c, std::slice::from_ref(&q), 64, Duration::from_secs(1)).await;
        assert!(!batch.is_empty(), "missing messages after {}", got.len());
        got.extend(batch.iter().map(body));
    }
    assert_eq!(got, bodies);
}

/// `max` is respected, and earlier queues are served first.
pub async fn fetch_respects_max_and_queue_order(h: Harness) {
    let (a, b) = (queue("qa"), queue("qb"));
    let c = ConsumerId::new();
    h.broker.enqueue(msg(&b, "b1")).await.unwrap();
    h.broker.enqueue(msg(&a, "a1")).await.unwrap();
    h.broker.enqueue(msg(&a, "a2")).await.unwrap();
    let queues = [a, b];
    let first = fetch(&h, &c, &queues, 2, Duration::from_secs(1)).await;
    assert_eq!(first.iter().map(body).collect::<Vec<_>>(), ["a1", "a2"]);
    let second = fetch(&h, &c, &queues, 2, Duration::from_secs(1)).await;
    assert_eq!(second.iter().map(body).collect::<Vec<_>>(), ["b1"]);
}

/// Stored fields merge: later updates keep what they do not set.
pub async fn result_store_merges_fields(h: Harness) {
    let id = TaskId::new();
    let ttl = Duration::from_secs(60);
    assert!(h.backend.get(&id).await.unwrap().is_none());
    let started = TaskMeta {
        task: Some("t".into()),
        worker: Some("w1".into()),
        started_ms: Some(5),
        args: Some(vec![0x81, 0xa1, b'x', 0x01]),
        queue: Some("q".into()),
        ..TaskMeta::state(TaskState::Started)
    };
    h.backend.store(&id, started, ttl).await.unwrap();
    let done = TaskMeta { result: Some(vec![0x2a]), finished_ms: Some(9), ..TaskMeta::state(TaskState::Success) };
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
    let start = TaskMeta {
        task: Some("t".into()),
        worker: Some("w1".into()),
        queue: Some("q".into()),
        retries: Some(2),
        started_ms: Some(5),
        args: Some(vec![0x91, 0x01]),
        ..TaskMeta::state(TaskState::Started)
    };
    let success = TaskMeta {
        worker: Some("w1".into()),
        runtime_ms: Some(3),
        finished_ms: Some(9),
        result: Some(vec![0x2a]),
        ..TaskMeta::state(TaskState::Success)
    };
    // A run whose start was not stored: one write with all of it.
    let untracked = TaskMeta { state: TaskState::Success, ..merged(&start, &success) };
    let failure = TaskMeta {
        error: Some("boom".into()),
        progress: Some(vec![0x0a]),
        ..TaskMeta { state: TaskState::Failure, ..merged(&start, &success) }
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
    TaskMeta {
        state: u.state,
        task: u.task.or(b.task),
        error: u.error.or(b.error),
        worker: u.worker.or(b.worker),
        queue: u.queue.or(b.queue),
        runtime_ms: u.runtime_ms.or(b.runtime_ms),
        retries: u.retries.or(b.retries),
        started_ms: u.started_ms.or(b.started_ms),
        finished_ms: u.finished_ms.or(b.finished_ms),
        result: u.result.or(b.result),
        progress: u.progress.or(b.progress),
        args: u.args.or(b.args),
    }
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
    let done = TaskMeta { result: Some(vec![1]), ..TaskMeta::state(TaskState::Success) };
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
    let by = |state, worker: &str| TaskMeta { worker: Some(worker.to_owned()), ..TaskMeta::state(state) };
    h.backend.store(&id, by(TaskState::Started, "old"), ttl).await.unwrap();
    h.backend.store(&id, by(TaskState::Started, "new"), ttl).await.unwrap();
    let late = TaskMeta { result: Some(vec![1]), ..by(TaskState::Success, "old") };
    let err = h.backend.store(&id, late, ttl).await.expect_err("the old worker's result must be refused");
    assert_eq!(err.kind(), crate::ErrorKind::Fenced);
    let current = TaskMeta { result: Some(vec![2]), ..by(TaskState::Success, "new") };
    h.backend.store(&id, current, ttl).await.unwrap();
    let meta = h.backend.get(&id).await.unwrap().expect("stored");
    assert_eq!((meta.state, meta.result, meta.worker.as_deref()), (TaskState::Success, Some(vec![2]), Some("new")));
}

/// A batch mixing priorities, queues and a delayed message: each queue serves its
/// messages highest priority first and FIFO within one; the delayed one waits.
pub async fn a_mixed_batch_keeps_priorities_and_delays(h: Harness) {
    let (a, b) = (queue("mix-a"), queue("mix-b"));
    let c = ConsumerId::new();
    let later = SystemTime::now() + Duration::from_millis(600);
    h.broker
        .enqueue_batch(vec![
            msg(&a, "a-low-1"),
            msg(&b, "b-1"),
            msg(&a, "a-high").with_priority(8),
            msg(&a, "a-later").with_eta(Some(later)),
            msg(&a, "a-low-2"),
        ])
        .await
        .unwrap();
    let got = fetch(&h, &c, std::slice::from_ref(&a), 10, Duration::from_secs(1)).await;
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["a-high", "a-low-1", "a-low-2"]);
    let got = fetch(&h, &c, std::slice::from_ref(&b), 10, Duration::from_secs(1)).await;
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["b-1"]);
    let got = fetch(&h, &c, std::slice::from_ref(&a), 10, Duration::from_secs(10)).await;
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["a-later"]);
    assert!(SystemTime::now() >= later);
}

/// A worker's announcement is listed with what it said, and gone after its TTL.
pub async fn workers_announce_themselves_until_they_expire(h: Harness) {
    let directory = h.broker.directory().expect("the suite needs a worker directory");
    let id = ConsumerId::new();
    let mut info = crate::broker::WorkerInfo::new(
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
    use crate::broker::PeekAt;
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
    assert!(!inspect.retry_dead_task(&crate::TaskId::new()).await.unwrap(), "no such dead task");
    assert_eq!(inspect.queue_stats(&q).await.unwrap().dead, 2);
    assert_eq!(inspect.purge_dead(&q).await.unwrap(), 2);
    assert_eq!(inspect.queue_stats(&q).await.unwrap().dead, 0);
}

/// The recent-tasks history lists changed tasks newest first, filtered by state, name
/// and time, and counts finished ones in the current minute.
pub async fn history_lists_recent_tasks_and_counts_them_per_minute(h: Harness) {
    use crate::backend::TaskFilter;
    let history = h.backend.history().expect("the suite needs a task history");
    let ttl = Duration::from_secs(60);
    let tag = TaskId::new().to_string();
    let name = |n: &str| format!("{n}-{tag}");
    let before = history.throughput(1).await.unwrap()[0];
    let since = crate::envelope::now_ms();
    let ids: Vec<TaskId> = (0..4).map(|_| TaskId::new()).collect();
    for (i, id) in ids.iter().enumerate() {
        let task = if i < 3 { name("alpha") } else { name("beta") };
        let started = TaskMeta {
            task: Some(task),
            worker: Some("w".into()),
            started_ms: Some(crate::envelope::now_ms()),
            ..TaskMeta::state(TaskState::Started)
        };
        h.backend.store(id, started, ttl).await.unwrap();
    }
    let done = |state| TaskMeta { worker: Some("w".into()), ..TaskMeta::state(state) };
    h.backend.store(&ids[0], done(TaskState::Success), ttl).await.unwrap();
    h.backend.store(&ids[1], done(TaskState::Failure), ttl).await.unwrap();
    h.backend.store(&ids[3], done(TaskState::Success), ttl).await.unwrap();

    let mine = |found: Vec<crate::RecentTask>| -> Vec<TaskId> {
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
    let write = TaskMeta { task: Some(name.clone()), worker: Some("w1".into()), ..TaskMeta::state(TaskState::Started) };
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
    use crate::events::{Event, EventKind};
    let history = h.backend.history().expect("the suite needs a task history");
    let ttl = Duration::from_secs(60);
    let name = format!("events-{}", TaskId::new());
    let (a, b) = (TaskId::new(), TaskId::new());
    let write = |state, runtime_ms| TaskMeta {
        task: Some(name.clone()),
        worker: Some("w1".into()),
        runtime_ms,
        ..TaskMeta::state(state)
    };
    h.backend.store(&a, write(TaskState::Started, None), ttl).await.unwrap();
    let progress =
        TaskMeta { progress: Some(vec![0x01]), task: Some(name.clone()), ..TaskMeta::state(TaskState::Progress) };
    h.backend.store(&a, progress, ttl).await.unwrap();
    h.backend.store(&a, write(TaskState::Success, Some(42)), ttl).await.unwrap();
    h.backend.store(&b, write(TaskState::Started, None), ttl).await.unwrap();
    h.backend.store(&b, write(TaskState::Failure, Some(70_000)), ttl).await.unwrap();
    let dead = Event::new(EventKind::TaskDeadLettered).task(&b, &name).worker("w1").detail("unknown task");
    history.record_event(&dead).await.unwrap();
    let gone = format!("worker-{name}");
    let since = crate::envelope::now_ms() - 1;
    history.record_event(&Event::new(EventKind::WorkerOffline).worker(gone.clone())).await.unwrap();
    let offline = history.workers_offline(since).await.unwrap();
    assert!(offline.iter().any(|(w, at)| w == &gone && *at >= since), "{offline:?}");
    assert!(history.workers_offline(crate::envelope::now_ms() + 1_000).await.unwrap().is_empty());

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
