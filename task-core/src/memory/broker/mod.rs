use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::beat::ScheduledEntry;
use crate::broker::{
    BoxFuture, Broker, ChordJoin, ConsumerId, Coordination, DeadLetter, Delivery, Inspect, MAX_PRIORITY, Message,
    PeekAt, Peeked, QueueStats, Receipt, WorkerDirectory, WorkerInfo,
};
use crate::envelope::{ChordMember, now_ms};
use crate::error::{BrokerError, ErrorKind};
use crate::id::TaskId;
use crate::task::RateLimit;

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

    fn bury(&mut self, entry: Entry, reason: String) {
        if self.dead.len() == DEAD_LETTER_CAP {
            self.dead.pop_front();
        }
        self.dead.push_back(DeadLetter::new(entry.queue, reason, entry.payload, now_ms()));
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

    fn recover_now(&self) -> usize {
        let mut state = self.lock();
        let now = Instant::now();
        let dead: Vec<ConsumerId> =
            state.consumers.iter().filter(|(_, deadline)| **deadline <= now).map(|(c, _)| c.clone()).collect();
        if dead.is_empty() {
            return 0;
        }
        for consumer in &dead {
            state.consumers.remove(consumer);
        }
        let tokens: Vec<u64> =
            state.held.iter().filter(|(_, (owner, _))| dead.contains(owner)).map(|(t, _)| *t).collect();
        let moved = tokens.len();
        for token in tokens {
            let (owner, entry) = state.held.remove(&token).expect("token listed above");
            if entry.deliveries >= self.shared.max_deliveries {
                let reason = format!(
                    "delivered {} times without an ack (limit {}); last consumer {owner} stopped heartbeating",
                    entry.deliveries, self.shared.max_deliveries
                );
                state.bury(entry, reason);
            } else {
                state.push(entry, true);
            }
        }
        drop(state);
        self.shared.wake.notify_waiters();
        moved
    }
}

impl Broker for InMemoryBroker {
    fn enqueue(&self, message: Message) -> BoxFuture<'_, Result<(), BrokerError>> {
        let result = self.enqueue_all(vec![message]);
        Box::pin(async move { result })
    }

    fn enqueue_batch(&self, messages: Vec<Message>) -> BoxFuture<'_, Result<(), BrokerError>> {
        let result = self.enqueue_all(messages);
        Box::pin(async move { result })
    }

    fn fetch<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        queues: &'a [String],
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BrokerError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let notified = self.shared.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let next_due = match self.try_take(consumer, queues, max.max(1))? {
                    Ok(batch) => return Ok(batch),
                    Err(next_due) => next_due,
                };
                let mut until = deadline;
                if let Some(due) = next_due {
                    let in_ = due.duration_since(SystemTime::now()).unwrap_or_default();
                    until = until.min(tokio::time::Instant::now() + in_);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep_until(until) => {}
                }
            }
        })
    }

    fn ack<'a>(&'a self, consumer: &'a ConsumerId, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), BrokerError>> {
        let result = (|| {
            let mut state = self.lock();
            state.fault(BrokerOp::Ack)?;
            state.take_held(consumer, delivery).map(drop)
        })();
        Box::pin(async move { result })
    }

    fn retry<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
        retry: Message,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let result = (|| {
            let mut state = self.lock();
            state.take_held(consumer, delivery)?;
            state.add(retry);
            Ok(())
        })();
        self.shared.wake.notify_waiters();
        Box::pin(async move { result })
    }

    fn release<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let result = (|| {
            let mut state = self.lock();
            let mut entry = state.take_held(consumer, delivery)?;
            entry.deliveries = entry.deliveries.saturating_sub(1);
            state.push(entry, true);
            Ok(())
        })();
        self.shared.wake.notify_waiters();
        Box::pin(async move { result })
    }

    fn dead_letter<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let result = (|| {
            let mut state = self.lock();
            let entry = state.take_held(consumer, delivery)?;
            state.bury(entry, reason.to_owned());
            Ok(())
        })();
        Box::pin(async move { result })
    }

    fn heartbeat<'a>(&'a self, consumer: &'a ConsumerId, ttl: Duration) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.lock().consumers.insert(consumer.clone(), Instant::now() + ttl);
        Box::pin(async { Ok(()) })
    }

    fn recover(&self) -> BoxFuture<'_, Result<usize, BrokerError>> {
        let moved = self.recover_now();
        Box::pin(async move { Ok(moved) })
    }

    fn deregister<'a>(&'a self, consumer: &'a ConsumerId) -> BoxFuture<'a, Result<(), BrokerError>> {
        {
            let mut state = self.lock();
            state.consumers.remove(consumer);
            // A stopped worker leaves the directory at once (as in Redis, where the
            // directory lists the workers of the heartbeat set).
            state.directory.remove(consumer.as_str());
            let tokens: Vec<u64> =
                state.held.iter().filter(|(_, (owner, _))| owner == consumer).map(|(t, _)| *t).collect();
            for token in tokens {
                let (_, mut entry) = state.held.remove(&token).expect("token listed above");
                entry.deliveries = entry.deliveries.saturating_sub(1);
                state.push(entry, true);
            }
        }
        self.shared.wake.notify_waiters();
        Box::pin(async { Ok(()) })
    }

    fn inspect(&self) -> Option<&dyn Inspect> {
        Some(self)
    }

    fn coordination(&self) -> Option<&dyn Coordination> {
        Some(self)
    }

    fn directory(&self) -> Option<&dyn WorkerDirectory> {
        Some(self)
    }
}

impl WorkerDirectory for InMemoryBroker {
    fn announce<'a>(&'a self, info: &'a WorkerInfo, ttl: Duration) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.lock().directory.insert(info.id.clone(), (info.clone(), Instant::now() + ttl));
        Box::pin(async { Ok(()) })
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerInfo>, BrokerError>> {
        let now = Instant::now();
        let mut state = self.lock();
        state.directory.retain(|_, (_, until)| *until > now);
        let mut workers: Vec<WorkerInfo> = state.directory.values().map(|(info, _)| info.clone()).collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        Box::pin(async move { Ok(workers) })
    }
}

impl Coordination for InMemoryBroker {
    fn reserve_rate<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
    ) -> BoxFuture<'a, Result<Option<SystemTime>, BrokerError>> {
        let now = SystemTime::now();
        let mut state = self.lock();
        let tat = state.rates.get(key).copied().filter(|t| *t > now).unwrap_or(now);
        state.rates.insert(key.to_owned(), tat + limit.interval());
        let slot = (tat > now).then_some(tat);
        Box::pin(async move { Ok(slot) })
    }

    fn lock_unique<'a>(
        &'a self,
        key: &'a str,
        id: &'a TaskId,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<TaskId>, BrokerError>> {
        let now = Instant::now();
        let mut state = self.lock();
        let holder = match state.uniques.get(key) {
            Some((holder, until)) if *until > now => Some(holder.clone()),
            _ => {
                state.uniques.insert(key.to_owned(), (id.clone(), now + ttl));
                None
            }
        };
        Box::pin(async move { Ok(holder) })
    }

    fn unlock_unique<'a>(&'a self, key: &'a str, id: &'a TaskId) -> BoxFuture<'a, Result<(), BrokerError>> {
        let mut state = self.lock();
        if state.uniques.get(key).is_some_and(|(holder, _)| holder == id) {
            state.uniques.remove(key);
        }
        Box::pin(async { Ok(()) })
    }

    fn chord_open<'a>(
        &'a self,
        chord: &'a TaskId,
        _queue: &'a str,
        size: u32,
        callback: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let now = Instant::now();
        let mut state = self.lock();
        state.chords.retain(|_, c| c.until > now);
        let join =
            Chord { size, callback: callback.to_vec(), results: BTreeMap::new(), closed: false, until: now + ttl };
        state.chords.insert(chord.clone(), join);
        Box::pin(async { Ok(()) })
    }

    fn chord_join<'a>(
        &'a self,
        member: &'a ChordMember,
        result: &'a [u8],
    ) -> BoxFuture<'a, Result<ChordJoin, BrokerError>> {
        let mut state = self.lock();
        let join = match state.chords.get_mut(&member.chord) {
            Some(join) if !join.closed && join.until > Instant::now() => {
                join.results.entry(member.index).or_insert_with(|| result.to_vec());
                let size = usize::try_from(join.size).unwrap_or(usize::MAX);
                if join.results.len() < size {
                    ChordJoin::Waiting(join.size - u32::try_from(join.results.len()).unwrap_or(0))
                } else {
                    ChordJoin::Complete {
                        callback: join.callback.clone(),
                        results: join.results.values().cloned().collect(),
                    }
                }
            }
            _ => ChordJoin::Closed,
        };
        Box::pin(async move { Ok(join) })
    }

    fn chord_fire<'a>(&'a self, member: &'a ChordMember, message: Message) -> BoxFuture<'a, Result<bool, BrokerError>> {
        let fired = self.add_then_wake(|state| {
            Ok(match state.chords.get_mut(&member.chord) {
                Some(join) if !join.closed => {
                    join.closed = true;
                    state.add(message);
                    true
                }
                _ => false,
            })
        });
        Box::pin(async move { fired })
    }

    fn chord_fail<'a>(&'a self, member: &'a ChordMember) -> BoxFuture<'a, Result<bool, BrokerError>> {
        let mut state = self.lock();
        let closed = state.chords.get_mut(&member.chord).is_some_and(|join| !std::mem::replace(&mut join.closed, true));
        Box::pin(async move { Ok(closed) })
    }

    fn enqueue_once(&self, message: Message, ttl: Duration) -> BoxFuture<'_, Result<bool, BrokerError>> {
        let now = Instant::now();
        let sent = self.add_then_wake(|state| {
            state.fault(BrokerOp::Enqueue)?;
            state.sent_once.retain(|_, until| *until > now);
            if state.sent_once.contains_key(&message.id) {
                return Ok(false);
            }
            state.sent_once.insert(message.id.clone(), now + ttl);
            state.add(message);
            Ok(true)
        });
        Box::pin(async move { sent })
    }

    fn claim_tick<'a>(&'a self, entry: &'a str, tick_ms: i64) -> BoxFuture<'a, Result<bool, BrokerError>> {
        let mut state = self.lock();
        let last = state.ticks.entry(entry.to_owned()).or_insert(i64::MIN);
        let claimed = tick_ms > *last;
        if claimed {
            *last = tick_ms;
        }
        Box::pin(async move { Ok(claimed) })
    }

    fn last_tick<'a>(&'a self, entry: &'a str) -> BoxFuture<'a, Result<Option<i64>, BrokerError>> {
        let last = self.lock().ticks.get(entry).copied().filter(|t| *t != i64::MIN);
        Box::pin(async move { Ok(last) })
    }

    fn announce_schedule<'a>(&'a self, entries: &'a [ScheduledEntry]) -> BoxFuture<'a, Result<(), BrokerError>> {
        let mut state = self.lock();
        for entry in entries {
            state.schedule.insert(entry.name.clone(), entry.clone());
        }
        Box::pin(async { Ok(()) })
    }

    fn schedules(&self) -> BoxFuture<'_, Result<Vec<ScheduledEntry>, BrokerError>> {
        let now = now_ms();
        let mut state = self.lock();
        state.schedule.retain(|_, e| e.expires_ms > now);
        let entries = state.schedule.values().cloned().collect();
        Box::pin(async move { Ok(entries) })
    }
}

impl Inspect for InMemoryBroker {
    fn queue_stats<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<QueueStats, BrokerError>> {
        let mut state = self.lock();
        state.promote_due();
        let stats = QueueStats {
            ready: state.queues.get(queue).map_or(0, Lanes::len),
            scheduled: state.delayed.values().filter(|e| e.queue == queue).count(),
            in_flight: state.held.values().filter(|(_, e)| e.queue == queue).count(),
            dead: state.dead.iter().filter(|d| d.queue == queue).count(),
        };
        Box::pin(async move { Ok(stats) })
    }

    fn queues(&self) -> BoxFuture<'_, Result<Vec<String>, BrokerError>> {
        let state = self.lock();
        let mut names: Vec<String> = state.queues.keys().cloned().collect();
        names.extend(state.delayed.values().map(|e| e.queue.clone()));
        names.sort();
        names.dedup();
        Box::pin(async move { Ok(names) })
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, BrokerError>> {
        let dead = self.lock().dead.iter().rev().take(limit).cloned().collect();
        Box::pin(async move { Ok(dead) })
    }

    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        let mut state = self.lock();
        let mut removed = state.queues.remove(queue).map_or(0, |l| l.len());
        let before = state.delayed.len();
        state.delayed.retain(|_, e| e.queue != queue);
        removed += before - state.delayed.len();
        Box::pin(async move { Ok(removed) })
    }

    fn peek<'a>(&'a self, queue: &'a str, at: PeekAt, limit: usize) -> BoxFuture<'a, Result<Vec<Peeked>, BrokerError>> {
        let state = self.lock();
        let unix_ms = |t: SystemTime| chrono::DateTime::<chrono::Utc>::from(t).timestamp_millis();
        let found: Vec<Peeked> = match at {
            PeekAt::Scheduled => state
                .delayed
                .iter()
                .filter(|(_, e)| e.queue == queue)
                .take(limit)
                .map(|((due, _), e)| Peeked::new(e.payload.clone(), Some(unix_ms(*due)), None))
                .collect(),
            PeekAt::InFlight => state
                .held
                .values()
                .filter(|(_, e)| e.queue == queue)
                .take(limit)
                .map(|(owner, e)| Peeked::new(e.payload.clone(), None, Some(owner.to_string())))
                .collect(),
        };
        Box::pin(async move { Ok(found) })
    }

    fn retry_dead<'a>(&'a self, queue: &'a str, limit: usize) -> BoxFuture<'a, Result<usize, BrokerError>> {
        let moved = {
            let mut state = self.lock();
            let (mut again, mut keep) = (Vec::new(), VecDeque::new());
            for dead in state.dead.drain(..) {
                if dead.queue == queue && again.len() < limit { again.push(dead) } else { keep.push_back(dead) }
            }
            state.dead = keep;
            let moved = again.len();
            for dead in again {
                state.push(Entry { queue: dead.queue, priority: 0, payload: dead.payload, deliveries: 0 }, false);
            }
            moved
        };
        self.shared.wake.notify_waiters();
        Box::pin(async move { Ok(moved) })
    }

    fn retry_dead_letter<'a>(&'a self, letter: &'a DeadLetter) -> BoxFuture<'a, Result<bool, BrokerError>> {
        let found = self.add_then_wake(|state| {
            let at = state.dead.iter().position(|d| d == letter);
            let Some(dead) = at.and_then(|at| state.dead.remove(at)) else { return Ok(false) };
            state.push(Entry { queue: dead.queue, priority: 0, payload: dead.payload, deliveries: 0 }, false);
            Ok(true)
        });
        Box::pin(async move { found })
    }

    fn purge_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        let mut state = self.lock();
        let before = state.dead.len();
        state.dead.retain(|d| d.queue != queue);
        let removed = before - state.dead.len();
        Box::pin(async move { Ok(removed) })
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
