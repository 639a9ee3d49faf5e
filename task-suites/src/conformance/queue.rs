//! Broker properties: enqueue, fetch, ack, delays, retries, recovery, dead letters, priorities, fencing.

use super::*;

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
    assert!(recover_soon(&h, &live).await.moved >= 1);
    let got = fetch(&h, &live, &[q], 1, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].delivery_count, 2);
    h.broker.ack(&live, &got[0]).await.unwrap();
}

/// A consumer known dead (a pool's child that exited): `recover_consumer` returns what it
/// held at once, counted, while its heartbeat still runs; it is out of the directory.
pub async fn a_dead_consumer_is_recovered_at_once(h: Harness) {
    let q = queue("exited");
    let dead = ConsumerId::new();
    h.broker.heartbeat(&dead, Duration::from_secs(300)).await.unwrap();
    h.broker.enqueue_batch(vec![msg(&q, "a"), msg(&q, "b")]).await.unwrap();
    assert_eq!(fetch(&h, &dead, std::slice::from_ref(&q), 2, Duration::from_secs(1)).await.len(), 2);
    let recovery = h.broker.recover_consumer(&dead).await.unwrap();
    assert_eq!(recovery.moved, 2);
    assert!(recovery.buried.is_empty());
    if let Some(directory) = h.broker.directory() {
        let listed = directory.workers().await.unwrap();
        assert!(listed.iter().all(|w| w.id != dead.as_str()), "an exited consumer leaves the directory");
    }
    let live = ConsumerId::new();
    let mut got = fetch(&h, &live, std::slice::from_ref(&q), 2, Duration::from_secs(2)).await;
    got.sort_by_key(body); // recovered in no particular order
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["a", "b"]);
    assert!(got.iter().all(|d| d.delivery_count == 2), "counted as a delivery");
    // Past the limit it goes to the dead letters, for the caller to end its task.
    h.broker.ack(&live, &got[1]).await.unwrap();
    h.broker.release(&live, &got[0]).await.unwrap();
    let mut buried = Vec::new();
    for _ in 1..SUITE_MAX_DELIVERIES {
        let dying = ConsumerId::new();
        assert_eq!(fetch(&h, &dying, std::slice::from_ref(&q), 1, Duration::from_secs(2)).await.len(), 1);
        buried.extend(h.broker.recover_consumer(&dying).await.unwrap().buried);
    }
    assert_eq!(buried.len(), 1, "{buried:?}");
    assert_eq!(buried[0].payload, b"a");
    assert!(fetch(&h, &live, &[q], 1, Duration::from_millis(100)).await.is_empty());
}

/// Past the delivery limit, a recovered message goes to the dead letters with a reason.
pub async fn dead_letter_after_max_deliveries(h: Harness) {
    let q = queue("limit");
    h.broker.enqueue(msg(&q, "poison")).await.unwrap();
    let mut buried = Vec::new();
    for _ in 0..SUITE_MAX_DELIVERIES {
        let dying = ConsumerId::new();
        h.broker.heartbeat(&dying, Duration::from_millis(200)).await.unwrap();
        assert_eq!(fetch(&h, &dying, std::slice::from_ref(&q), 1, Duration::from_secs(2)).await.len(), 1);
        let recovery = recover_soon(&h, &ConsumerId::new()).await;
        assert!(recovery.moved >= 1);
        buried.extend(recovery.buried.into_iter().filter(|d| d.queue == q));
    }
    // The recovery that buried it says so, for the caller to end its task.
    assert_eq!(buried.len(), 1, "{buried:?}");
    assert_eq!(buried[0].payload, b"poison");
    assert!(buried[0].reason.contains("delivered"), "reason: {}", buried[0].reason);
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
    assert!(recover_soon(&h, &live).await.moved >= 1);
    let new = fetch(&h, &live, std::slice::from_ref(&q), 1, Duration::from_secs(2)).await;
    let err = h.broker.ack(&slow, &old[0]).await.expect_err("a stale ack must be refused");
    assert_eq!(err.kind(), task_core::ErrorKind::Fenced);
    let fenced = |r: Result<(), task_core::BrokerError>| r.expect_err("refused").kind() == task_core::ErrorKind::Fenced;
    assert!(fenced(h.broker.retry(&slow, &old[0], msg(&q, "stale retry")).await));
    assert!(fenced(h.broker.release(&slow, &old[0]).await));
    assert!(fenced(h.broker.dead_letter(&slow, &old[0], "stale").await));
    assert!(
        fetch(&h, &live, std::slice::from_ref(&q), 5, Duration::ZERO).await.is_empty(),
        "a refused retry enqueues nothing"
    );
    h.broker.ack(&live, &new[0]).await.unwrap();
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
