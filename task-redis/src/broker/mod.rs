//! [`RedisBroker`]: queues as Redis lists, reliable fetch into per-worker processing
//! lists, delayed work in a zset, heartbeats and recovery. See the crate docs for the
//! layout and the guarantees. Its state and shared helpers are here; the trait impls
//! beside it, one file per concern as in every driver: `queue` ([`Broker`]),
//! `directory`, `capabilities`, `inspect` (and the scripts' callers `chord`, `beat`).

mod beat;
mod blocked_fetch;
mod capabilities;
mod chord;
mod dead_sweep;
mod directory;
mod inspect;
pub(crate) mod partitions;
mod queue;

use partitions::Partitions;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::conn::Conn;
use task_core::broker::{Broker, ConsumerId, Delivery, Message, Receipt, Recovery};
use task_core::capability::{
    ChordJoin, ChordStore, DeadLetter, Inspect, PeekAt, Peeked, QueuePause, QueueStats, RateLimits, SendOnce,
    SharedStore, TickStore, UniqueLocks, WorkerDirectory, WorkerInfo,
};
use task_core::time::{now_ms, to_ms};
use task_core::{BoxFuture, BrokerError, ChordMember, ErrorKind, RateLimit, ScheduledEntry, TaskId};
use tracing::{debug, info, warn};

use crate::config::RedisConfig;
use crate::conn::Connections;
use crate::entry;
use crate::error::{Failure, timed, timed_pipe};
use crate::keys::Keys;
use crate::scripts::SCRIPTS;

/// The Redis broker. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> Result<(), task_core::BrokerError> {
/// use task_redis::{RedisBroker, RedisConfig};
/// let broker = RedisBroker::connect(RedisConfig::from_url("redis://127.0.0.1:6379/0")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: RedisConfig,
    /// Where the keys live, for [`SharedStore::store_id`].
    store_id: String,
    keys: Keys,
    conns: Connections,
    known_queues: Mutex<HashSet<String>>,
    handed_out: Mutex<HashMap<ConsumerId, HandedOut>>,
    /// The primary generation last seen by `recover`, and when it moved.
    followed: Mutex<(u64, Option<std::time::Instant>)>,
    /// When a heartbeat or a recovery last failed (Redis, or the node of the workers'
    /// set, unreachable).
    unreachable_at: Mutex<Option<std::time::Instant>>,
    /// The longest heartbeat time-to-live this process has announced (ms).
    longest_ttl_ms: std::sync::atomic::AtomicU64,
    /// The partitioned queues, as Redis keeps them (read at connect, and again before
    /// each recovery: a queue partitioned since is then served and recovered).
    partitions: std::sync::RwLock<Arc<Partitions>>,
    /// Advanced by every placement without a key and every fetch: round robin.
    turn: std::sync::atomic::AtomicUsize,
    /// A cluster's wake lists with a wait in flight (one per list per process, shared by
    /// every consumer of the process; see [`RedisBroker::block_each`]).
    waits: Mutex<HashSet<String>>,
    /// Told when a shared wait ends.
    woken: tokio::sync::Notify,
    /// Consumers of this process blocked in [`RedisBroker::block_each`] now.
    blocked: std::sync::atomic::AtomicUsize,
}

/// What a consumer of this process was given and has not settled yet, to find
/// messages whose fetch reply was lost (they sit in its processing list unseen).
#[derive(Debug, Default)]
struct HandedOut {
    receipts: HashSet<u64>,
    /// A fetch failed: its script may have moved messages we never received.
    unsure: bool,
    /// The primary (a [`Connections::generation`]) whose processing lists it knows:
    /// behind Sentinel, a new primary may lack the last writes of the old one (an ack,
    /// whose message is then back in the list unseen), so its lists are checked as after
    /// a failed fetch. (A fetch whose move it lacks left the message in its queue: it
    /// runs once more, at least once.)
    generation: u64,
}

/// The deliveries of a fetch script's `reply` from `queue`, and the due time of its next
/// delayed message (Unix ms), which the reply ends with.
fn fetched(queue: &str, mut reply: Vec<Vec<u8>>) -> (Vec<Delivery>, Option<i64>) {
    let due = reply.pop().and_then(|d| String::from_utf8(d).ok()).and_then(|d| d.parse::<f64>().ok());
    // Unix ms fit an f64 exactly, and the Lua reply is a score.
    #[allow(clippy::cast_possible_truncation)]
    let due = due.filter(|d| *d >= 0.0).map(|d| d as i64);
    let deliveries = reply
        .into_iter()
        .map(|raw| {
            let (priority, earlier, payload) = entry::decode(&raw);
            let payload = payload.to_vec();
            Delivery::new(queue.to_owned(), priority, payload, earlier + 1, Receipt::new(raw))
        })
        .collect();
    (deliveries, due)
}

fn receipt_hash(receipt: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    receipt.hash(&mut hasher);
    hasher.finish()
}

/// How often an idle worker of a Celery queue looks into kombu's lists.
const CELERY_POLL: Duration = Duration::from_millis(100);

/// Counts a consumer as blocked while it lives.
struct Blocked<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Blocked<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `t` in Unix ms, the scores of the delayed set (never below the epoch).
fn ms(t: SystemTime) -> i64 {
    to_ms(t).max(0)
}

/// `recover.lua`'s reply: how many moved, then (reason, payload) of each buried.
fn parse_recovered(reply: Vec<redis::Value>, queue: &str) -> (usize, Vec<DeadLetter>) {
    let mut values = reply.into_iter();
    let moved = values.next().and_then(|v| redis::from_redis_value::<usize>(v).ok()).unwrap_or(0);
    let mut buried = Vec::new();
    while let (Some(reason), Some(payload)) = (values.next(), values.next()) {
        let reason = redis::from_redis_value::<String>(reason).unwrap_or_default();
        let payload = redis::from_redis_value::<Vec<u8>>(payload).unwrap_or_default();
        buried.push(DeadLetter::new(queue.to_owned(), reason, payload, now_ms()));
    }
    (moved, buried)
}

/// Records the `declared` partition counts in Redis where none is yet (`HSETNX`), and
/// reads them all back: the counts every process then uses. A declared count that
/// differs from the one Redis keeps is an error (producers and workers must agree).
async fn sync_partitions(
    conns: &Connections,
    keys: &Keys,
    declared: &[(String, u16)],
    limit: Duration,
) -> Result<Partitions, BrokerError> {
    let mut con = conns.main.clone();
    let key = keys.partitions();
    let mut pipe = redis::pipe();
    for (queue, n) in declared {
        Keys::check_queue(queue)?;
        pipe.cmd("HSETNX").arg(&key).arg(queue).arg(n).ignore();
    }
    pipe.cmd("HGETALL").arg(&key);
    let (kept,): (HashMap<String, String>,) =
        timed_pipe(limit, &pipe, &mut con).await.map_err(|e| e.broker("cannot read the partitioned queues"))?;
    let kept: HashMap<String, u16> = kept.into_iter().filter_map(|(q, n)| Some((q, n.parse().ok()?))).collect();
    // Counts of 1 included: a queue kept unpartitioned is not one of 8 partitions.
    let conflicts: Vec<(&String, u16, u16)> =
        declared.iter().filter_map(|(q, n)| kept.get(q).filter(|m| *m != n).map(|m| (q, *n, *m))).collect();
    let kept = Partitions::new(kept);
    if let Some((queue, mine, theirs)) = conflicts.first() {
        return Err(BrokerError::new(
            ErrorKind::Other,
            format!(
                "queue `{queue}` is declared with {mine} partitions here but has {theirs} in Redis ({key}): \
                 every producer and worker must declare the same count (changing it needs the queue drained \
                 and the field deleted)"
            ),
        ));
    }
    Ok(kept)
}

fn fenced(consumer: &ConsumerId, what: &str) -> BrokerError {
    BrokerError::new(
        ErrorKind::Fenced,
        format!(
            "{what} refused: worker {consumer} no longer holds this message (it missed its heartbeat and the message was recovered)"
        ),
    )
}

impl RedisBroker {
    /// Connects (within the configured operation time-out) and checks the server: a
    /// warning is logged when `maxmemory-policy` is not `noeviction`, since Redis could
    /// then evict queued tasks.
    pub async fn connect(config: RedisConfig) -> Result<Self, BrokerError> {
        let context = || format!("cannot connect the broker to {}", task_core::redact_url(&config.url));
        let declared = config
            .declared_partitions()
            .map_err(|e| BrokerError::new(ErrorKind::Other, format!("{}: {e}", context())))?;
        let conns = Connections::open(&config).await.map_err(|e| e.broker(&context()))?;
        if conns.is_cluster() && !config.celery_queues.is_empty() {
            return Err(BrokerError::new(
                ErrorKind::Other,
                format!("{}: Celery queues are served on one Redis only (kombu's keys have no hash tag)", context()),
            ));
        }
        if let Some(queue) = config.celery_queues.iter().find(|q| declared.iter().any(|(p, _)| p == *q)) {
            return Err(BrokerError::new(
                ErrorKind::Other,
                format!("{}: queue `{queue}` cannot be both partitioned and a Celery queue", context()),
            ));
        }
        let keys = Keys::new(&config.namespace);
        let partitions = sync_partitions(&conns, &keys, &declared, config.op_timeout)
            .await
            .map_err(|e| BrokerError::new(e.kind(), format!("{}: {e}", context())))?;
        let broker = Self {
            inner: Arc::new(Inner {
                keys: Keys::new(&config.namespace),
                store_id: config.store_id(),
                config,
                conns,
                known_queues: Mutex::default(),
                handed_out: Mutex::default(),
                followed: Mutex::default(),
                unreachable_at: Mutex::default(),
                longest_ttl_ms: std::sync::atomic::AtomicU64::new(0),
                partitions: std::sync::RwLock::new(Arc::new(partitions)),
                turn: std::sync::atomic::AtomicUsize::new(0),
                waits: Mutex::default(),
                woken: tokio::sync::Notify::new(),
                blocked: std::sync::atomic::AtomicUsize::new(0),
            }),
        };
        broker.check_eviction_policy().await;
        Ok(broker)
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    fn con(&self) -> Conn {
        self.inner.conns.main.clone()
    }

    fn limit(&self) -> Duration {
        self.inner.config.op_timeout
    }

    async fn check_eviction_policy(&self) {
        let mut con = self.con();
        let reply: Result<Vec<String>, _> =
            timed(self.limit(), redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut con)).await;
        match reply {
            Ok(pair) => match pair.get(1).map(String::as_str) {
                Some("noeviction") | None => {}
                Some(policy) => warn!(
                    policy,
                    "Redis maxmemory-policy is `{policy}`, not `noeviction`: under memory pressure Redis may evict queued tasks and results; set `maxmemory-policy noeviction`"
                ),
            },
            Err(e) => {
                info!(error = ?e, "cannot read maxmemory-policy (CONFIG may be disabled); make sure it is `noeviction`");
            }
        }
    }

    /// The partitioned queues known now.
    fn partitions(&self) -> Arc<Partitions> {
        self.inner.partitions.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reads the partition counts again (another process may have declared one since).
    async fn refresh_partitions(&self) -> Result<(), BrokerError> {
        let fresh = sync_partitions(&self.inner.conns, &self.inner.keys, &[], self.limit()).await?;
        if *self.partitions() != fresh {
            info!("the partitioned queues changed in Redis; following them");
            *self.inner.partitions.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(fresh);
        }
        Ok(())
    }

    /// The next turn of the round robin.
    fn turn(&self) -> usize {
        self.inner.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// `message` with its queue set to the partition it goes to, when its queue is
    /// partitioned: by its partition key, round robin without.
    fn placed(&self, mut message: Message) -> Message {
        if let Some(n) = self.partitions().count(&message.queue) {
            let turn = if message.partition_key.is_some() { 0 } else { self.turn() % usize::from(n) };
            message.queue =
                self.partitions().place(&message.queue, message.partition_key.as_deref(), turn).into_owned();
        }
        message
    }

    /// The partition of `queue` that `id` belongs to (a chord's join, a message sent
    /// once: the same one every time), or `queue` when it is not partitioned.
    fn placed_by(&self, queue: &str, id: &TaskId) -> String {
        self.partitions().place(queue, Some(id.as_str()), 0).into_owned()
    }

    /// Records `queue` (its logical name, for a partition) in the set of queues, once
    /// per process.
    async fn remember_queue(&self, queue: &str) -> Result<(), BrokerError> {
        Keys::check_queue(queue)?;
        let queue = self.partitions().logical(queue);
        if self.inner.known_queues.lock().unwrap_or_else(|p| p.into_inner()).contains(queue) {
            return Ok(());
        }
        let mut con = self.con();
        let added: Result<(), _> =
            timed(self.limit(), redis::cmd("SADD").arg(self.inner.keys.queues()).arg(queue).query_async(&mut con))
                .await;
        added.map_err(|e| e.broker(&format!("cannot record queue `{queue}`")))?;
        self.inner.known_queues.lock().unwrap_or_else(|p| p.into_inner()).insert(queue.to_owned());
        Ok(())
    }

    /// The ids of the registered workers (the consumers whose processing lists may hold messages).
    async fn worker_ids(&self) -> Result<Vec<String>, Failure> {
        let mut con = self.con();
        timed(self.limit(), redis::cmd("ZRANGE").arg(self.inner.keys.workers()).arg(0).arg(-1).query_async(&mut con))
            .await
    }

    async fn all_queues(&self) -> Result<Vec<String>, BrokerError> {
        let mut con = self.con();
        let mut queues: Vec<String> =
            timed(self.limit(), redis::cmd("SMEMBERS").arg(self.inner.keys.queues()).query_async(&mut con))
                .await
                .map_err(|e| e.broker("cannot list the queues"))?;
        queues.sort();
        Ok(queues)
    }

    fn handed_out(&self) -> std::sync::MutexGuard<'_, HashMap<ConsumerId, HandedOut>> {
        self.inner.handed_out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this broker keeps its keys where `config` says (same URL, same namespace):
    /// a result backend of that configuration can then ack in its own scripts.
    /// After a failed fetch or a failover: gives back, unseen and uncounted, whatever
    /// sits in the consumer's processing lists without having been handed out (or
    /// whose ack the new primary never got).
    async fn reconcile(&self, consumer: &ConsumerId, queues: &[String]) -> Result<(), Failure> {
        let generation = self.inner.conns.generation();
        let mut failed = None;
        for queue in queues {
            match self.reconcile_queue(consumer, queue).await {
                Ok(()) => {}
                // Its node away (a cluster failing over): the others are checked, this one
                // at the next fetch (the consumer stays unsure).
                Err(e) if queues.len() > 1 => {
                    warn!(queue, error = ?e, "cannot check a processing list now; will again");
                    failed = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        match failed {
            Some(e) if queues.len() > 1 && self.inner.conns.is_cluster() => {
                debug!(error = ?e, "processing lists left to check");
                Ok(())
            }
            Some(e) => Err(e),
            None => {
                if let Some(h) = self.handed_out().get_mut(consumer) {
                    h.unsure = false;
                    h.generation = generation;
                }
                Ok(())
            }
        }
    }

    /// [`RedisBroker::reconcile`] of one queue.
    async fn reconcile_queue(&self, consumer: &ConsumerId, queue: &str) -> Result<(), Failure> {
        let keys = &self.inner.keys;
        let mut con = self.con();
        if self.is_celery(queue) {
            let list = keys.celery_processing(queue, consumer.as_str());
            let held: Vec<Vec<u8>> =
                timed(self.limit(), redis::cmd("LRANGE").arg(&list).arg(0).arg(-1).query_async(&mut con)).await?;
            for raw in held {
                if self.handed_out().get(consumer).is_some_and(|h| h.receipts.contains(&receipt_hash(&raw))) {
                    continue;
                }
                let mut inv = SCRIPTS.celery_return.prepare_invoke();
                inv.key(&list).key(crate::celery::home_list(queue, &raw)).arg(&raw).arg(crate::celery::HELD);
                let _: i64 = timed(self.limit(), inv.invoke_async(&mut con)).await?;
                warn!(queue, "gave back a Celery message whose fetch reply was lost");
            }
        }
        let held: Vec<Vec<u8>> = timed(
            self.limit(),
            redis::cmd("LRANGE").arg(keys.processing(queue, consumer.as_str())).arg(0).arg(-1).query_async(&mut con),
        )
        .await?;
        for raw in held {
            let known = self.handed_out().get(consumer).is_some_and(|h| h.receipts.contains(&receipt_hash(&raw)));
            if known {
                continue;
            }
            let (priority, _, _) = entry::decode(&raw);
            let mut inv = SCRIPTS.release.prepare_invoke();
            inv.key(keys.processing(queue, consumer.as_str()))
                .key(keys.ready(queue, priority))
                .key(keys.wake(queue))
                .arg(&raw);
            let _: i64 = timed(self.limit(), inv.invoke_async(&mut con)).await?;
            warn!(queue, "gave back a message whose fetch reply was lost");
        }
        Ok(())
    }

    /// The due time to give the enqueue script: 0 when the message is due now.
    fn due(message: &Message) -> i64 {
        match message.eta {
            Some(eta) if ms(eta) > now_ms() => ms(eta),
            _ => 0,
        }
    }

    /// `script` with the keys and arguments of enqueue.lua for `message` (KEYS[1..3],
    /// ARGV[1..2]): the enqueue script itself, or a guard followed by it (chord fire,
    /// enqueue once), to which the caller adds the guard's own keys and arguments.
    fn enqueue_invocation<'s>(&self, script: &'s redis::Script, message: &Message) -> redis::ScriptInvocation<'s> {
        let keys = &self.inner.keys;
        let mut inv = script.prepare_invoke();
        inv.key(keys.ready(&message.queue, message.priority))
            .key(keys.delayed(&message.queue))
            .key(keys.wake(&message.queue))
            .arg(entry::encode(message.priority, 0, &message.payload))
            .arg(Self::due(message));
        inv
    }

    /// Sends a batch in one round trip of plain commands (no script: a script would copy
    /// every entry into Lua and back): per (queue, priority) group an RPUSH of the due
    /// entries and a ZADD of the delayed ones, then per queue one wake token (RPUSH then
    /// LTRIM to one: at most one token, as the enqueue script keeps it). Each command
    /// touches one key: on a cluster the batch goes split per slot.
    async fn enqueue_many(&self, messages: &[Message]) -> Result<(), Failure> {
        let keys = &self.inner.keys;
        /// The messages of one queue and priority: due now, and delayed (due time, entry).
        struct Group<'m> {
            queue: &'m str,
            priority: u8,
            now: Vec<entry::NewEntry<'m>>,
            later: Vec<(i64, entry::NewEntry<'m>)>,
        }
        let mut groups: Vec<Group<'_>> = Vec::new();
        for m in messages {
            let at = match groups.iter().position(|g| g.queue == m.queue && g.priority == m.priority) {
                Some(at) => at,
                None => {
                    groups.push(Group { queue: &m.queue, priority: m.priority, now: Vec::new(), later: Vec::new() });
                    groups.len() - 1
                }
            };
            let entry = entry::NewEntry { priority: m.priority, payload: &m.payload };
            match Self::due(m) {
                0 => groups[at].now.push(entry),
                due => groups[at].later.push((due, entry)),
            }
        }
        let add = |pipe: &mut redis::Pipeline, Group { queue, priority, now, later }: &Group<'_>| {
            if !now.is_empty() {
                // Sized up front: a thousand entries would otherwise regrow it a dozen times.
                let bytes = now.iter().map(|e| e.payload.len() + 16).sum::<usize>() + 64;
                let mut rpush = redis::Cmd::with_capacity(now.len() + 2, bytes);
                rpush.arg("RPUSH").arg(keys.ready(queue, *priority)).arg(now);
                pipe.add_command(rpush).ignore();
            }
            if !later.is_empty() {
                pipe.cmd("ZADD").arg(keys.delayed(queue)).arg(later).ignore();
            }
        };
        let wake = |pipe: &mut redis::Pipeline, queue: &str| {
            pipe.cmd("RPUSH").arg(keys.wake(queue)).arg(1).ignore();
            pipe.cmd("LTRIM").arg(keys.wake(queue)).arg(0).arg(0).ignore();
        };
        let mut woken: Vec<&str> = groups.iter().map(|g| g.queue).collect();
        woken.sort_unstable();
        woken.dedup();
        let Some((replicas, timeout)) = self.replicas() else {
            let mut pipe = redis::pipe();
            groups.iter().for_each(|g| add(&mut pipe, g));
            woken.iter().for_each(|q| wake(&mut pipe, q));
            let mut con = self.con();
            return timed_pipe(self.limit(), &pipe, &mut con).await;
        };
        // WAIT counts the writes of its own connection on its own node: the batch goes
        // on a connection of its own, and on a cluster as one pipeline per queue (one
        // slot), each with its WAIT, to the node of that slot.
        let wait_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        let parts: Vec<Vec<&str>> =
            if self.inner.conns.is_cluster() { woken.iter().map(|q| vec![*q]).collect() } else { vec![woken] };
        let mut blocking = self.inner.conns.blocking().await?;
        let mut least = usize::MAX;
        for queues in parts {
            let mut pipe = redis::pipe();
            groups.iter().filter(|g| queues.contains(&g.queue)).for_each(|g| add(&mut pipe, g));
            queues.iter().for_each(|q| wake(&mut pipe, q));
            pipe.cmd("WAIT").arg(replicas).arg(wait_ms);
            let sent: Result<(usize,), Failure> =
                timed(self.limit() + timeout, pipe.query_async(&mut blocking.con)).await;
            match sent {
                Ok((acked,)) => least = least.min(acked),
                Err(e) => {
                    self.inner.conns.failed(&e, blocking.generation);
                    return Err(e);
                }
            }
        }
        self.inner.conns.give_back(blocking);
        Self::enough(least, replicas, timeout)
    }

    /// The replicas a send waits for and how long, when [`RedisConfig::wait_for_replicas`]
    /// asks for it.
    pub(crate) fn replicas(&self) -> Option<(usize, Duration)> {
        let (n, timeout) = self.inner.config.wait_replicas?;
        Some((n, timeout.unwrap_or(self.inner.config.op_timeout)))
    }

    /// A send that fewer than `replicas` replicas acknowledged is an error: it may not
    /// outlive its primary.
    pub(crate) fn enough(acked: usize, replicas: usize, timeout: Duration) -> Result<(), Failure> {
        if acked >= replicas {
            return Ok(());
        }
        Err(Failure::Redis(redis::RedisError::from((
            redis::ErrorKind::Io,
            "not replicated",
            format!(
                "the primary took the send but {acked} of {replicas} replicas acknowledged it within {timeout:?} \
                 (RedisConfig::wait_for_replicas): it may be lost if the primary fails now"
            ),
        ))))
    }

    /// Moves the Celery messages of `queue`'s burying list to its dead letters, each as
    /// Celerity's envelope of it (so the dead-letter tools read it and its task can end
    /// FAILURE, in Celery's store too), one at a time: a recovery that stops half way
    /// leaves the rest to the next one.
    async fn bury_celery(&self, con: &mut Conn, queue: &str) -> Result<Vec<DeadLetter>, Failure> {
        let keys = &self.inner.keys;
        let burying = keys.celery_burying(queue);
        let waiting: Vec<Vec<u8>> =
            timed(self.limit(), redis::cmd("LRANGE").arg(&burying).arg(0).arg(-1).query_async(con)).await?;
        let registry = task_core::Registry::global();
        let limit = self.inner.config.max_deliveries;
        let mut letters = Vec::with_capacity(waiting.len());
        for raw in waiting {
            let envelope = match crate::celery::decode(&raw) {
                Ok(m) => {
                    crate::celery::to_envelope(&m, queue, registry.get(&m.task).map(task_core::TaskEntry::params)).0
                }
                Err(_) => raw.clone(),
            };
            let reason = format!(
                "delivered {limit} times without an ack (limit {limit}); each worker holding it stopped heartbeating"
            );
            let at = now_ms();
            let mut inv = SCRIPTS.celery_bury.prepare_invoke();
            inv.key(&burying)
                .key(keys.dead(queue))
                .arg(&raw)
                .arg(entry::dead_record(at, &reason, &envelope))
                .arg(self.inner.config.dead_letter_cap);
            let moved: i64 = timed(self.limit(), inv.invoke_async(con)).await?;
            if moved == 1 {
                warn!(queue, reason, "a Celery message went to the dead letters");
                letters.push(DeadLetter::new(queue.to_owned(), reason, envelope, at));
            }
        }
        Ok(letters)
    }

    /// Whether `queue` is also served in Celery's layout.
    fn is_celery(&self, queue: &str) -> bool {
        self.inner.config.celery_queues.iter().any(|q| q == queue)
    }

    /// Takes up to `max` Celery messages of `queue` into the consumer's processing list
    /// for them (one script call), each made a delivery of Celerity's envelope (its
    /// receipt: the message as Celery wrote it).
    async fn fetch_celery(
        &self,
        con: &mut Conn,
        consumer: &ConsumerId,
        queue: &str,
        max: usize,
    ) -> Result<Vec<Delivery>, Failure> {
        let mut inv = SCRIPTS.celery_fetch.prepare_invoke();
        for list in Keys::celery_lists(queue) {
            inv.key(list);
        }
        inv.key(self.inner.keys.paused(queue))
            .key(self.inner.keys.celery_processing(queue, consumer.as_str()))
            .arg(max)
            .arg(crate::celery::HELD);
        let taken: Vec<Vec<u8>> = timed(self.limit(), inv.invoke_async(con)).await?;
        let registry = task_core::Registry::global();
        let mut out = Vec::with_capacity(taken.len());
        for raw in taken {
            let message = raw.get(crate::celery::HELD.len()..).unwrap_or_default();
            let (payload, eta) = match crate::celery::decode(message) {
                Ok(m) => {
                    let params = registry.get(&m.task).map(task_core::TaskEntry::params);
                    let eta = m.eta.as_deref().and_then(crate::celery::unix_ms).filter(|at| *at > now_ms());
                    let (payload, canvas) = crate::celery::to_envelope(&m, queue, params);
                    if let Some(canvas) = canvas {
                        // Kept for the backend, which carries it on when the task ends
                        // (for a day past its due time, as long as results are kept).
                        let keep_ms = i64::try_from(task_core::DEFAULT_RESULT_TTL.as_millis()).unwrap_or(i64::MAX);
                        let keep_ms = keep_ms.saturating_add(eta.map_or(0, |at| at - now_ms()));
                        let key = self.inner.keys.celery_canvas(&m.id);
                        timed::<()>(
                            self.limit(),
                            redis::cmd("SET").arg(key).arg(canvas).arg("PX").arg(keep_ms).query_async(con),
                        )
                        .await?;
                    }
                    (payload, eta)
                }
                // Not a message Celerity can read: its bytes as they are, which the
                // worker dead-letters as it does any undecodable message.
                Err(e) => {
                    warn!(queue, error = %e, "a message in a Celery queue is not one Celerity can run");
                    (message.to_vec(), None)
                }
            };
            if let Some(due) = eta {
                // A countdown or an eta: kept in Redis (the queue's delayed set), not in
                // this worker's memory as Celery keeps it; it comes due there.
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("LREM")
                    .arg(self.inner.keys.celery_processing(queue, consumer.as_str()))
                    .arg(1)
                    .arg(&raw)
                    .ignore()
                    .cmd("ZADD")
                    .arg(self.inner.keys.delayed(queue))
                    .arg(due)
                    .arg(entry::encode(0, 0, &payload))
                    .ignore();
                timed_pipe::<()>(self.limit(), &pipe, con).await?;
                continue;
            }
            out.push(Delivery::new(queue.to_owned(), 0, payload, 1, Receipt::new(raw)));
        }
        Ok(out)
    }

    /// The fetch script's call for `queue`: up to `max` of its due messages into
    /// `consumer`'s processing list.
    fn fetch_invocation(&self, consumer: &ConsumerId, queue: &str, max: usize) -> redis::ScriptInvocation<'static> {
        let keys = &self.inner.keys;
        let mut inv = SCRIPTS.fetch.prepare_invoke();
        for ready in keys.ready_all(queue) {
            inv.key(ready);
        }
        inv.key(keys.delayed(queue))
            .key(keys.processing(queue, consumer.as_str()))
            .key(keys.wake(queue))
            .key(keys.paused(queue))
            .arg(max);
        inv
    }

    /// One pass of the fetch script over `queues`: the deliveries, the earliest due time
    /// of a delayed message (Unix ms) if any, and whether a queue's call failed. A queue
    /// whose call fails (its node away: a cluster failing over) is passed over for the
    /// others; the pass fails when every call failed, or its only one did.
    async fn fetch_once(
        &self,
        consumer: &ConsumerId,
        queues: &[String],
        max: usize,
    ) -> Result<(Vec<Delivery>, Option<i64>, bool), Failure> {
        let mut out = Vec::new();
        let mut next_due: Option<i64> = None;
        // Sent once only: a fetch whose reply was lost has moved messages this worker
        // never saw; the caller marks the consumer unsure and reconciles instead.
        let mut con = self.inner.conns.main.once();
        let mut failed = None;
        for queue in queues {
            if out.len() >= max {
                break;
            }
            let inv = self.fetch_invocation(consumer, queue, max - out.len());
            let reply: Vec<Vec<u8>> = match timed(self.limit(), inv.invoke_async(&mut con)).await {
                Ok(reply) => reply,
                Err(e) if queues.len() > 1 => {
                    warn!(queue, error = ?e, "cannot fetch from this queue now; passing it over");
                    failed = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (deliveries, due) = fetched(queue, reply);
            if let Some(due) = due {
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
            }
            out.extend(deliveries);
            // Celery's lists after the queue's own (its retries and countdowns, whose
            // delayed set the script above promotes: a Celery backlog cannot starve them).
            if self.is_celery(queue) && out.len() < max {
                out.extend(self.fetch_celery(&mut con, consumer, queue, max - out.len()).await?);
            }
        }
        match failed {
            Some(e) if out.is_empty() && next_due.is_none() => Err(e),
            failed => Ok((out, next_due, failed.is_some())),
        }
    }

    /// Blocks on the queues' wake lists up to `wait`. On a cluster, where the wake lists
    /// of several queues are in several slots, each list has a wait of its own.
    async fn block(&self, queues: &[String], wait: Duration) -> Result<(), Failure> {
        if queues.iter().any(|q| self.is_celery(q)) {
            // Celery's producers leave no wake token: look again soon.
            tokio::time::sleep(wait.min(CELERY_POLL)).await;
            return Ok(());
        }
        let wake: Vec<String> = queues.iter().map(|q| self.inner.keys.wake(q)).collect();
        if wake.len() > 1 && self.inner.conns.is_cluster() {
            return self.block_each(wake, wait).await;
        }
        self.block_on(&wake, wait).await.map(drop)
    }

    /// `BLPOP` on `wake` (lists of one slot) up to `wait`, on a connection of its own;
    /// true when it took a token.
    async fn block_on(&self, wake: &[String], wait: Duration) -> Result<bool, Failure> {
        let mut con = self.inner.conns.blocking().await?;
        let secs = wait.as_secs_f64().max(0.01);
        let popped: Result<Option<(String, String)>, Failure> =
            timed(wait + self.limit(), redis::cmd("BLPOP").arg(wake).arg(secs).query_async(&mut con.con)).await;
        self.inner.conns.ended(con, popped).map(|popped| popped.is_some())
    }

    /// Waits until a token arrives on any of the `wake` lists (a cluster's: of several
    /// slots) or `wait` passes. Each list has one wait in flight per process, on a
    /// connection of its own, shared by every consumer of the process that blocks on it;
    /// when one ends, every blocked consumer looks again. A token taken while no consumer
    /// of the process is blocked goes back, for another worker. Cancel-safe: a dropped
    /// call leaves the shared waits to end by themselves (within their `wait`).
    async fn block_each(&self, wake: Vec<String>, wait: Duration) -> Result<(), Failure> {
        let notified = self.inner.woken.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let _blocked = Blocked::new(&self.inner.blocked);
        for list in wake {
            self.shared_wait(list, wait);
        }
        let _ = tokio::time::timeout(wait, notified).await;
        Ok(())
    }

    /// Starts the shared wait on `list` unless one is in flight.
    fn shared_wait(&self, list: String, wait: Duration) {
        if !self.inner.waits.lock().unwrap_or_else(|p| p.into_inner()).insert(list.clone()) {
            return;
        }
        let broker = self.clone();
        tokio::spawn(async move {
            let popped = broker.block_on(std::slice::from_ref(&list), wait).await;
            if let Err(e) = &popped {
                // The list's node is away: no new wait on it for a moment (the others
                // go on), then the consumers look again (and meet the error in a fetch).
                tracing::debug!(error = ?e, list, "a wait on a wake list failed");
                tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
            }
            broker.inner.waits.lock().unwrap_or_else(|p| p.into_inner()).remove(&list);
            if matches!(popped, Ok(true)) && broker.inner.blocked.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                let mut pipe = redis::pipe();
                pipe.cmd("RPUSH").arg(&list).arg(1).ignore().cmd("LTRIM").arg(&list).arg(0).arg(0).ignore();
                let mut con = broker.con();
                if let Err(e) = timed_pipe::<()>(broker.limit(), &pipe, &mut con).await {
                    tracing::debug!(error = ?e, list, "cannot put a wake token back");
                }
            }
            broker.inner.woken.notify_waiters();
        });
    }

    async fn settle(
        &self,
        script: &redis::Script,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
        what: &str,
        consumer: &ConsumerId,
        delivery: &Delivery,
    ) -> Result<i64, BrokerError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut con = self.con();
        let done: i64 =
            timed(self.limit(), inv.invoke_async(&mut con)).await.map_err(|e| e.broker(&format!("cannot {what}")))?;
        self.settled(consumer, delivery);
        if done == 0 {
            return Err(fenced(consumer, what));
        }
        Ok(done)
    }

    /// Empties the processing lists of `worker`; how many moved, and those buried.
    async fn drain_worker(&self, worker: &str, counted: bool) -> Result<Recovery, BrokerError> {
        let keys = &self.inner.keys;
        let mut moved = 0usize;
        let mut buried = Vec::new();
        let mut con = self.con();
        for queue in self.partitions().all_of(&self.all_queues().await?) {
            let mut inv = SCRIPTS.recover.prepare_invoke();
            for ready in keys.ready_all(&queue) {
                inv.key(ready);
            }
            inv.key(keys.processing(&queue, worker))
                .key(keys.dead(&queue))
                .key(keys.wake(&queue))
                .arg(self.inner.config.max_deliveries)
                .arg(i32::from(counted))
                .arg(worker)
                .arg(self.inner.config.dead_letter_cap);
            let reply: Vec<redis::Value> = timed(self.limit(), inv.invoke_async(&mut con))
                .await
                .map_err(|e| e.broker(&format!("cannot recover the messages of worker {worker} in queue `{queue}`")))?;
            let (n, letters) = parse_recovered(reply, &queue);
            moved += n;
            buried.extend(letters);
            // Celery messages it held (of a queue this process may not serve itself). None
            // on a cluster: Celery queues are refused there (kombu's lists have no tag,
            // so the script's keys would span slots).
            if self.inner.conns.is_cluster() {
                continue;
            }
            let mut inv = SCRIPTS.celery_recover.prepare_invoke();
            inv.key(keys.celery_processing(&queue, worker));
            for list in Keys::celery_lists(&queue) {
                inv.key(list);
            }
            inv.key(keys.celery_deaths(&queue))
                .key(keys.celery_burying(&queue))
                .arg(crate::celery::HELD)
                .arg(self.inner.config.max_deliveries)
                .arg(i32::from(counted));
            let context = || format!("cannot recover the Celery messages of worker {worker} in queue `{queue}`");
            let (back, burying): (usize, usize) =
                timed(self.limit(), inv.invoke_async(&mut con)).await.map_err(|e| e.broker(&context()))?;
            moved += back;
            if burying > 0 {
                // Those it buries, and any a recovery that stopped half way left behind.
                let letters = self.bury_celery(&mut con, &queue).await.map_err(|e| e.broker(&context()))?;
                moved += letters.len();
                buried.extend(letters);
            }
        }
        Ok(Recovery::new(moved, buried))
    }

    /// True for one heartbeat time-to-live after the connections followed a failover
    /// (Sentinel), or after a heartbeat or a recovery of this process failed (Redis
    /// restarting, a cluster's node failing over): the heartbeat deadlines are then
    /// those from before the outage, and an outage longer than a TTL would make every
    /// live worker look dead; until each has heartbeated again, no one is taken for dead.
    fn just_followed(&self) -> bool {
        let generation = self.inner.conns.generation();
        let mut followed = self.inner.followed.lock().unwrap_or_else(|p| p.into_inner());
        if followed.0 != generation {
            *followed = (generation, Some(std::time::Instant::now()));
        }
        let ttl = Duration::from_millis(self.inner.longest_ttl_ms.load(std::sync::atomic::Ordering::Relaxed));
        let unreachable = *self.inner.unreachable_at.lock().unwrap_or_else(|p| p.into_inner());
        followed.1.is_some_and(|at| at.elapsed() < ttl) || unreachable.is_some_and(|at| at.elapsed() < ttl)
    }

    /// Notes that Redis (the workers' set) did not answer a heartbeat or a recovery. The
    /// consumers of this process check their processing lists before their next fetch:
    /// a node that failed over may lack their last acks (on a cluster no generation
    /// tells of a failover, as a Sentinel's does).
    fn unreachable(&self) {
        *self.inner.unreachable_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        for held in self.handed_out().values_mut() {
            held.unsure = true;
        }
    }

    /// Forgets `consumer`: its local bookkeeping, and its place in the heartbeat set
    /// (which also takes it out of the worker directory).
    async fn forget_worker(&self, consumer: &ConsumerId) -> Result<(), BrokerError> {
        self.handed_out().remove(consumer);
        let mut con = self.con();
        let _: () = timed(
            self.limit(),
            redis::cmd("ZREM").arg(self.inner.keys.workers()).arg(consumer.as_str()).query_async(&mut con),
        )
        .await
        .map_err(|e| e.broker(&format!("cannot deregister worker {consumer}")))?;
        Ok(())
    }

    async fn recover_dead(&self) -> Result<Recovery, BrokerError> {
        if self.just_followed() {
            return Ok(Recovery::default());
        }
        // A queue partitioned since this process connected: its partitions' lists too.
        let recovered = match self.refresh_partitions().await {
            Ok(()) => self.recover_dead_now().await,
            Err(e) => Err(e),
        };
        if recovered.is_err() {
            self.unreachable();
        }
        recovered
    }

    async fn recover_dead_now(&self) -> Result<Recovery, BrokerError> {
        let keys = &self.inner.keys;
        let mut con = self.con();
        let token = uuid::Uuid::new_v4().to_string();
        let locked: Option<String> = timed(
            self.limit(),
            redis::cmd("SET")
                .arg(keys.recover_lock())
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(30_000)
                .query_async(&mut con),
        )
        .await
        .map_err(|e| e.broker("cannot take the recovery lock"))?;
        if locked.is_none() {
            return Ok(Recovery::default()); // another worker is recovering
        }
        let result = async {
            let dead: Vec<String> =
                timed(self.limit(), SCRIPTS.dead_workers.key(keys.workers()).invoke_async(&mut con))
                    .await
                    .map_err(|e| e.broker("cannot list dead workers"))?;
            let mut all = Recovery::default();
            for worker in dead {
                let recovery = self.drain_worker(&worker, true).await?;
                let n = recovery.moved;
                all.moved += n;
                all.buried.extend(recovery.buried);
                if n > 0 {
                    warn!(worker, messages = n, "worker stopped heartbeating; its messages went back to their queues");
                }
                let _: Result<(), _> =
                    timed(self.limit(), redis::cmd("ZREM").arg(keys.workers()).arg(&worker).query_async(&mut con))
                        .await;
            }
            Ok(all)
        }
        .await;
        let _: Result<i64, _> =
            timed(self.limit(), SCRIPTS.unlock.key(keys.recover_lock()).arg(&token).invoke_async(&mut con)).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_reply_is_its_entries_then_the_next_due_time() {
        let entry = entry::encode(3, 1, b"payload");
        let (deliveries, due) = fetched("q", vec![entry.clone(), b"1700000000123".to_vec()]);
        assert_eq!(due, Some(1_700_000_000_123));
        assert_eq!(deliveries.len(), 1);
        let d = &deliveries[0];
        assert_eq!(
            (d.queue.as_str(), d.priority, d.payload.as_slice(), d.delivery_count),
            ("q", 3, &b"payload"[..], 2)
        );
        assert_eq!(d.receipt.as_bytes(), entry.as_slice(), "the receipt is the entry as held");
        let (none, due) = fetched("q", vec![b"-1".to_vec()]);
        assert!(none.is_empty());
        assert_eq!(due, None, "-1: no delayed message");
    }
}
