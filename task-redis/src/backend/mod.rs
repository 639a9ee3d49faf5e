//! [`RedisBackend`]: one hash per task id, with a TTL; waiting wakes on a pub/sub
//! message, and every waiter of the process shares one subscriber connection.
//!
//! The [`ResultBackend`] impl is here; beside it, one file per concern: `record` (the
//! layout of a task's hash), `writes` (state writes grouped into `store_many` calls),
//! `tallies` (events and counts gathered per interval), `subscriber` (completion and
//! control channels), `history` ([`TaskHistory`]: recent tasks, throughput, events,
//! counts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind, Value};
use std::str::FromStr;
use task_core::broker::{ConsumerId, Delivery};
use task_core::capability::{Listeners, Listening, OnTerminate, SettleAtomically, Terminations};
use task_core::time::now_ms;
use task_core::{
    BackendError, BoxFuture, Claim, ErrorKind, Event, EventKind, MinuteCount, ResultBackend, TaskFilter, TaskHistory,
    TaskId, TaskMeta, TaskState, TaskStats,
};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::config::RedisConfig;
use crate::conn::{Conn, Connections, manager_config};
use crate::error::{timed, timed_pipe};
use crate::keys::Keys;
use crate::scripts::SCRIPTS;

/// The Redis result backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Where the keys live, for [`SettleAtomically::store_id`].
    store_id: String,
    keys: Keys,
    op_timeout: Duration,
    conns: Connections,
    subscriber: Subscriber,
    /// State writes, grouped into script calls by [`flush_writes`].
    writes: mpsc::UnboundedSender<Write>,
    events_cap: usize,
    /// States are also kept in Celery's result format ([`RedisConfig::celery_queues`]),
    /// and Celery's remote control is answered.
    celery: bool,
    /// Celery's remote-control requests asked of this process's workers.
    pidbox: pidbox::Pending,
    /// The Redis database (Celery's fanout channels are named by it).
    db: i64,
    /// The Celery node names of this process's workers.
    nodes: celery::Nodes,
}

mod announced;
mod celery;
mod history;
mod pidbox;
mod record;
mod subscriber;
mod tallies;
mod writes;

use subscriber::Subscriber;
use tallies::{Tallies, Tally};
pub(crate) use writes::WRITE_SHAPES;
use writes::{Write, flush_writes};

/// How often a wait on a cluster reads its task's state even without a message.
const RECHECK: Duration = Duration::from_secs(5);

impl RedisBackend {
    /// Connects (within the configured operation time-out).
    pub async fn connect(config: RedisConfig) -> Result<Self, BackendError> {
        let context = || format!("cannot connect the result backend to {}", task_core::redact_url(&config.url));
        let conns = Connections::open(&config).await.map_err(|e| e.backend(&context()))?;
        let celery = !config.celery_queues.is_empty();
        let (pidbox_tx, pidbox_rx) = mpsc::unbounded_channel();
        let db = {
            use redis::aio::ConnectionLike as _;
            conns.main.get_db()
        };
        let pidbox_channel = crate::celery::pidbox::channel(db);
        let subscriber = Subscriber::open(
            &conns,
            config.op_timeout,
            Keys::new(&config.namespace).control_channel(),
            celery.then_some((pidbox_channel, pidbox_tx)),
        )
        .await
        .map_err(|e| e.backend(&context()))?;
        let (writes, pending) = mpsc::unbounded_channel();
        tokio::spawn(flush_writes(
            pending,
            conns.main.clone(),
            config.op_timeout,
            Keys::new(&config.namespace),
            config.events_cap,
            conns.is_cluster(),
        ));
        let inner = Arc::new(Inner {
            keys: Keys::new(&config.namespace),
            store_id: config.store_id(),
            op_timeout: config.op_timeout,
            conns,
            subscriber,
            writes,
            events_cap: config.events_cap,
            celery,
            pidbox: pidbox::Pending::default(),
            db,
            nodes: celery::Nodes::default(),
        });
        tokio::spawn(pidbox::serve(pidbox_rx, Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    fn con(&self) -> Conn {
        self.inner.conns.main.clone()
    }

    /// Where `id`'s completion is published: a channel on one Redis, a sharded channel in
    /// the record's slot on a cluster (a classic channel would reach every node).
    fn done_channel(&self, id: &TaskId) -> String {
        if self.inner.conns.is_cluster() {
            self.inner.keys.done_shard_channel(id)
        } else {
            self.inner.keys.done_channel(id)
        }
    }

    /// Reads the revokes that hold now (`NS:revoked`) into this process's set.
    async fn load_revocations(&self) -> Result<(), BackendError> {
        let mut con = self.con();
        let now = now_ms();
        let mut read = redis::cmd("ZRANGEBYSCORE");
        read.arg(self.inner.keys.revoked()).arg(now).arg("+inf").arg("WITHSCORES");
        // Scores are read as doubles (RESP3 sends them so); they are whole milliseconds.
        let held: Vec<(String, f64)> = timed(self.inner.op_timeout, read.query_async(&mut con))
            .await
            .map_err(|e| e.backend("cannot read the revoked tasks"))?;
        let mut revocations = self.inner.subscriber.revocations.lock().unwrap_or_else(|p| p.into_inner());
        #[allow(clippy::cast_possible_truncation)]
        let held = held.into_iter().filter_map(|(id, until)| Some((TaskId::from_str(&id).ok()?, until as i64)));
        revocations.add(held);
        revocations.loaded = true;
        Ok(())
    }

    /// A write refused because the record's state is final ([`TaskState::admits`]):
    /// like a fenced one, it is not tried again.
    fn final_already(id: &TaskId, state: TaskState) -> BackendError {
        BackendError::new(
            ErrorKind::Fenced,
            format!("state {state} of task {id} refused: the task was revoked or has ended, and that is final"),
        )
    }

    fn fenced(id: &TaskId, state: TaskState) -> BackendError {
        BackendError::new(
            ErrorKind::Fenced,
            format!("state {state} of task {id} refused: another worker has taken the task over"),
        )
    }

    async fn read(&self, id: &TaskId) -> Result<Option<TaskMeta>, BackendError> {
        let mut con = self.con();
        let fields: HashMap<String, Vec<u8>> =
            timed(self.inner.op_timeout, redis::cmd("HGETALL").arg(self.inner.keys.result(id)).query_async(&mut con))
                .await
                .map_err(|e| e.backend(&format!("cannot read the result of task {id}")))?;
        Ok(record::parse(fields))
    }
}

impl ResultBackend for RedisBackend {
    fn store<'a>(&'a self, id: &'a TaskId, update: TaskMeta, ttl: Duration) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let state = update.state;
            match self.store_with_celery(id, update, ttl, None).await? {
                0 => Err(Self::fenced(id, state)),
                -1 => Err(Self::final_already(id, state)),
                _ => Ok(()),
            }
        })
    }

    fn get<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<Option<TaskMeta>, BackendError>> {
        Box::pin(self.read(id))
    }

    fn revoked<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<Option<String>, BackendError>> {
        Box::pin(async move {
            let revocations = &self.inner.subscriber.revocations;
            let loaded = revocations.lock().unwrap_or_else(|p| p.into_inner()).loaded;
            if !loaded {
                self.load_revocations().await?;
            }
            if !revocations.lock().unwrap_or_else(|p| p.into_inner()).holds(id) {
                return Ok(None);
            }
            // Revoked: the reason is in its record.
            task_core::backend::revoked_by_record(self, id).await
        })
    }

    fn wait<'a>(&'a self, id: &'a TaskId, timeout: Duration) -> BoxFuture<'a, Result<Option<TaskMeta>, BackendError>> {
        Box::pin(async move {
            let deadline = task_core::time::deadline(timeout);
            // On one server the first read goes with the subscribe, on its connection.
            let read = (!self.inner.conns.is_cluster()).then(|| self.inner.keys.result(id));
            let (watch, mut first) = self
                .inner
                .subscriber
                .watch(self.done_channel(id), read, self.inner.op_timeout)
                .await
                .map_err(|e| e.backend(&format!("cannot subscribe to the completion of task {id}")))?;
            // On a cluster a sharded subscription can be lost in a failover or a slot move
            // without a word: the state is read again every few seconds too, and a final
            // state found so has the subscriptions made again.
            let recheck = self.inner.conns.is_cluster().then_some(RECHECK);
            let mut rechecked = false;
            // Messages heard before the last read: a record heard after it needs no read.
            let mut seen = None;
            loop {
                let notified = watch.heard.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(meta) = seen.and_then(|seen| watch.heard.record_after(seen)) {
                    return Ok(Some(meta));
                }
                let read = match first.take() {
                    // Read with the subscribe, before this wake-up was armed: it stands
                    // if nothing was heard since; else whatever woke it is looked at.
                    Some((before, fields)) if watch.heard.heard() == before => {
                        seen = Some(before);
                        Ok(record::parse(fields))
                    }
                    Some((before, _)) => {
                        seen = Some(before);
                        continue;
                    }
                    None => {
                        seen = Some(watch.heard.heard());
                        self.read(id).await
                    }
                };
                let meta = match read {
                    Ok(meta) => meta,
                    // Redis away (restarting, failing over): the wait goes on until its
                    // deadline, reading again now and then; past it, the error.
                    Err(e) if tokio::time::Instant::now() + Duration::from_millis(200) < deadline => {
                        tracing::debug!(error = %e, task = %id, "cannot read the result yet; waiting on");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if meta.as_ref().is_some_and(|m| m.state.is_ready()) {
                    if rechecked {
                        tracing::info!(task = %id, "a completion was missed; subscribing again");
                        self.inner.subscriber.resubscribe();
                    }
                    return Ok(meta);
                }
                let until = recheck.map_or(deadline, |every| deadline.min(tokio::time::Instant::now() + every));
                match tokio::time::timeout_at(until, notified).await {
                    Ok(()) => rechecked = false,
                    Err(_) if until < deadline => rechecked = true,
                    Err(_) => return Ok(meta),
                }
            }
        })
    }

    fn forget<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut con = self.con();
            let mut del = redis::cmd("DEL");
            del.arg(self.inner.keys.result(id));
            if self.inner.celery {
                // Its STARTED in Celery's store too (Celery keeps nothing of such a task).
                del.arg(crate::celery::result_key(id.as_str()));
            }
            let _: () = timed(self.inner.op_timeout, del.query_async(&mut con))
                .await
                .map_err(|e| e.backend(&format!("cannot forget task {id}")))?;
            Ok(())
        })
    }

    fn claim<'a>(
        &'a self,
        id: &'a TaskId,
        update: TaskMeta,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Claim, BackendError>> {
        Box::pin(async move {
            let state = update.state;
            let celery = self.celery_meta(id, &update);
            let claimed = self.run_store(id, update, ttl, None).await?;
            if claimed == 1 {
                self.store_celery(id, celery, ttl).await?;
            }
            match claimed {
                -1 => {
                    let reason = self.read(id).await?.and_then(|m| m.error).unwrap_or_else(|| "revoked".into());
                    Ok(Claim::Revoked(reason))
                }
                0 => Err(Self::fenced(id, state)),
                _ => Ok(Claim::Claimed),
            }
        })
    }

    fn revoke<'a>(
        &'a self,
        id: &'a TaskId,
        reason: &'a str,
        terminate: bool,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let context = || format!("cannot revoke task {id}");
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
            let now = now_ms();
            let mut inv = SCRIPTS.revoke.prepare_invoke();
            inv.key(keys.result(id))
                .arg(ttl_ms)
                .arg(reason)
                .arg(self.done_channel(id))
                .arg(now)
                .arg(if self.inner.conns.is_cluster() { "SPUBLISH" } else { "PUBLISH" });
            let mut con = self.con();
            let revoked: i64 =
                timed(self.inner.op_timeout, inv.invoke_async(&mut con)).await.map_err(|e| e.backend(&context()))?;
            // The record first: it is what a worker that stores STARTED checks. Then the
            // revoked set, for workers that check from memory; a revoke that fails here
            // fails as a whole, and sent again (or resent after a lost reply) it finds the
            // record revoked (3) and writes the set and the message again.
            let mut pipe = redis::pipe();
            if revoked > 0 {
                let until_ms = now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
                pipe.cmd("ZREMRANGEBYSCORE").arg(keys.revoked()).arg("-inf").arg(now).ignore();
                pipe.cmd("ZADD").arg(keys.revoked()).arg(until_ms).arg(id.as_str()).ignore();
                pipe.cmd("PUBLISH").arg(keys.control_channel()).arg(format!("revoke {until_ms} {id}")).ignore();
            }
            if revoked == 2 {
                pipe.cmd("LPUSH").arg(keys.recent()).arg(id.as_str()).ignore();
                pipe.cmd("LTRIM").arg(keys.recent()).arg(0).arg(task_core::HISTORY_CAP - 1).ignore();
            }
            if terminate {
                pipe.cmd("PUBLISH").arg(keys.control_channel()).arg(format!("terminate {id}")).ignore();
            }
            timed_pipe::<()>(self.inner.op_timeout, &pipe, &mut con).await.map_err(|e| e.backend(&context()))?;
            Ok(())
        })
    }

    fn terminations(&self) -> Option<&dyn Terminations> {
        Some(self)
    }

    /// Not on a cluster, where a record and its message's processing list are in
    /// different slots: there a result is stored (fenced by the record's owner), then
    /// its message acked, so a crash in between runs the task again (at least once).
    fn settle_atomically(&self) -> Option<&dyn SettleAtomically> {
        (!self.inner.conns.is_cluster()).then_some(self)
    }

    fn remote_control(&self) -> Option<&dyn task_core::capability::RemoteControl> {
        Some(self)
    }

    fn history(&self) -> Option<&dyn TaskHistory> {
        Some(self)
    }
}

impl Terminations for RedisBackend {
    fn listen(&self, on_request: OnTerminate) -> Listening {
        self.inner.subscriber.terminate.add(on_request)
    }
}

impl task_core::capability::RemoteControl for RedisBackend {
    /// Publishes `ask ID COMMAND` on the control channel, then takes the answers the
    /// workers push to `NS:reply:ID`, blocking on a connection of its own.
    fn ask<'a>(
        &'a self,
        command: &'a str,
        expected: usize,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<Vec<u8>>, BackendError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let id = TaskId::new().to_string();
            let reply = keys.reply(&id);
            let mut con = self.con();
            let _: i64 = timed(
                self.inner.op_timeout,
                redis::cmd("PUBLISH")
                    .arg(keys.control_channel())
                    .arg(format!("ask {id} {command}"))
                    .query_async(&mut con),
            )
            .await
            .map_err(|e| e.backend("cannot ask the workers"))?;
            let deadline = task_core::time::deadline(timeout);
            let mut blocking = self.inner.conns.blocking().await.map_err(|e| e.backend("cannot wait for answers"))?;
            let mut answers = Vec::new();
            while answers.len() < expected {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                let popped: Option<(String, Vec<u8>)> = timed(
                    left + self.inner.op_timeout,
                    redis::cmd("BLPOP").arg(&reply).arg(left.as_secs_f64().max(0.01)).query_async(&mut blocking.con),
                )
                .await
                .map_err(|e| e.backend("cannot read the answers"))?;
                match popped {
                    Some((_, answer)) => answers.push(answer),
                    None => break,
                }
            }
            self.inner.conns.give_back(blocking);
            let _: Result<(), _> =
                timed(self.inner.op_timeout, redis::cmd("DEL").arg(&reply).query_async(&mut con)).await;
            Ok(answers)
        })
    }

    fn listen(&self, on_request: task_core::capability::OnRequest) -> Listening {
        self.inner.subscriber.requests.add(on_request)
    }

    fn reply<'a>(
        &'a self,
        request: &'a task_core::capability::Request,
        answer: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            if let Some(sent) = pidbox::reply(self, request, &answer).await {
                return sent;
            }
            let key = self.inner.keys.reply(&request.id);
            let mut pipe = redis::pipe();
            // Kept a minute: an asker that gave up leaves no list behind for long.
            pipe.cmd("RPUSH").arg(&key).arg(answer).ignore().cmd("PEXPIRE").arg(&key).arg(60_000).ignore();
            let mut con = self.con();
            let _: () = timed_pipe(self.inner.op_timeout, &pipe, &mut con)
                .await
                .map_err(|e| e.backend("cannot answer a remote-control request"))?;
            Ok(())
        })
    }
}

impl SettleAtomically for RedisBackend {
    fn store_id(&self) -> &str {
        &self.inner.store_id
    }

    /// One `store_many` call writes the record and removes the message from the
    /// consumer's processing list; the removal is the fence: when the message is no
    /// longer there (recovered by another worker), nothing is written.
    fn settle<'a>(
        &'a self,
        id: &'a TaskId,
        update: TaskMeta,
        ttl: Duration,
        consumer: &'a ConsumerId,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let state = update.state;
            let list = self.inner.keys.held_in(&delivery.queue, consumer.as_str(), delivery.receipt.as_bytes());
            match self.store_with_celery(id, update, ttl, Some((list, delivery.receipt.as_bytes()))).await? {
                0 => Err(BackendError::new(
                    ErrorKind::Fenced,
                    format!(
                        "state {state} of task {id} and its ack refused: worker {consumer} no longer holds the message \
                         (it missed its heartbeat and the message was recovered)"
                    ),
                )),
                // Acked; the record keeps its final state.
                -1 => Err(Self::final_already(id, state)),
                _ => Ok(()),
            }
        })
    }
}
