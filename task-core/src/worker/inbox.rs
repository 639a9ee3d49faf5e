//! The deliveries a worker has fetched and not started yet, and the slots that run
//! them.
//!
//! A worker runs `concurrency` slot tasks for its whole life; each takes the next
//! delivery from the inbox and runs it to its end, then the next. Not a tokio task per
//! delivery: that would allocate and copy the runner's future (2–4 KB, above glibc's
//! per-thread cache) for every task.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, Semaphore};

use super::execute::Runner;
use crate::broker::Delivery;

/// Fetched deliveries, first in first out, shared by the slots and the fetch loop.
#[derive(Debug)]
pub(super) struct Inbox {
    queue: Mutex<VecDeque<Delivery>>,
    /// One permit per queued delivery; closed when the worker stops.
    ready: Semaphore,
    /// Deliveries taken by a slot and not finished.
    busy: AtomicUsize,
    /// Wakes the fetch loop: a slot took the last queued delivery, or left fewer than
    /// `low` queued, or finished one.
    changed: Notify,
    /// Below this many queued, the fetch loop tops the inbox up (one message a slot).
    low: AtomicUsize,
    /// Slots asked to stop (autoscale giving slots back), and their wake-up.
    retire: AtomicUsize,
    retiring: Notify,
}

impl Default for Inbox {
    fn default() -> Self {
        Self {
            queue: Mutex::default(),
            ready: Semaphore::new(0),
            busy: AtomicUsize::new(0),
            changed: Notify::new(),
            low: AtomicUsize::new(0),
            retire: AtomicUsize::new(0),
            retiring: Notify::new(),
        }
    }
}

impl Inbox {
    /// Queues fetched deliveries for the slots.
    pub(super) fn push(&self, batch: Vec<Delivery>) {
        let n = batch.len();
        self.queue().extend(batch);
        self.ready.add_permits(n);
    }

    /// Deliveries waiting for a slot.
    pub(super) fn queued(&self) -> usize {
        self.queue().len()
    }

    /// The queue and payload of each delivery waiting for a slot, first to run first
    /// (copied: the caller decodes them without holding the slots up).
    pub(super) fn waiting(&self) -> Vec<(String, Vec<u8>)> {
        self.queue().iter().map(|d| (d.queue.clone(), d.payload.clone())).collect()
    }

    /// Deliveries being run.
    pub(super) fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }

    /// Has the fetch loop woken when a slot leaves fewer than `n` queued.
    pub(super) fn set_low(&self, n: usize) {
        self.low.store(n, Ordering::Relaxed);
    }

    /// Returns when the inbox may have room again (or at once, if it changed since the
    /// last call): the caller checks again.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Asks one slot to stop after the run it is in (or at once if it waits).
    pub(super) fn retire_one(&self) {
        self.retire.fetch_add(1, Ordering::AcqRel);
        self.retiring.notify_one();
    }

    /// Takes one stop request, if there is one.
    fn take_retire(&self) -> bool {
        self.retire.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }

    /// Stops the slots (each after the run it is in) and returns what none has started.
    pub(super) fn close(&self) -> VecDeque<Delivery> {
        self.ready.close();
        std::mem::take(&mut *self.queue())
    }

    /// The next delivery, counted busy until the returned guard is dropped; `None` once
    /// the inbox is closed.
    async fn next(&self) -> Option<(Delivery, Busy<'_>)> {
        loop {
            if self.take_retire() {
                return None;
            }
            tokio::select! {
                permit = self.ready.acquire() => permit.ok()?.forget(),
                () = self.retiring.notified() => continue,
            }
            let mut queue = self.queue();
            // None: close() took it back after its permit was given.
            if let Some(delivery) = queue.pop_front() {
                // Counted busy while still locked: the fetch loop never sees a
                // delivery that is neither queued nor busy.
                self.busy.fetch_add(1, Ordering::AcqRel);
                let left = queue.len();
                if left == 0 || left + 1 == self.low.load(Ordering::Relaxed) {
                    self.changed.notify_one();
                }
                return Some((delivery, Busy(self)));
            }
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Delivery>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A delivery being run: counted busy until dropped, also when its run panics.
struct Busy<'a>(&'a Inbox);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// One slot: runs the inbox's deliveries one after another until it is closed.
pub(super) async fn slot(inbox: Arc<Inbox>, runner: Arc<Runner>) {
    while let Some((delivery, _busy)) = inbox.next().await {
        runner.handle(delivery).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::broker::Receipt;

    fn delivery(body: &str) -> Delivery {
        Delivery::new("q".into(), 0, body.as_bytes().to_vec(), 1, Receipt::new(body.as_bytes().to_vec()))
    }

    fn body(d: &Delivery) -> &str {
        std::str::from_utf8(&d.payload).unwrap()
    }

    #[tokio::test]
    async fn deliveries_come_out_in_order_and_count_busy_until_done() {
        let inbox = Inbox::default();
        inbox.push(vec![delivery("a"), delivery("b")]);
        assert_eq!((inbox.queued(), inbox.busy()), (2, 0));
        let (a, busy_a) = inbox.next().await.unwrap();
        assert_eq!((body(&a), inbox.queued(), inbox.busy()), ("a", 1, 1));
        let (b, busy_b) = inbox.next().await.unwrap();
        assert_eq!((body(&b), inbox.queued(), inbox.busy()), ("b", 0, 2));
        // Taking the last one woke the fetch loop.
        tokio::time::timeout(Duration::from_secs(1), inbox.changed()).await.expect("notified");
        drop(busy_a);
        drop(busy_b);
        assert_eq!(inbox.busy(), 0);
    }

    #[tokio::test]
    async fn a_take_that_leaves_fewer_than_the_low_mark_wakes_the_fetch_loop() {
        let inbox = Inbox::default();
        inbox.set_low(2);
        inbox.push(vec![delivery("a"), delivery("b"), delivery("c")]);
        let _a = inbox.next().await.unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(50), inbox.changed()).await;
        assert!(quiet.is_err(), "two left: as many as the mark, no wake-up");
        let _b = inbox.next().await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), inbox.changed()).await.expect("one left: woken");
    }

    #[tokio::test]
    async fn close_returns_the_unstarted_and_stops_waiting_slots() {
        let inbox = Arc::new(Inbox::default());
        let waiting = {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.next().await.map(|(d, _)| body(&d).to_owned()) })
        };
        tokio::task::yield_now().await;
        inbox.push(vec![delivery("x")]);
        assert_eq!(waiting.await.unwrap().as_deref(), Some("x"));
        inbox.push(vec![delivery("y"), delivery("z")]);
        let left: Vec<_> = inbox.close().iter().map(|d| body(d).to_owned()).collect();
        assert_eq!(left, ["y", "z"]);
        assert!(inbox.next().await.is_none(), "closed: no more deliveries");
    }

    #[tokio::test]
    async fn a_panicking_run_is_no_longer_counted_busy() {
        let inbox = Arc::new(Inbox::default());
        inbox.push(vec![delivery("boom")]);
        let run = {
            let inbox = inbox.clone();
            tokio::spawn(async move {
                let (_delivery, _busy) = inbox.next().await.unwrap();
                panic!("a bug in a run");
            })
        };
        assert!(run.await.unwrap_err().is_panic());
        assert_eq!(inbox.busy(), 0);
    }
}
