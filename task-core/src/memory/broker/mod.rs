//! The in-memory broker: its state and the helpers every trait impl shares. The impls
//! live beside it, one file per concern, as in every driver: `queue` ([`Broker`]),
//! `directory`, `capabilities` (rate limits, locks, send-once, chords, ticks), `inspect`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::broker::{Broker, Recovery};
use crate::capability::{
    ChordJoin, ChordStore, DeadLetter, Inspect, PeekAt, Peeked, QueuePause, QueueStats, RateLimits, SendOnce,
    TickStore, UniqueLocks, WorkerDirectory, WorkerInfo,
};
use crate::error::{BrokerError, ErrorKind};
use crate::future::BoxFuture;
use crate::id::{ConsumerId, TaskId};
use crate::link::ChordMember;
use crate::message::{Delivery, MAX_PRIORITY, Message, Receipt};
use crate::scheduled::ScheduledEntry;
use crate::task::RateLimit;
use crate::time::now_ms;

mod capabilities;
mod directory;
mod inspect;
mod queue;

/// How many deliveries a message gets before it goes to the dead letters.
pub const DEFAULT_MAX_DELIVERIES: u32 = 5;
/// How long a consumer that never sent a heartbeat is thought alive after a fetch.
const IMPLICIT_TTL: Duration = Duration::from_secs(60);
/// The dead letters kept, oldest dropped first.
const DEAD_LETTER_CAP: usize = 10_000;

/// A broker operation, to name in [`InMemoryBroker::fail_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokerOp {
    /// `enqueue` and `enqueue_batch`.
    Enqueue,
    /// `fetch`.
    Fetch,
    /// `ack`.
    Ack,
}

/// The embedded broker: queues in this process's memory. See the [module docs](super).
///
/// ```
/// use std::time::Duration;
/// use task_core::broker::{Broker, ConsumerId, Message};
/// use task_core::memory::InMemoryBroker;
/// use task_core::TaskId;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let broker = InMemoryBroker::new();
/// broker.enqueue(Message::new(TaskId::new(), "default", b"hello".to_vec())).await?;
/// assert_eq!(broker.len("default"), 1);
///
/// let me = ConsumerId::new();
/// let got = broker.fetch(&me, &["default".into()], 10, Duration::from_secs(1)).await?;
/// assert_eq!(got[0].payload, b"hello");
/// assert_eq!(broker.in_flight(), 1); // held until acked
/// broker.ack(&me, &got[0]).await?;
/// assert_eq!(broker.in_flight(), 0);
/// # Ok::<_, task_core::BrokerError>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct InMemoryBroker {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
    max_deliveries: u32,
}

#[derive(Debug)]
struct Entry {
    queue: String,
    priority: u8,
    payload: Vec<u8>,
    deliveries: u32,
}

#[derive(Debug, Default)]
struct Lanes([VecDeque<Entry>; MAX_PRIORITY as usize + 1]);

impl Lanes {
    fn len(&self) -> usize {
        self.0.iter().map(VecDeque::len).sum()
    }

    fn pop(&mut self) -> Option<Entry> {
        self.0.iter_mut().rev().find_map(VecDeque::pop_front)
    }
}

/// One chord's join: the members' results so far, and whether it is closed.
#[derive(Debug)]
struct Chord {
    size: u32,
    callback: Vec<u8>,
    results: BTreeMap<u32, Vec<u8>>,
    closed: bool,
    until: Instant,
}

#[derive(Debug, Default)]
struct State {
    queues: HashMap<String, Lanes>,
    delayed: BTreeMap<(SystemTime, u64), Entry>,
    /// Queues no consumer takes from.
    paused: std::collections::HashSet<String>,
    held: HashMap<u64, (ConsumerId, Entry)>,
    consumers: HashMap<ConsumerId, Instant>,
    dead: VecDeque<DeadLetter>,
    /// Rate limiters: the theoretical arrival time of the next start (GCRA).
    rates: HashMap<String, SystemTime>,
    /// Uniqueness locks: holder and expiry.
    uniques: HashMap<String, (TaskId, Instant)>,
    /// Announced workers and when their record expires.
    directory: HashMap<String, (WorkerInfo, Instant)>,
    /// Open chord joins, by chord id.
    chords: HashMap<TaskId, Chord>,
    /// Ids sent with `enqueue_once`, until when.
    sent_once: HashMap<TaskId, Instant>,
    /// The last claimed tick of each periodic entry.
    ticks: HashMap<String, i64>,
    /// Announced periodic entries, by name.
    schedule: BTreeMap<String, ScheduledEntry>,
    next_seq: u64,
    faults: HashMap<BrokerOp, usize>,
}

impl State {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn push(&mut self, entry: Entry, front: bool) {
        let lane = &mut self.queues.entry(entry.queue.clone()).or_default().0[entry.priority as usize];
        if front {
            lane.push_front(entry);
        } else {
            lane.push_back(entry);
        }
    }

    fn add(&mut self, message: Message) {
        let entry = Entry {
            queue: message.queue,
            priority: message.priority.min(MAX_PRIORITY),
            payload: message.payload,
            deliveries: 0,
        };
        match message.eta {
            Some(eta) if eta > SystemTime::now() => {
                let seq = self.seq();
                self.delayed.insert((eta, seq), entry);
            }
            _ => self.push(entry, false),
        }
    }

    fn promote_due(&mut self) {
        let now = SystemTime::now();
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let entry = entry.remove();
            self.push(entry, false);
        }
    }

    /// Adds a dead letter (the oldest goes past the cap) and returns it.
    fn bury(&mut self, entry: Entry, reason: String) -> DeadLetter {
        if self.dead.len() == DEAD_LETTER_CAP {
            self.dead.pop_front();
            tracing::warn!(cap = DEAD_LETTER_CAP, "the dead letters are at their cap: the oldest was dropped");
        }
        let letter = DeadLetter::new(entry.queue, reason, entry.payload, now_ms());
        self.dead.push_back(letter.clone());
        letter
    }

    fn fault(&mut self, op: BrokerOp) -> Result<(), BrokerError> {
        match self.faults.get_mut(&op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(BrokerError::new(ErrorKind::Connection, format!("injected failure of {op:?}")))
            }
            _ => Ok(()),
        }
    }

    fn take_held(&mut self, consumer: &ConsumerId, delivery: &Delivery) -> Result<Entry, BrokerError> {
        let token = token_of(&delivery.receipt)?;
        match self.held.remove(&token) {
            Some((owner, entry)) if &owner == consumer => Ok(entry),
            Some(other) => {
                self.held.insert(token, other);
                Err(fenced(consumer))
            }
            None => Err(fenced(consumer)),
        }
    }
}

fn fenced(consumer: &ConsumerId) -> BrokerError {
    BrokerError::new(
        ErrorKind::Fenced,
        format!(
            "consumer {consumer} no longer holds this delivery (it missed its heartbeat and the message was recovered)"
        ),
    )
}

fn token_of(receipt: &Receipt) -> Result<u64, BrokerError> {
    let bytes: [u8; 8] = receipt
        .as_bytes()
        .try_into()
        .map_err(|_| BrokerError::new(ErrorKind::Protocol, "receipt is not from the in-memory broker"))?;
    Ok(u64::from_le_bytes(bytes))
}

impl Default for InMemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryBroker {
    /// A new, empty broker; a message goes to the dead letters after 5 deliveries.
    pub fn new() -> Self {
        Self::with_max_deliveries(DEFAULT_MAX_DELIVERIES)
    }

    /// A new broker whose messages go to the dead letters after `n` deliveries.
    pub fn with_max_deliveries(n: u32) -> Self {
        Self { shared: Arc::new(Shared { state: Mutex::default(), wake: Notify::new(), max_deliveries: n.max(1) }) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (no partial writes),
        // so a poisoned lock is still usable.
        self.shared.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Runs `change` under the lock; when it added a message (returned true), wakes the
    /// blocked fetches once the lock is released.
    fn add_then_wake(&self, change: impl FnOnce(&mut State) -> Result<bool, BrokerError>) -> Result<bool, BrokerError> {
        let added = change(&mut self.lock())?;
        if added {
            self.shared.wake.notify_waiters();
        }
        Ok(added)
    }

    /// Ready messages in `queue` (due, not held).
    pub fn len(&self, queue: &str) -> usize {
        let mut state = self.lock();
        state.promote_due();
        state.queues.get(queue).map_or(0, Lanes::len)
    }

    /// True when no message is ready, delayed or held anywhere.
    pub fn is_empty(&self) -> bool {
        let state = self.lock();
        state.delayed.is_empty() && state.held.is_empty() && state.queues.values().all(|l| l.len() == 0)
    }

    /// Messages waiting for their eta, in all queues.
    pub fn scheduled(&self) -> usize {
        self.lock().delayed.len()
    }

    /// Messages held by consumers, not yet acked.
    pub fn in_flight(&self) -> usize {
        self.lock().held.len()
    }

    /// A copy of the dead letters, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead.iter().cloned().collect()
    }

    /// Makes the next `times` calls of `op` fail with a connection error, to test
    /// how callers and workers handle a broker outage.
    pub fn fail_next(&self, op: BrokerOp, times: usize) {
        self.lock().faults.insert(op, times);
    }

    fn enqueue_all(&self, messages: Vec<Message>) -> Result<(), BrokerError> {
        {
            let mut state = self.lock();
            state.fault(BrokerOp::Enqueue)?;
            for message in messages {
                state.add(message);
            }
        }
        self.shared.wake.notify_waiters();
        Ok(())
    }

    fn try_take(
        &self,
        consumer: &ConsumerId,
        queues: &[String],
        max: usize,
    ) -> Result<Result<Vec<Delivery>, Option<SystemTime>>, BrokerError> {
        let mut state = self.lock();
        state.fault(BrokerOp::Fetch)?;
        state.promote_due();
        state.consumers.entry(consumer.clone()).or_insert_with(|| Instant::now() + IMPLICIT_TTL);
        let mut out = Vec::new();
        'queues: for queue in queues {
            if state.paused.contains(queue) {
                continue;
            }
            while out.len() < max {
                let Some(mut entry) = state.queues.get_mut(queue).and_then(Lanes::pop) else {
                    continue 'queues;
                };
                entry.deliveries += 1;
                let token = state.seq();
                out.push(Delivery::new(
                    entry.queue.clone(),
                    entry.priority,
                    entry.payload.clone(),
                    entry.deliveries,
                    Receipt::new(token.to_le_bytes().to_vec()),
                ));
                state.held.insert(token, (consumer.clone(), entry));
            }
        }
        if out.is_empty() { Ok(Err(state.delayed.keys().next().map(|k| k.0))) } else { Ok(Ok(out)) }
    }

    fn recover_now(&self) -> Recovery {
        let state = self.lock();
        let now = Instant::now();
        let dead: Vec<ConsumerId> =
            state.consumers.iter().filter(|(_, deadline)| **deadline <= now).map(|(c, _)| c.clone()).collect();
        drop(state);
        self.recover_from(&dead, "stopped heartbeating")
    }

    /// Returns what `dead` hold to their queues (or past the delivery limit to the dead
    /// letters, saying the consumer `how`), and forgets them.
    pub(super) fn recover_from(&self, dead: &[ConsumerId], how: &str) -> Recovery {
        if dead.is_empty() {
            return Recovery::default();
        }
        let mut state = self.lock();
        for consumer in dead {
            state.consumers.remove(consumer);
        }
        let tokens: Vec<u64> =
            state.held.iter().filter(|(_, (owner, _))| dead.contains(owner)).map(|(t, _)| *t).collect();
        let moved = tokens.len();
        let mut buried = Vec::new();
        for token in tokens {
            let (owner, entry) = state.held.remove(&token).expect("token listed above");
            if entry.deliveries >= self.shared.max_deliveries {
                let reason = format!(
                    "delivered {} times without an ack (limit {}); last consumer {owner} {how}",
                    entry.deliveries, self.shared.max_deliveries
                );
                buried.push(state.bury(entry, reason));
            } else {
                state.push(entry, true);
            }
        }
        drop(state);
        self.shared.wake.notify_waiters();
        Recovery::new(moved, buried)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TaskId;

    fn msg(queue: &str, priority: u8, body: &str) -> Message {
        Message::new(TaskId::new(), queue, body.as_bytes().to_vec()).with_priority(priority)
    }

    #[tokio::test]
    async fn higher_priority_first_then_fifo_and_queue_order() {
        let b = InMemoryBroker::new();
        for m in [msg("a", 0, "a0"), msg("a", 9, "a9"), msg("b", 5, "b5"), msg("a", 0, "a0'")] {
            b.enqueue(m).await.unwrap();
        }
        let c = ConsumerId::new();
        let got = b.fetch(&c, &["a".into(), "b".into()], 10, Duration::ZERO).await.unwrap();
        let bodies: Vec<_> = got.iter().map(|d| String::from_utf8(d.payload.clone()).unwrap()).collect();
        assert_eq!(bodies, ["a9", "a0", "a0'", "b5"]);
    }

    #[tokio::test]
    async fn ack_by_another_consumer_is_fenced() {
        let b = InMemoryBroker::new();
        b.enqueue(msg("q", 0, "x")).await.unwrap();
        let (c1, c2) = (ConsumerId::new(), ConsumerId::new());
        let got = b.fetch(&c1, &["q".into()], 1, Duration::ZERO).await.unwrap();
        let err = b.ack(&c2, &got[0]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fenced);
        b.ack(&c1, &got[0]).await.unwrap();
    }

    #[tokio::test]
    async fn injected_failures_fail_then_clear() {
        let b = InMemoryBroker::new();
        b.fail_next(BrokerOp::Enqueue, 1);
        assert_eq!(b.enqueue(msg("q", 0, "x")).await.unwrap_err().kind(), ErrorKind::Connection);
        b.enqueue(msg("q", 0, "x")).await.unwrap();
        assert_eq!(b.len("q"), 1);
    }

    #[tokio::test]
    async fn a_blocked_fetch_wakes_on_enqueue() {
        let b = InMemoryBroker::new();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            let c = ConsumerId::new();
            b2.fetch(&c, &["q".into()], 1, Duration::from_secs(30)).await.unwrap()
        });
        tokio::task::yield_now().await;
        b.enqueue(msg("q", 0, "x")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert_eq!(got.len(), 1);
    }

    #[tokio::test]
    async fn purge_counts_ready_and_delayed() {
        let b = InMemoryBroker::new();
        b.enqueue(msg("q", 0, "x")).await.unwrap();
        b.enqueue(msg("q", 0, "y").with_eta(Some(SystemTime::now() + Duration::from_secs(60)))).await.unwrap();
        assert_eq!(b.purge("q").await.unwrap(), 2);
        assert!(b.is_empty());
    }
}
