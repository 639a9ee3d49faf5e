//! [`RedisBroker`]: queues as Redis lists, reliable fetch into per-worker processing
//! lists, delayed work in a zset, heartbeats and recovery. See the crate docs for the
//! layout and the guarantees.

mod beat;
mod chord;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use task_core::broker::{
    BoxFuture, Broker, ChordJoin, ConsumerId, Coordination, DeadLetter, Delivery, Inspect, Message, PeekAt, Peeked,
    QueueStats, Receipt, WorkerDirectory, WorkerInfo,
};
use task_core::{BrokerError, ChordMember, ErrorKind, RateLimit, ScheduledEntry, TaskId};
use tracing::{info, warn};

use crate::config::RedisConfig;
use crate::conn::Connections;
use crate::entry;
use crate::error::{Failure, timed};
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
    keys: Keys,
    conns: Connections,
    known_queues: Mutex<HashSet<String>>,
    handed_out: Mutex<HashMap<ConsumerId, HandedOut>>,
}

/// What a consumer of this process was given and has not settled yet, to find
/// messages whose fetch reply was lost (they sit in its processing list unseen).
#[derive(Debug, Default)]
struct HandedOut {
    receipts: HashSet<u64>,
    /// A fetch failed: its script may have moved messages we never received.
    unsure: bool,
}

fn receipt_hash(receipt: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    receipt.hash(&mut hasher);
    hasher.finish()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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
        let conns = Connections::open(&config)
            .await
            .map_err(|e| e.broker(&format!("cannot connect the broker to {}", task_core::redact_url(&config.url))))?;
        let broker = Self {
            inner: Arc::new(Inner {
                keys: Keys::new(&config.namespace),
                config,
                conns,
                known_queues: Mutex::default(),
                handed_out: Mutex::default(),
            }),
        };
        broker.check_eviction_policy().await;
        Ok(broker)
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    fn con(&self) -> ConnectionManager {
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

    /// Records `queue` in the set of queues, once per process.
    async fn remember_queue(&self, queue: &str) -> Result<(), BrokerError> {
        Keys::check_queue(queue)?;
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
    pub(crate) fn shares_store_with(&self, config: &RedisConfig) -> bool {
        self.inner.config.url == config.url && self.inner.config.namespace == config.namespace
    }

    /// Forgets a settled (or fenced) delivery.
    pub(crate) fn settled(&self, consumer: &ConsumerId, delivery: &Delivery) {
        if let Some(h) = self.handed_out().get_mut(consumer) {
            h.receipts.remove(&receipt_hash(delivery.receipt.as_bytes()));
        }
    }

    /// After a failed fetch: gives back, unseen and uncounted, whatever sits in the
    /// consumer's processing lists without having been handed out.
    async fn reconcile(&self, consumer: &ConsumerId, queues: &[String]) -> Result<(), Failure> {
        let keys = &self.inner.keys;
        let mut con = self.con();
        for queue in queues {
            let held: Vec<Vec<u8>> = timed(
                self.limit(),
                redis::cmd("LRANGE")
                    .arg(keys.processing(queue, consumer.as_str()))
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut con),
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
        }
        if let Some(h) = self.handed_out().get_mut(consumer) {
            h.unsure = false;
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
    /// touches one key, so the batch suits Redis Cluster as it is.
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
        let mut pipe = redis::pipe();
        for Group { queue, priority, now, later } in &groups {
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
        }
        let mut woken: Vec<&str> = groups.iter().map(|g| g.queue).collect();
        woken.sort_unstable();
        woken.dedup();
        for queue in woken {
            pipe.cmd("RPUSH").arg(keys.wake(queue)).arg(1).ignore();
            pipe.cmd("LTRIM").arg(keys.wake(queue)).arg(0).arg(0).ignore();
        }
        let mut con = self.con();
        timed(self.limit(), pipe.query_async(&mut con)).await
    }

    /// One pass of the fetch script over `queues`: the deliveries, and the earliest due
    /// time of a delayed message (Unix ms) if any.
    async fn fetch_once(
        &self,
        consumer: &ConsumerId,
        queues: &[String],
        max: usize,
    ) -> Result<(Vec<Delivery>, Option<i64>), Failure> {
        let keys = &self.inner.keys;
        let mut out = Vec::new();
        let mut next_due: Option<i64> = None;
        let mut con = self.con();
        for queue in queues {
            if out.len() >= max {
                break;
            }
            let mut inv = SCRIPTS.fetch.prepare_invoke();
            for ready in keys.ready_all(queue) {
                inv.key(ready);
            }
            inv.key(keys.delayed(queue))
                .key(keys.processing(queue, consumer.as_str()))
                .key(keys.wake(queue))
                .arg(max - out.len());
            let mut reply: Vec<Vec<u8>> = timed(self.limit(), inv.invoke_async(&mut con)).await?;
            let due = reply.pop().and_then(|d| String::from_utf8(d).ok()).and_then(|d| d.parse::<f64>().ok());
            if let Some(due) = due.filter(|d| *d >= 0.0) {
                // Unix ms fit an f64 exactly, and the Lua reply is a score.
                #[allow(clippy::cast_possible_truncation)]
                let due = due as i64;
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
            }
            for raw in reply {
                let (priority, earlier, payload) = entry::decode(&raw);
                out.push(Delivery::new(
                    queue.clone(),
                    priority,
                    payload.to_vec(),
                    earlier + 1,
                    Receipt::new(raw.clone()),
                ));
            }
        }
        Ok((out, next_due))
    }

    /// Blocks on the queues' wake lists up to `wait`.
    async fn block(&self, queues: &[String], wait: Duration) -> Result<(), Failure> {
        let mut con = self.inner.conns.blocking().await?;
        let wake: Vec<String> = queues.iter().map(|q| self.inner.keys.wake(q)).collect();
        let secs = wait.as_secs_f64().max(0.01);
        let popped: Result<Option<(String, String)>, Failure> =
            timed(wait + self.limit(), redis::cmd("BLPOP").arg(&wake).arg(secs).query_async(&mut con)).await;
        match popped {
            Ok(_) => {
                self.inner.conns.give_back(con);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn settle(
        &self,
        script: &redis::Script,
        keys: Vec<String>,
        args: Vec<Vec<u8>>,
        what: &str,
        consumer: &ConsumerId,
        delivery: &Delivery,
    ) -> Result<(), BrokerError> {
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
        Ok(())
    }

    /// Empties `worker`'s processing lists back into their queues; `counted` when the
    /// worker died (the delivery counts toward the limit).
    async fn drain_worker(&self, worker: &str, counted: bool) -> Result<usize, BrokerError> {
        let keys = &self.inner.keys;
        let mut moved = 0usize;
        let mut con = self.con();
        for queue in self.all_queues().await? {
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
            let n: usize = timed(self.limit(), inv.invoke_async(&mut con))
                .await
                .map_err(|e| e.broker(&format!("cannot recover the messages of worker {worker} in queue `{queue}`")))?;
            moved += n;
        }
        Ok(moved)
    }

    async fn recover_dead(&self) -> Result<usize, BrokerError> {
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
            return Ok(0); // another worker is recovering
        }
        let result = async {
            let dead: Vec<String> =
                timed(self.limit(), SCRIPTS.dead_workers.key(keys.workers()).invoke_async(&mut con))
                    .await
                    .map_err(|e| e.broker("cannot list dead workers"))?;
            let mut moved = 0;
            for worker in dead {
                let n = self.drain_worker(&worker, true).await?;
                if n > 0 {
                    warn!(worker, messages = n, "worker stopped heartbeating; its messages went back to their queues");
                }
                moved += n;
                let _: Result<(), _> =
                    timed(self.limit(), redis::cmd("ZREM").arg(keys.workers()).arg(&worker).query_async(&mut con))
                        .await;
            }
            Ok(moved)
        }
        .await;
        let _: Result<i64, _> =
            timed(self.limit(), SCRIPTS.unlock.key(keys.recover_lock()).arg(&token).invoke_async(&mut con)).await;
        result
    }
}

impl Broker for RedisBroker {
    fn enqueue(&self, message: Message) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            self.remember_queue(&message.queue).await?;
            let mut con = self.con();
            let queue = message.queue.clone();
            let _: i64 =
                timed(self.limit(), self.enqueue_invocation(&SCRIPTS.enqueue, &message).invoke_async(&mut con))
                    .await
                    .map_err(|e| e.broker(&format!("cannot enqueue task {} to `{queue}`", message.id)))?;
            Ok(())
        })
    }

    fn enqueue_batch(&self, messages: Vec<Message>) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            // A batch names few queues (most often one): a scan beats hashing every message.
            let mut queues: Vec<&str> = Vec::new();
            for m in &messages {
                if !queues.contains(&m.queue.as_str()) {
                    queues.push(&m.queue);
                }
            }
            for queue in queues {
                self.remember_queue(queue).await?;
            }
            for chunk in messages.chunks(1000) {
                self.enqueue_many(chunk)
                    .await
                    .map_err(|e| e.broker(&format!("cannot enqueue a batch of {} tasks", chunk.len())))?;
            }
            Ok(())
        })
    }

    fn fetch<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        queues: &'a [String],
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BrokerError>> {
        Box::pin(async move {
            for queue in queues {
                self.remember_queue(queue).await?;
            }
            let unsure = self.handed_out().get(consumer).is_some_and(|h| h.unsure);
            if unsure {
                self.reconcile(consumer, queues).await.map_err(|e| e.broker("cannot check the processing lists"))?;
            }
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let (batch, next_due) = match self.fetch_once(consumer, queues, max.max(1)).await {
                    Ok(fetched) => fetched,
                    Err(e) => {
                        self.handed_out().entry(consumer.clone()).or_default().unsure = true;
                        return Err(e.broker("cannot fetch"));
                    }
                };
                if !batch.is_empty() {
                    let mut handed_out = self.handed_out();
                    let mine = handed_out.entry(consumer.clone()).or_default();
                    mine.receipts.extend(batch.iter().map(|d| receipt_hash(d.receipt.as_bytes())));
                    return Ok(batch);
                }
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Ok(batch);
                }
                let until_due = next_due.map(|due| Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)));
                let block = until_due.map_or(left, |d| d.min(left)).max(Duration::from_millis(10));
                self.block(queues, block).await.map_err(|e| e.broker("cannot wait for messages"))?;
            }
        })
    }

    fn ack<'a>(&'a self, consumer: &'a ConsumerId, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let mut con = self.con();
            let key = self.inner.keys.processing(&delivery.queue, consumer.as_str());
            let removed: i64 = timed(
                self.limit(),
                redis::cmd("LREM").arg(key).arg(1).arg(delivery.receipt.as_bytes()).query_async(&mut con),
            )
            .await
            .map_err(|e| e.broker("cannot ack"))?;
            self.settled(consumer, delivery);
            if removed == 0 {
                return Err(fenced(consumer, "ack"));
            }
            Ok(())
        })
    }

    fn retry<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
        retry: Message,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            if retry.queue != delivery.queue {
                // Another queue is another hash slot: enqueue, then ack (at least once).
                self.enqueue(retry).await?;
                return self.ack(consumer, delivery).await;
            }
            let due = Self::due(&retry).to_string().into_bytes();
            self.settle(
                &SCRIPTS.retry,
                vec![
                    keys.ready(&retry.queue, retry.priority),
                    keys.delayed(&retry.queue),
                    keys.wake(&retry.queue),
                    keys.processing(&delivery.queue, consumer.as_str()),
                ],
                vec![entry::encode(retry.priority, 0, &retry.payload), due, delivery.receipt.as_bytes().to_vec()],
                "retry",
                consumer,
                delivery,
            )
            .await
        })
    }

    fn release<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            self.settle(
                &SCRIPTS.release,
                vec![
                    keys.processing(&delivery.queue, consumer.as_str()),
                    keys.ready(&delivery.queue, delivery.priority),
                    keys.wake(&delivery.queue),
                ],
                vec![delivery.receipt.as_bytes().to_vec()],
                "release",
                consumer,
                delivery,
            )
            .await
        })
    }

    fn dead_letter<'a>(
        &'a self,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            self.settle(
                &SCRIPTS.bury,
                vec![keys.processing(&delivery.queue, consumer.as_str()), keys.dead(&delivery.queue)],
                vec![
                    delivery.receipt.as_bytes().to_vec(),
                    entry::dead_record(now_ms(), reason, &delivery.payload),
                    self.inner.config.dead_letter_cap.to_string().into_bytes(),
                ],
                "dead-letter",
                consumer,
                delivery,
            )
            .await
        })
    }

    fn heartbeat<'a>(&'a self, consumer: &'a ConsumerId, ttl: Duration) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let mut con = self.con();
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            let _: i64 = timed(
                self.limit(),
                SCRIPTS
                    .heartbeat
                    .key(self.inner.keys.workers())
                    .arg(consumer.as_str())
                    .arg(ttl_ms)
                    .invoke_async(&mut con),
            )
            .await
            .map_err(|e| e.broker("cannot send the heartbeat"))?;
            Ok(())
        })
    }

    fn recover(&self) -> BoxFuture<'_, Result<usize, BrokerError>> {
        Box::pin(self.recover_dead())
    }

    fn deregister<'a>(&'a self, consumer: &'a ConsumerId) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            self.drain_worker(consumer.as_str(), false).await?;
            self.handed_out().remove(consumer);
            let mut con = self.con();
            let _: () = timed(
                self.limit(),
                redis::cmd("ZREM").arg(self.inner.keys.workers()).arg(consumer.as_str()).query_async(&mut con),
            )
            .await
            .map_err(|e| e.broker("cannot deregister"))?;
            Ok(())
        })
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

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

impl WorkerDirectory for RedisBroker {
    fn announce<'a>(&'a self, info: &'a WorkerInfo, ttl: Duration) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let key = self.inner.keys.worker(&info.id);
            let mut pipe = redis::pipe();
            pipe.cmd("HSET")
                .arg(&key)
                .arg("hostname")
                .arg(&info.hostname)
                .arg("pid")
                .arg(info.pid)
                .arg("concurrency")
                .arg(info.concurrency)
                .arg("queues")
                .arg(info.queues.join("\n"))
                .arg("tasks")
                .arg(info.tasks.join("\n"))
                .arg("started_ms")
                .arg(info.started_ms)
                .arg("heartbeat_ms")
                .arg(info.heartbeat_ms)
                .arg("succeeded")
                .arg(info.succeeded)
                .arg("failed")
                .arg(info.failed)
                .arg("last_fetch_ms")
                .arg(info.last_fetch_ms)
                .arg("active")
                .arg(info.active)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)).ignore();
            let mut con = self.con();
            let _: () = timed(self.limit(), pipe.query_async(&mut con))
                .await
                .map_err(|e| e.broker("cannot announce the worker"))?;
            Ok(())
        })
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerInfo>, BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut con = self.con();
            let ids = self.worker_ids().await.map_err(|e| e.broker("cannot list workers"))?;
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HGETALL").arg(keys.worker(id));
            }
            let records: Vec<HashMap<String, String>> =
                timed(self.limit(), pipe.query_async(&mut con)).await.map_err(|e| e.broker("cannot read workers"))?;
            let lines = |v: Option<&String>| {
                v.map(|s| s.split('\n').filter(|l| !l.is_empty()).map(str::to_owned).collect()).unwrap_or_default()
            };
            Ok(ids
                .into_iter()
                .zip(records)
                .filter(|(_, r)| !r.is_empty())
                .map(|(id, r)| {
                    let num = |k: &str| r.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                    let mut info = WorkerInfo::new(
                        id,
                        r.get("hostname").cloned().unwrap_or_default(),
                        u32::try_from(num("pid")).unwrap_or(0),
                        usize::try_from(num("concurrency")).unwrap_or(0),
                        lines(r.get("queues")),
                        lines(r.get("tasks")),
                        num("started_ms"),
                    );
                    info.heartbeat_ms = num("heartbeat_ms");
                    info.succeeded = u64::try_from(num("succeeded")).unwrap_or(0);
                    info.failed = u64::try_from(num("failed")).unwrap_or(0);
                    info.last_fetch_ms = num("last_fetch_ms");
                    info.active = u64::try_from(num("active")).unwrap_or(0);
                    info
                })
                .collect())
        })
    }
}

impl Coordination for RedisBroker {
    fn reserve_rate<'a>(
        &'a self,
        key: &'a str,
        limit: RateLimit,
    ) -> BoxFuture<'a, Result<Option<SystemTime>, BrokerError>> {
        Box::pin(async move {
            let mut con = self.con();
            let interval_ms = limit.interval().as_secs_f64() * 1000.0;
            let slot: i64 = timed(
                self.limit(),
                SCRIPTS.rate.key(self.inner.keys.rate(key)).arg(interval_ms).invoke_async(&mut con),
            )
            .await
            .map_err(|e| e.broker(&format!("cannot reserve a start under the rate limit of `{key}`")))?;
            Ok((slot > 0).then(|| UNIX_EPOCH + Duration::from_millis(u64::try_from(slot).unwrap_or(0))))
        })
    }

    fn lock_unique<'a>(
        &'a self,
        key: &'a str,
        id: &'a TaskId,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<TaskId>, BrokerError>> {
        Box::pin(async move {
            let mut con = self.con();
            let lock = self.inner.keys.unique(key);
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let context = || format!("cannot take the uniqueness lock `{key}`");
            // The holder may release between our SET and GET: then try again.
            for _ in 0..3 {
                let taken: Option<String> = timed(
                    self.limit(),
                    redis::cmd("SET").arg(&lock).arg(id.as_str()).arg("NX").arg("PX").arg(ttl_ms).query_async(&mut con),
                )
                .await
                .map_err(|e| e.broker(&context()))?;
                if taken.is_some() {
                    return Ok(None);
                }
                let holder: Option<String> = timed(self.limit(), redis::cmd("GET").arg(&lock).query_async(&mut con))
                    .await
                    .map_err(|e| e.broker(&context()))?;
                if let Some(holder) = holder.and_then(|h| h.parse::<TaskId>().ok()) {
                    return Ok(Some(holder));
                }
            }
            Err(BrokerError::new(
                ErrorKind::Other,
                format!("the uniqueness lock `{key}` changes hands too fast to take"),
            ))
        })
    }

    fn chord_open<'a>(
        &'a self,
        chord: &'a TaskId,
        queue: &'a str,
        size: u32,
        callback: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(self.open_chord(chord, queue, size, callback, ttl))
    }

    fn chord_join<'a>(
        &'a self,
        member: &'a ChordMember,
        result: &'a [u8],
    ) -> BoxFuture<'a, Result<ChordJoin, BrokerError>> {
        Box::pin(self.join_chord(member, result))
    }

    fn chord_fire<'a>(&'a self, member: &'a ChordMember, message: Message) -> BoxFuture<'a, Result<bool, BrokerError>> {
        Box::pin(self.fire_chord(member, message))
    }

    fn chord_fail<'a>(&'a self, member: &'a ChordMember) -> BoxFuture<'a, Result<bool, BrokerError>> {
        Box::pin(self.fail_chord(member))
    }

    fn enqueue_once(&self, message: Message, ttl: Duration) -> BoxFuture<'_, Result<bool, BrokerError>> {
        Box::pin(self.send_once(message, ttl))
    }

    fn claim_tick<'a>(&'a self, entry: &'a str, tick_ms: i64) -> BoxFuture<'a, Result<bool, BrokerError>> {
        Box::pin(self.claim(entry, tick_ms))
    }

    fn last_tick<'a>(&'a self, entry: &'a str) -> BoxFuture<'a, Result<Option<i64>, BrokerError>> {
        Box::pin(self.last_claimed(entry))
    }

    fn announce_schedule<'a>(&'a self, entries: &'a [ScheduledEntry]) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(self.announce_entries(entries))
    }

    fn schedules(&self) -> BoxFuture<'_, Result<Vec<ScheduledEntry>, BrokerError>> {
        Box::pin(self.announced_entries())
    }

    fn unlock_unique<'a>(&'a self, key: &'a str, id: &'a TaskId) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let mut con = self.con();
            let _: i64 = timed(
                self.limit(),
                SCRIPTS.unlock.key(self.inner.keys.unique(key)).arg(id.as_str()).invoke_async(&mut con),
            )
            .await
            .map_err(|e| e.broker(&format!("cannot release the uniqueness lock `{key}`")))?;
            Ok(())
        })
    }
}

impl Inspect for RedisBroker {
    fn queue_stats<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<QueueStats, BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut con = self.con();
            let workers = self.worker_ids().await.map_err(|e| e.broker("cannot list workers"))?;
            let ready = keys.ready_all(queue);
            let mut pipe = redis::pipe();
            for list in &ready {
                pipe.cmd("LLEN").arg(list);
            }
            pipe.cmd("ZCARD").arg(keys.delayed(queue));
            pipe.cmd("LLEN").arg(keys.dead(queue));
            for worker in &workers {
                pipe.cmd("LLEN").arg(keys.processing(queue, worker));
            }
            let counts: Vec<usize> = timed(self.limit(), pipe.query_async(&mut con))
                .await
                .map_err(|e| e.broker(&format!("cannot read the depths of `{queue}`")))?;
            let mut stats = QueueStats::default();
            let (ready_counts, rest) = counts.split_at(ready.len());
            stats.ready = ready_counts.iter().sum();
            stats.scheduled = rest[0];
            stats.dead = rest[1];
            stats.in_flight = rest[2..].iter().sum();
            Ok(stats)
        })
    }

    fn queues(&self) -> BoxFuture<'_, Result<Vec<String>, BrokerError>> {
        Box::pin(self.all_queues())
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>, BrokerError>> {
        Box::pin(async move {
            let mut all = Vec::new();
            let mut con = self.con();
            for queue in self.all_queues().await? {
                let records: Vec<Vec<u8>> = timed(
                    self.limit(),
                    redis::cmd("LRANGE")
                        .arg(self.inner.keys.dead(&queue))
                        .arg(0)
                        .arg(isize::try_from(limit).unwrap_or(isize::MAX) - 1)
                        .query_async(&mut con),
                )
                .await
                .map_err(|e| e.broker(&format!("cannot read the dead letters of `{queue}`")))?;
                all.extend(
                    records
                        .iter()
                        .filter_map(|r| entry::parse_dead_record(r))
                        .map(|(at, reason, payload)| DeadLetter::new(queue.clone(), reason, payload, at)),
                );
            }
            all.sort_by_key(|d| std::cmp::Reverse(d.at_ms));
            all.truncate(limit);
            Ok(all)
        })
    }

    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut pipe = redis::pipe();
            pipe.atomic();
            for ready in keys.ready_all(queue) {
                pipe.cmd("LLEN").arg(&ready);
                pipe.cmd("DEL").arg(&ready).ignore();
            }
            pipe.cmd("ZCARD").arg(keys.delayed(queue));
            pipe.cmd("DEL").arg(keys.delayed(queue)).ignore();
            let mut con = self.con();
            let counts: Vec<usize> = timed(self.limit(), pipe.query_async(&mut con))
                .await
                .map_err(|e| e.broker(&format!("cannot purge `{queue}`")))?;
            Ok(counts.iter().sum())
        })
    }

    fn peek<'a>(&'a self, queue: &'a str, at: PeekAt, limit: usize) -> BoxFuture<'a, Result<Vec<Peeked>, BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut con = self.con();
            let last = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
            let context = || format!("cannot look into `{queue}`");
            let strip = |raw: &[u8]| entry::decode(raw).2.to_vec();
            match at {
                PeekAt::Scheduled => {
                    let found: Vec<(Vec<u8>, f64)> = timed(
                        self.limit(),
                        redis::cmd("ZRANGE")
                            .arg(keys.delayed(queue))
                            .arg(0)
                            .arg(last)
                            .arg("WITHSCORES")
                            .query_async(&mut con),
                    )
                    .await
                    .map_err(|e| e.broker(&context()))?;
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(found.iter().map(|(raw, due)| Peeked::new(strip(raw), Some(*due as i64), None)).collect())
                }
                PeekAt::InFlight => {
                    let workers = self.worker_ids().await.map_err(|e| e.broker(&context()))?;
                    let mut found = Vec::new();
                    for worker in workers {
                        let held: Vec<Vec<u8>> = timed(
                            self.limit(),
                            redis::cmd("LRANGE")
                                .arg(keys.processing(queue, &worker))
                                .arg(0)
                                .arg(last)
                                .query_async(&mut con),
                        )
                        .await
                        .map_err(|e| e.broker(&context()))?;
                        found.extend(held.iter().map(|raw| Peeked::new(strip(raw), None, Some(worker.clone()))));
                    }
                    found.truncate(limit);
                    Ok(found)
                }
            }
        })
    }

    fn retry_dead<'a>(&'a self, queue: &'a str, limit: usize) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut con = self.con();
            let mut inv = SCRIPTS.retry_dead.prepare_invoke();
            inv.key(keys.dead(queue)).key(keys.ready(queue, 0)).key(keys.wake(queue)).arg(limit);
            timed(self.limit(), inv.invoke_async(&mut con))
                .await
                .map_err(|e| e.broker(&format!("cannot retry the dead letters of `{queue}`")))
        })
    }

    fn retry_dead_letter<'a>(&'a self, letter: &'a DeadLetter) -> BoxFuture<'a, Result<bool, BrokerError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let queue = &letter.queue;
            let mut con = self.con();
            let mut inv = SCRIPTS.retry_dead_one.prepare_invoke();
            inv.key(keys.dead(queue))
                .key(keys.ready(queue, 0))
                .key(keys.wake(queue))
                .arg(entry::dead_record(letter.at_ms, &letter.reason, &letter.payload))
                .arg(&letter.payload);
            let moved: i64 = timed(self.limit(), inv.invoke_async(&mut con))
                .await
                .map_err(|e| e.broker(&format!("cannot retry a dead letter of `{queue}`")))?;
            Ok(moved == 1)
        })
    }

    fn purge_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let key = self.inner.keys.dead(queue);
            let mut pipe = redis::pipe();
            pipe.atomic().cmd("LLEN").arg(&key).cmd("DEL").arg(&key).ignore();
            let mut con = self.con();
            let (removed,): (usize,) = timed(self.limit(), pipe.query_async(&mut con))
                .await
                .map_err(|e| e.broker(&format!("cannot purge the dead letters of `{queue}`")))?;
            Ok(removed)
        })
    }
}
