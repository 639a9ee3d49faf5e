//! [`RedisBackend`]: one hash per task id, with a TTL; waiting wakes on a pub/sub
//! message, and every waiter of the process shares one subscriber connection.

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
use crate::conn::{Connections, manager_config};
use crate::error::timed;
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
}

/// The field sets of the common writes, each field in the order `run_store` writes
/// them. A write with exactly one of these sets sends its values only: `store_many.lua`
/// names them (its `store_shaped`, written from this list when the script loads). The
/// names cost Redis more than their bytes: each argument is one more Lua string per write.
/// Any other set goes as field/value pairs.
pub(crate) const WRITE_SHAPES: [&[&str]; 3] = [
    // The first and only write of a run whose start is not stored (success).
    &["task", "worker", "queue", "runtime_ms", "retries", "started_ms", "finished_ms", "result", "args"],
    // STARTED: the claim.
    &["task", "worker", "queue", "retries", "started_ms", "args"],
    // SUCCESS after a stored start.
    &["worker", "runtime_ms", "finished_ms", "result"],
];

/// The names of the fields of a write that are set, in order.
fn set_fields<'a, T>(fields: &'a [(&'static str, Option<T>)]) -> impl Iterator<Item = &'static str> + Clone + 'a {
    fields.iter().filter(|(_, value)| value.is_some()).map(|(field, _)| *field)
}

/// Appends a write's fields that are set: their values, each after its name when the
/// write is `named` (not one of [`WRITE_SHAPES`]).
fn push_fields<T: redis::ToRedisArgs>(
    args: &mut redis::Cmd,
    named: bool,
    fields: impl IntoIterator<Item = (&'static str, Option<T>)>,
) {
    for (field, value) in fields {
        if let Some(value) = value {
            if named {
                args.arg(field);
            }
            args.arg(value);
        }
    }
}

/// One state write on its way to the `store_many` script.
#[derive(Debug)]
struct Write {
    key: String,
    /// The processing list to ack the write's message in (its receipt is in `args`).
    ack_key: Option<String>,
    /// ttl, writer, claim, channel, state, task id, receipt, shape, then the values of
    /// the shape's fields or (shape 0) a field count and field/value pairs: arguments
    /// only, no command name.
    args: redis::Cmd,
    /// What the write adds to the events and counters once stored.
    tally: Tally,
    reply: oneshot::Sender<Result<i64, (ErrorKind, String)>>,
}

/// A stored write as the event stream and the counters see it.
#[derive(Debug)]
struct Tally {
    state: TaskState,
    id: TaskId,
    task: String,
    worker: String,
    runtime_ms: Option<u64>,
    /// The write starts the task's record (it is listed).
    starts: bool,
}

/// Events and counts of stored writes, gathered here and sent to Redis in one pipeline
/// every [`TALLY_EVERY`] (an `XADD` of all their event lines, and one `HINCRBY` per
/// task name and state or run-time bucket): the work stays in this process, not in
/// Redis's single thread. A process that dies loses at most that last interval's events
/// and counts, never a result.
#[derive(Debug, Default)]
struct Tallies {
    /// Event lines, newline-separated, at most `LINES_PER_ENTRY` per string: each string
    /// is one stream entry.
    chunks: Vec<String>,
    /// Lines in the last chunk.
    lines_in_last: usize,
    /// Bytes in all chunks.
    bytes: usize,
    by_task: HashMap<String, TaskTally>,
    /// Ids for the indices by final state (`NS:idx:state:S`), newest last.
    by_state: HashMap<TaskState, Vec<TaskId>>,
}

/// The states with an index of their own: the rare ones a filter must reach deep for.
/// Other filters read the recent-tasks list: SUCCESS (most tasks: found near its head),
/// STARTED (running tasks are the newest), REVOKED (a revoke of a queued task is written
/// by its own script).
const INDEXED_STATES: [TaskState; 2] = [TaskState::Failure, TaskState::Retry];

/// One task name's counts and new ids since the last send.
#[derive(Debug, Default)]
struct TaskTally {
    /// Ids for the name's index (`NS:idx:task:NAME`).
    ids: Vec<TaskId>,
    /// By state, in the order of `TaskState::ALL`.
    states: [i64; TaskState::ALL.len()],
    /// By run-time bucket, in the order of `RUNTIME_BUCKETS_MS`, then `+Inf`.
    buckets: [i64; task_core::RUNTIME_BUCKETS_MS.len() + 1],
    sum_ms: i64,
    count: i64,
}

/// How often gathered events and counts are sent.
const TALLY_EVERY: Duration = Duration::from_millis(250);
/// The most events one stream entry holds.
const LINES_PER_ENTRY: usize = 100;
/// Event text gathered before it is sent, whatever the interval (about 1,000 events).
const TALLY_MAX_BYTES: usize = 100 * 1024;

/// The stream's cap in entries for a cap of `events`: at most `events` events in all
/// (more entries than that only when they hold fewer events each).
fn stream_entries(events: usize) -> usize {
    (events / LINES_PER_ENTRY).max(1)
}
/// How long an index outlives its last new entry (the default result TTL).
const INDEX_KEEP_SECS: u64 = 24 * 3600;
/// A day in milliseconds: how long stopped workers are remembered.
const DAY_MS: i64 = 24 * 3_600_000;

impl Tallies {
    fn add(&mut self, t: &Tally) {
        if task_core::EventKind::of_state(t.state).is_none() {
            return;
        }
        let chunk = match self.chunks.last_mut() {
            Some(chunk) if self.lines_in_last < LINES_PER_ENTRY => {
                chunk.push('\n');
                self.lines_in_last += 1;
                chunk
            }
            _ => {
                self.chunks.push(String::new());
                self.lines_in_last = 1;
                self.chunks.last_mut().expect("just pushed")
            }
        };
        let before = chunk.len();
        // The state name reads back as the event kind.
        Event::push_line(chunk, t.state.as_str(), [t.id.as_str(), &t.task, &t.worker, ""]);
        self.bytes += chunk.len() - before;
        if INDEXED_STATES.contains(&t.state) {
            self.by_state.entry(t.state).or_default().push(t.id.clone());
        }
        if t.task.is_empty() || t.state == TaskState::Progress {
            return;
        }
        // Looked up by &str: no allocation for a name seen before.
        let tally = match self.by_task.get_mut(t.task.as_str()) {
            Some(tally) => tally,
            None => self.by_task.entry(t.task.clone()).or_default(),
        };
        if let Some(i) = TaskState::ALL.iter().position(|s| *s == t.state) {
            tally.states[i] += 1;
        }
        // At its start, or at an end that may come without a start (a task that failed
        // after starting is listed twice: listings skip the second).
        if t.starts || matches!(t.state, TaskState::Failure | TaskState::Revoked) {
            tally.ids.push(t.id.clone());
        }
        if let Some(ms) = t.runtime_ms {
            let bounds = &task_core::RUNTIME_BUCKETS_MS;
            tally.buckets[bounds.iter().position(|b| ms <= *b).unwrap_or(bounds.len())] += 1;
            tally.sum_ms += i64::try_from(ms).unwrap_or(i64::MAX);
            tally.count += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Gathered enough to send before the interval ends: under load a quarter second
    /// holds thousands of writes, and what is held (and sent at once) stays small.
    fn is_full(&self) -> bool {
        self.bytes >= TALLY_MAX_BYTES
    }

    /// Sends what was gathered in one pipeline; on failure it is dropped (logged).
    async fn send(&mut self, con: &mut ConnectionManager, keys: &Keys, events_cap: usize, op_timeout: Duration) {
        let Tallies { chunks, by_task, by_state, .. } = std::mem::take(self);
        let mut pipe = redis::pipe();
        // The indices: capped like the recent-tasks list, and gone a day after the last
        // write (their records expire too; a listing skips ids whose record is gone).
        let mut index = |key: String, ids: &[TaskId]| {
            if ids.is_empty() {
                return;
            }
            pipe.cmd("LPUSH").arg(&key).arg(ids.iter().map(TaskId::as_str).collect::<Vec<_>>()).ignore();
            pipe.cmd("LTRIM").arg(&key).arg(0).arg(task_core::HISTORY_CAP - 1).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(INDEX_KEEP_SECS).ignore();
        };
        for (state, ids) in &by_state {
            index(keys.state_index(*state), ids);
        }
        for (task, tally) in &by_task {
            index(keys.task_index(task), &tally.ids);
        }
        if events_cap > 0 {
            // At most LINES_PER_ENTRY events per stream entry, so that the stream's cap in
            // entries bounds its events (and its memory) whatever the load.
            let at = now_ms();
            for chunk in chunks {
                pipe.cmd("XADD")
                    .arg(keys.events())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(stream_entries(events_cap))
                    .arg("*")
                    .arg("at")
                    .arg(at)
                    .arg("lines")
                    .arg(chunk)
                    .ignore();
            }
        }
        let (counts, runtimes) = (keys.task_counts(), keys.runtimes());
        for (task, tally) in by_task {
            for (state, n) in TaskState::ALL.iter().zip(tally.states).filter(|(_, n)| *n > 0) {
                pipe.cmd("HINCRBY").arg(&counts).arg(format!("{task}\t{state}")).arg(n).ignore();
            }
            if tally.count == 0 {
                continue;
            }
            let labels = task_core::RUNTIME_BUCKETS_MS.iter().map(u64::to_string).chain(["+Inf".to_owned()]);
            for (bucket, n) in labels.zip(tally.buckets).filter(|(_, n)| *n > 0) {
                pipe.cmd("HINCRBY").arg(&runtimes).arg(format!("{task}\t{bucket}")).arg(n).ignore();
            }
            pipe.cmd("HINCRBY").arg(&runtimes).arg(format!("{task}\tsum")).arg(tally.sum_ms).ignore();
            pipe.cmd("HINCRBY").arg(&runtimes).arg(format!("{task}\tcount")).arg(tally.count).ignore();
        }
        let sent: Result<(), _> = timed(op_timeout, pipe.query_async(con)).await;
        if let Err(e) = sent {
            tracing::warn!(error = %e.backend("Redis"), "events and task counts of the last interval are lost");
        }
    }
}

/// The most writes in one script call.
const MAX_GROUP: usize = 256;

/// Sends state writes to Redis, one script call at a time, each carrying every write
/// that arrived meanwhile (group commit): under load, one call serves many tasks; alone,
/// a write goes at once. The script applies each write's own fencing and revoke rules.
async fn flush_writes(
    mut writes: mpsc::UnboundedReceiver<Write>,
    mut con: ConnectionManager,
    op_timeout: Duration,
    keys: Keys,
    events_cap: usize,
) {
    let mut tallies = Tallies::default();
    let mut tally_due = tokio::time::Instant::now() + TALLY_EVERY;
    // Groups in flight at once: the next group is sent while Redis runs the previous
    // one. Each task awaits a write before its next, so its writes stay in order.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(GROUPS_IN_FLIGHT));
    let (stored_tx, mut stored_rx) = mpsc::unbounded_channel::<Vec<Tally>>();
    loop {
        let first = tokio::select! {
            write = writes.recv() => write,
            // The stored writes of a call that came back: tallied (and sent within
            // TALLY_EVERY even if no other write comes).
            Some(stored) = stored_rx.recv() => {
                if tallies.is_empty() {
                    tally_due = tokio::time::Instant::now() + TALLY_EVERY;
                }
                stored.iter().for_each(|t| tallies.add(t));
                if tallies.is_full() {
                    tallies.send(&mut con, &keys, events_cap, op_timeout).await;
                }
                continue;
            }
            () = tokio::time::sleep_until(tally_due), if !tallies.is_empty() => {
                tallies.send(&mut con, &keys, events_cap, op_timeout).await;
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match writes.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let now = now_ms();
        // EVALSHA built as one command: its arguments go straight into the command's
        // buffer (a ScriptInvocation would copy each into a vector of its own first).
        // Sized up front: a group of a hundred writes would otherwise regrow it often.
        let size = |w: &Write| {
            w.args.args_iter().map(|a| if let redis::Arg::Simple(a) = a { a.len() } else { 0 }).sum::<usize>()
        };
        let bytes: usize =
            group.iter().map(|w| w.key.len() + w.ack_key.as_ref().map_or(0, String::len) + size(w)).sum();
        let count: usize = group.iter().map(|w| 2 + w.args.args_iter().len()).sum();
        let mut cmd = redis::Cmd::with_capacity(count + 8, bytes + 256);
        cmd.arg("EVALSHA");
        let acks = group.iter().filter(|w| w.ack_key.is_some()).count();
        cmd.arg(SCRIPTS.store_many.get_hash()).arg(group.len() + 2 + acks);
        for write in &group {
            cmd.arg(&write.key);
        }
        cmd.arg(keys.recent()).arg(keys.minute(now - now.rem_euclid(60_000)));
        for ack_key in group.iter().filter_map(|w| w.ack_key.as_ref()) {
            cmd.arg(ack_key);
        }
        cmd.arg(group.len()).arg(now).arg(task_core::HISTORY_CAP);
        for write in &group {
            for arg in write.args.args_iter() {
                if let redis::Arg::Simple(arg) = arg {
                    cmd.arg(arg);
                }
            }
        }
        let permit = in_flight.clone().acquire_owned().await.expect("never closed");
        let (mut con, stored_tx) = (con.clone(), stored_tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            store_group(&mut con, &cmd, op_timeout, group, &stored_tx).await;
        });
    }
    let _ = in_flight.acquire_many(u32::try_from(GROUPS_IN_FLIGHT).unwrap_or(u32::MAX)).await;
    while let Ok(stored) = stored_rx.try_recv() {
        stored.iter().for_each(|t| tallies.add(t));
    }
    if !tallies.is_empty() {
        tallies.send(&mut con, &keys, events_cap, op_timeout).await;
    }
}

/// How many grouped write calls may be on their way to Redis at once.
const GROUPS_IN_FLIGHT: usize = 3;

/// Runs one group's `store_many` call and answers each write. The tallies of the
/// stored writes go to `tallied` before any writer hears back: a writer's next write
/// may be in a later group, whose tallies must not overtake these (the event stream
/// keeps each task's order).
async fn store_group(
    con: &mut ConnectionManager,
    cmd: &redis::Cmd,
    op_timeout: Duration,
    group: Vec<Write>,
    tallied: &mpsc::UnboundedSender<Vec<Tally>>,
) {
    let stored: Result<Vec<i64>, crate::error::Failure> = match timed(op_timeout, cmd.query_async(con)).await {
        // Redis restarted and forgot the script: load it, then send the same command.
        Err(e) if e.is_noscript() => match timed(op_timeout, SCRIPTS.store_many.load_async(con)).await {
            Ok(_) => timed(op_timeout, cmd.query_async(con)).await,
            Err(e) => Err(e),
        },
        other => other,
    };
    match stored {
        Ok(codes) if codes.len() == group.len() => {
            let (tallies, replies): (Vec<_>, Vec<_>) = group
                .into_iter()
                .zip(codes)
                .map(|(write, code)| ((code == 1).then_some(write.tally), (write.reply, code)))
                .unzip();
            let _ = tallied.send(tallies.into_iter().flatten().collect());
            for (reply, code) in replies {
                let _ = reply.send(Ok(code));
            }
        }
        Ok(codes) => {
            let text = format!("the store script answered {} codes for {} writes", codes.len(), group.len());
            for write in group {
                let _ = write.reply.send(Err((ErrorKind::Protocol, text.clone())));
            }
        }
        Err(e) => {
            let kind = e.kind();
            let text = e.backend("Redis").to_string();
            for write in group {
                let _ = write.reply.send(Err((kind, text.clone())));
            }
        }
    }
}

/// The waiters of each channel: a shared wake-up and how many wait on it.
type Waiters = Mutex<HashMap<String, (Arc<Notify>, usize)>>;

/// One RESP3 connection subscribed to the `done` channels of the tasks being waited
/// for, in this process. A channel is subscribed while it has waiters.
struct Subscriber {
    con: ConnectionManager,
    waiters: Arc<Waiters>,
    /// `terminate ID` requests from the control channel, for workers.
    terminate: Listeners,
    /// Revoked ids, kept up to date by the control channel's `revoke` messages.
    revocations: Arc<Mutex<Revocations>>,
}

/// The revoked task ids this process knows of, each with until when its revoke holds
/// (Unix ms): how a worker that does not store STARTED checks for a revoke without a
/// round trip per task. Loaded from `NS:revoked` at the first check and again after
/// the subscriber's connection was lost (messages may have been missed meanwhile); in
/// between, every revoke arrives as a `revoke UNTIL ID` message on the control channel.
#[derive(Debug, Default)]
struct Revocations {
    until: HashMap<TaskId, i64>,
    loaded: bool,
}

impl Revocations {
    /// Adds revokes, and now and then forgets those that no longer hold.
    fn add(&mut self, revoked: impl IntoIterator<Item = (TaskId, i64)>) {
        self.until.extend(revoked);
        if self.until.len() % 1024 == 0 {
            let now = now_ms();
            self.until.retain(|_, until| *until > now);
        }
    }

    fn holds(&self, id: &TaskId) -> bool {
        self.until.get(id).is_some_and(|until| *until > now_ms())
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").finish_non_exhaustive()
    }
}

/// A registration for one channel; unsubscribes when the last one is dropped.
struct Watch {
    channel: String,
    notify: Arc<Notify>,
    waiters: Arc<Waiters>,
    con: ConnectionManager,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let last = match waiters.get_mut(&self.channel) {
            Some((_, refs)) => {
                *refs -= 1;
                *refs == 0
            }
            None => false,
        };
        if last {
            waiters.remove(&self.channel);
            let mut con = self.con.clone();
            let channel = std::mem::take(&mut self.channel);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = con.unsubscribe(channel).await;
                });
            }
        }
    }
}

impl Subscriber {
    async fn open(
        client: &redis::Client,
        op_timeout: Duration,
        control: String,
    ) -> Result<Self, crate::error::Failure> {
        let info = client.get_connection_info().clone();
        let resp3 = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(resp3))?;
        let (tx, rx) = mpsc::unbounded_channel::<PushInfo>();
        let config = manager_config(op_timeout, false).set_push_sender(tx).set_automatic_resubscription();
        let con = timed(op_timeout, client.get_connection_manager_with_config(config)).await?;
        let waiters: Arc<Waiters> = Arc::default();
        let terminate = Listeners::default();
        let revocations: Arc<Mutex<Revocations>> = Arc::default();
        tokio::spawn(dispatch(rx, Arc::downgrade(&waiters), control.clone(), terminate.clone(), revocations.clone()));
        let mut sub = con.clone();
        timed(op_timeout, sub.subscribe(control)).await?;
        Ok(Self { con, waiters, terminate, revocations })
    }

    async fn watch(&self, channel: String, op_timeout: Duration) -> Result<Watch, crate::error::Failure> {
        let (notify, first) = {
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            let slot = waiters.entry(channel.clone()).or_insert_with(|| (Arc::new(Notify::new()), 0));
            slot.1 += 1;
            (slot.0.clone(), slot.1 == 1)
        };
        let watch = Watch { channel: channel.clone(), notify, waiters: self.waiters.clone(), con: self.con.clone() };
        if first {
            let mut con = self.con.clone();
            timed(op_timeout, con.subscribe(channel)).await?;
        }
        Ok(watch)
    }
}

/// A command on the control channel (`NS:control`), as `revoke.lua` and
/// [`RedisBackend::revoke`] publish them.
#[derive(Debug, PartialEq)]
enum Control {
    /// `revoke <until_ms> <id>`: do not start `id` before `until_ms` (Unix ms).
    Revoke { id: TaskId, until_ms: i64 },
    /// `terminate <id>`: abort `id` where it runs.
    Terminate(TaskId),
}

impl Control {
    /// The command `message` is, `None` for anything else.
    fn parse(message: &str) -> Option<Self> {
        if let Some(rest) = message.strip_prefix("revoke ") {
            let (until, id) = rest.split_once(' ')?;
            return Some(Self::Revoke { id: TaskId::from_str(id).ok()?, until_ms: until.parse().ok()? });
        }
        Some(Self::Terminate(TaskId::from_str(message.strip_prefix("terminate ")?).ok()?))
    }
}

/// Wakes the waiters of each message's channel; on a lost connection, wakes everyone
/// so they read the state again (a message may have been missed meanwhile).
async fn dispatch(
    mut rx: mpsc::UnboundedReceiver<PushInfo>,
    waiters: std::sync::Weak<Waiters>,
    control: String,
    terminate: Listeners,
    revocations: Arc<Mutex<Revocations>>,
) {
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Some(Value::SimpleString(s)) => Some(s.clone()),
        _ => None,
    };
    while let Some(push) = rx.recv().await {
        let Some(waiters) = waiters.upgrade() else { return };
        let waiters = waiters.lock().unwrap_or_else(|p| p.into_inner());
        match push.kind {
            PushKind::Message => {
                let Some(channel) = text(push.data.first()) else { continue };
                if channel == control {
                    match text(push.data.get(1)).as_deref().and_then(Control::parse) {
                        Some(Control::Revoke { id, until_ms }) => {
                            revocations.lock().unwrap_or_else(|p| p.into_inner()).add([(id, until_ms)]);
                        }
                        Some(Control::Terminate(id)) => {
                            terminate.notify(&id);
                        }
                        // Anyone can publish here: anything else is ignored.
                        None => {
                            tracing::debug!(channel, "ignored a message on the control channel that is not a command");
                        }
                    }
                    continue;
                }
                if let Some((notify, _)) = waiters.get(&channel) {
                    notify.notify_waiters();
                }
            }
            PushKind::Disconnection => {
                for (notify, _) in waiters.values() {
                    notify.notify_waiters();
                }
                revocations.lock().unwrap_or_else(|p| p.into_inner()).loaded = false;
            }
            _ => {}
        }
    }
}

impl RedisBackend {
    /// Connects (within the configured operation time-out).
    pub async fn connect(config: RedisConfig) -> Result<Self, BackendError> {
        let context = || format!("cannot connect the result backend to {}", task_core::redact_url(&config.url));
        let conns = Connections::open(&config).await.map_err(|e| e.backend(&context()))?;
        let subscriber =
            Subscriber::open(conns.client(), config.op_timeout, Keys::new(&config.namespace).control_channel())
                .await
                .map_err(|e| e.backend(&context()))?;
        let (writes, pending) = mpsc::unbounded_channel();
        tokio::spawn(flush_writes(
            pending,
            conns.main.clone(),
            config.op_timeout,
            Keys::new(&config.namespace),
            config.events_cap,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                keys: Keys::new(&config.namespace),
                store_id: config.store_id(),
                op_timeout: config.op_timeout,
                conns,
                subscriber,
                writes,
                events_cap: config.events_cap,
            }),
        })
    }

    fn con(&self) -> ConnectionManager {
        self.inner.conns.main.clone()
    }

    /// Runs the store rules for one write: 1 stored, 0 fenced (another worker owns
    /// the task, or no longer holds the message to `ack`), -1 a claim of a revoked
    /// task. Concurrent writes are grouped into one `store_many` script call (see
    /// [`flush_writes`]). `ack`: the processing list and receipt of the message to ack
    /// with the write.
    async fn run_store(
        &self,
        id: &TaskId,
        update: TaskMeta,
        ttl: Duration,
        ack: Option<(String, &[u8])>,
    ) -> Result<i64, BackendError> {
        let keys = &self.inner.keys;
        let state = update.state;
        let name = update.task.unwrap_or_default();
        // The name goes to the events and counts with every write; the record keeps it
        // from the claim (or from an end without a start), so it is not written again.
        // A write with the arguments starts the task's record (STARTED, or the first write
        // of a run whose start is not tracked): it is listed, and names the task.
        let starts = state == TaskState::Started || update.args.is_some();
        let task = ((starts || !matches!(state, TaskState::Success | TaskState::Retry | TaskState::Progress))
            && !name.is_empty())
        .then(|| name.clone());
        let tally = Tally {
            state,
            id: id.clone(),
            task: name,
            worker: update.worker.clone().unwrap_or_default(),
            runtime_ms: update.runtime_ms,
            starts,
        };
        let texts = [("task", task), ("error", update.error), ("worker", update.worker), ("queue", update.queue)];
        let numbers = [
            ("runtime_ms", update.runtime_ms.and_then(|ms| i64::try_from(ms).ok())),
            ("retries", update.retries.map(i64::from)),
            ("started_ms", update.started_ms),
            ("finished_ms", update.finished_ms),
        ];
        let blobs = [("result", update.result), ("progress", update.progress), ("args", update.args)];
        let (fields, shape) = {
            let present = set_fields(&texts).chain(set_fields(&numbers)).chain(set_fields(&blobs));
            (present.clone().count(), WRITE_SHAPES.iter().position(|shape| shape.iter().copied().eq(present.clone())))
        };
        // A shaped write sends values only; any other, field/value pairs.
        let named = shape.is_none();
        let (ack_key, receipt) = ack.unzip();
        let channel = state.is_ready().then(|| keys.done_channel(id));
        let bytes = texts.iter().filter_map(|(_, v)| v.as_ref().map(String::len)).sum::<usize>()
            + blobs.iter().filter_map(|(_, v)| v.as_ref().map(Vec::len)).sum::<usize>()
            + receipt.map_or(0, <[u8]>::len)
            + 256;
        // All of the write's arguments in one buffer (a Cmd without a command name):
        // numbers are written in place, nothing is allocated per argument.
        let mut args = redis::Cmd::with_capacity(8 + 2 * fields, bytes);
        // A write that acks is fenced by its ack, not by the record's owner: no writer
        // (one long string less for Lua to take in).
        args.arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg(if receipt.is_some() { "" } else { tally.worker.as_str() })
            .arg(match (state, starts) {
                (TaskState::Started, _) => "1",
                (_, true) => "2",
                _ => "0",
            })
            .arg(channel.as_deref().unwrap_or_default())
            .arg(state.as_str())
            .arg(id.as_str())
            .arg(receipt.unwrap_or_default())
            .arg(shape.map_or(0, |i| i + 1));
        if named {
            args.arg(fields);
        }
        push_fields(&mut args, named, texts);
        push_fields(&mut args, named, numbers);
        push_fields(&mut args, named, blobs);
        let (reply, answer) = oneshot::channel();
        let context = || format!("cannot store state {state} of task {id}");
        self.inner.writes.send(Write { key: keys.result(id), ack_key, args, tally, reply }).map_err(|_| {
            BackendError::new(ErrorKind::Closed, format!("{}: the result backend is shut down", context()))
        })?;
        match answer.await {
            Ok(Ok(code)) => Ok(code),
            Ok(Err((kind, text))) => Err(BackendError::new(kind, format!("{}: {text}", context()))),
            Err(_) => {
                Err(BackendError::new(ErrorKind::Closed, format!("{}: the result backend is shut down", context())))
            }
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
        Ok(parse_meta(fields))
    }
}

fn parse_meta(mut fields: HashMap<String, Vec<u8>>) -> Option<TaskMeta> {
    let state: TaskState = String::from_utf8(fields.remove("state")?).ok()?.parse().ok()?;
    let mut take_text = |k: &str| fields.remove(k).map(|v| String::from_utf8_lossy(&v).into_owned());
    let mut meta = TaskMeta::state(state);
    meta.task = take_text("task");
    meta.error = take_text("error");
    meta.worker = take_text("worker");
    meta.retries = take_text("retries").and_then(|v| v.parse().ok());
    meta.started_ms = take_text("started_ms").and_then(|v| v.parse().ok());
    meta.finished_ms = take_text("finished_ms").and_then(|v| v.parse().ok());
    meta.queue = take_text("queue");
    meta.runtime_ms = take_text("runtime_ms").and_then(|v| v.parse().ok());
    meta.result = fields.remove("result");
    meta.progress = fields.remove("progress");
    meta.args = fields.remove("args");
    Some(meta)
}

impl ResultBackend for RedisBackend {
    fn store<'a>(&'a self, id: &'a TaskId, update: TaskMeta, ttl: Duration) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let state = update.state;
            match self.run_store(id, update, ttl, None).await? {
                0 => Err(Self::fenced(id, state)),
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
            let deadline = tokio::time::Instant::now() + timeout;
            let watch = self
                .inner
                .subscriber
                .watch(self.inner.keys.done_channel(id), self.inner.op_timeout)
                .await
                .map_err(|e| e.backend(&format!("cannot subscribe to the completion of task {id}")))?;
            loop {
                let notified = watch.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let meta = self.read(id).await?;
                if meta.as_ref().is_some_and(|m| m.state.is_ready()) {
                    return Ok(meta);
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Ok(meta);
                }
            }
        })
    }

    fn forget<'a>(&'a self, id: &'a TaskId) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut con = self.con();
            let _: () =
                timed(self.inner.op_timeout, redis::cmd("DEL").arg(self.inner.keys.result(id)).query_async(&mut con))
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
            match self.run_store(id, update, ttl, None).await? {
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
            let mut inv = SCRIPTS.revoke.prepare_invoke();
            inv.key(keys.result(id))
                .key(keys.recent())
                .key(keys.revoked())
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
                .arg(reason)
                .arg(keys.done_channel(id))
                .arg(keys.control_channel())
                .arg(id.as_str())
                .arg(now_ms())
                .arg(task_core::HISTORY_CAP)
                .arg(if terminate { "1" } else { "0" });
            let mut con = self.con();
            let _: i64 = timed(self.inner.op_timeout, inv.invoke_async(&mut con))
                .await
                .map_err(|e| e.backend(&format!("cannot revoke task {id}")))?;
            Ok(())
        })
    }

    fn terminations(&self) -> Option<&dyn Terminations> {
        Some(self)
    }

    fn settle_atomically(&self) -> Option<&dyn SettleAtomically> {
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
            let list = self.inner.keys.processing(&delivery.queue, consumer.as_str());
            match self.run_store(id, update, ttl, Some((list, delivery.receipt.as_bytes()))).await? {
                0 => Err(BackendError::new(
                    ErrorKind::Fenced,
                    format!(
                        "state {state} of task {id} and its ack refused: worker {consumer} no longer holds the message \
                         (it missed its heartbeat and the message was recovered)"
                    ),
                )),
                _ => Ok(()),
            }
        })
    }
}

/// How many index entries one `recent` call looks at, at most: a filter that matches
/// nothing (say, tasks STARTED when none runs) reads this many records, about 60 ms
/// on loopback; the state and name indices make the usual filters far narrower.
const SCAN_LIMIT: isize = 10_000;

impl TaskHistory for RedisBackend {
    fn record_event<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut con = self.con();
            let keys = &self.inner.keys;
            let mut pipe = redis::pipe();
            pipe.cmd("XADD")
                .arg(keys.events())
                .arg("MAXLEN")
                .arg("~")
                .arg(stream_entries(self.inner.events_cap))
                .arg("*")
                .arg("at")
                .arg(event.at_ms)
                .arg("lines")
                .arg(event.to_line())
                .ignore();
            if let (EventKind::WorkerOffline, Some(worker)) = (event.kind, &event.worker) {
                // The workers that stopped in the last day, for the overview.
                let key = keys.workers_offline();
                pipe.cmd("ZADD").arg(&key).arg(event.at_ms).arg(worker).ignore();
                pipe.cmd("ZREMRANGEBYSCORE").arg(&key).arg("-inf").arg(event.at_ms - DAY_MS).ignore();
                pipe.cmd("PEXPIRE").arg(&key).arg(DAY_MS).ignore();
            }
            let _: () = timed(self.inner.op_timeout, pipe.query_async(&mut con))
                .await
                .map_err(|e| e.backend(&format!("cannot record a {} event", event.kind)))?;
            Ok(())
        })
    }

    fn events(&self, limit: usize) -> BoxFuture<'_, Result<Vec<Event>, BackendError>> {
        Box::pin(async move {
            let mut con = self.con();
            // An entry holds one line per write of a grouped call: `limit` entries are
            // at least `limit` events.
            let entries: Vec<(String, HashMap<String, String>)> = timed(
                self.inner.op_timeout,
                redis::cmd("XREVRANGE")
                    .arg(self.inner.keys.events())
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut con),
            )
            .await
            .map_err(|e| e.backend("cannot read the events"))?;
            let mut events = Vec::with_capacity(limit);
            for (entry, fields) in entries {
                let at = fields.get("at").and_then(|v| v.parse().ok()).unwrap_or(0);
                let lines = fields.get("lines").map(String::as_str).unwrap_or_default();
                // Newest first: the lines of an entry backwards.
                for (i, line) in lines.lines().enumerate().collect::<Vec<_>>().into_iter().rev() {
                    if let Some(event) = Event::from_line(format!("{entry}/{i}"), at, line) {
                        events.push(event);
                    }
                }
                if events.len() >= limit {
                    break;
                }
            }
            events.truncate(limit);
            Ok(events)
        })
    }

    fn workers_offline(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<(String, i64)>, BackendError>> {
        Box::pin(async move {
            let mut con = self.con();
            timed(
                self.inner.op_timeout,
                redis::cmd("ZREVRANGEBYSCORE")
                    .arg(self.inner.keys.workers_offline())
                    .arg("+inf")
                    .arg(since_ms)
                    .arg("WITHSCORES")
                    .query_async(&mut con),
            )
            .await
            .map_err(|e| e.backend("cannot read the workers that went offline"))
        })
    }

    fn task_stats(&self) -> BoxFuture<'_, Result<TaskStats, BackendError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut pipe = redis::pipe();
            pipe.cmd("HGETALL").arg(keys.task_counts()).cmd("HGETALL").arg(keys.runtimes());
            let mut con = self.con();
            let (counts, runtimes): (HashMap<String, u64>, HashMap<String, u64>) =
                timed(self.inner.op_timeout, pipe.query_async(&mut con))
                    .await
                    .map_err(|e| e.backend("cannot read the task statistics"))?;
            let split = |k: &str| k.rsplit_once('\t').map(|(a, b)| (a.to_owned(), b.to_owned()));
            Ok(TaskStats::from_counters(
                counts.iter().filter_map(|(k, n)| {
                    let (task, state) = split(k)?;
                    Some((task, state.parse().ok()?, *n))
                }),
                runtimes.iter().filter_map(|(k, n)| split(k).map(|(task, bucket)| (task, bucket, *n))),
            ))
        })
    }

    fn recent<'a>(
        &'a self,
        filter: &'a TaskFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<task_core::RecentTask>, BackendError>> {
        Box::pin(async move {
            let keys = &self.inner.keys;
            let mut con = self.con();
            let mut found = Vec::new();
            let mut seen = std::collections::HashSet::new();
            // The narrowest index for the filter; each record is still checked against it
            // (a task in the SUCCESS index may have been retried since, say).
            let source = match (&filter.state, &filter.task) {
                (Some(state), _) if INDEXED_STATES.contains(state) => keys.state_index(*state),
                (_, Some(task)) => keys.task_index(task),
                _ => keys.recent(),
            };
            let page = 500isize;
            let mut start = 0isize;
            while found.len() < limit && start < SCAN_LIMIT {
                let ids: Vec<String> = timed(
                    self.inner.op_timeout,
                    redis::cmd("LRANGE").arg(&source).arg(start).arg(start + page - 1).query_async(&mut con),
                )
                .await
                .map_err(|e| e.backend("cannot read the recent tasks"))?;
                if ids.is_empty() {
                    break;
                }
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("HGETALL").arg(keys.result(&TaskId::from_str(id).unwrap_or_default()));
                }
                let records: Vec<HashMap<String, Vec<u8>>> = timed(self.inner.op_timeout, pipe.query_async(&mut con))
                    .await
                    .map_err(|e| e.backend("cannot read the recent tasks"))?;
                for (id, record) in ids.into_iter().zip(records) {
                    // Every write stamps the record with the time of the change.
                    let at =
                        record.get("changed_ms").and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()).unwrap_or(0);
                    let (Some(meta), Ok(task_id)) = (parse_meta(record), TaskId::from_str(&id)) else { continue };
                    if !seen.insert(id) {
                        continue;
                    }
                    // The list is in the order tasks entered it; a record can change later,
                    // so the time filter is applied to each, and the scan ends at SCAN_LIMIT.
                    if filter.matches(&meta, at) {
                        found.push((task_id, at, meta));
                        if found.len() == limit {
                            return Ok(found);
                        }
                    }
                }
                start += page;
            }
            Ok(found)
        })
    }

    fn throughput(&self, minutes: usize) -> BoxFuture<'_, Result<Vec<MinuteCount>, BackendError>> {
        Box::pin(async move {
            let now = now_ms();
            let current = now - now.rem_euclid(60_000);
            let starts: Vec<i64> =
                (0..minutes).rev().map(|back| current - i64::try_from(back).unwrap_or(0) * 60_000).collect();
            let mut pipe = redis::pipe();
            for minute in &starts {
                pipe.cmd("HMGET").arg(self.inner.keys.minute(*minute)).arg("succeeded").arg("failed");
            }
            let mut con = self.con();
            let counts: Vec<(Option<u64>, Option<u64>)> = timed(self.inner.op_timeout, pipe.query_async(&mut con))
                .await
                .map_err(|e| e.backend("cannot read the throughput"))?;
            Ok(starts
                .into_iter()
                .zip(counts)
                .map(|(m, (s, f))| MinuteCount::new(m, s.unwrap_or(0), f.unwrap_or(0)))
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_commands_parse_and_anything_else_is_none() {
        let id = TaskId::new();
        let revoke = |id: &TaskId| Some(Control::Revoke { id: id.clone(), until_ms: 1_700_000_000_000 });
        assert_eq!(Control::parse(&format!("revoke 1700000000000 {id}")), revoke(&id));
        assert_eq!(Control::parse(&format!("terminate {id}")), Some(Control::Terminate(id.clone())));
        // A task id of the caller's choosing may hold spaces: the rest of the line is the id.
        let custom = TaskId::from_str("report for 2026-11").unwrap();
        assert_eq!(Control::parse("revoke 1700000000000 report for 2026-11"), revoke(&custom));
        for garbage in [
            String::new(),
            "revoke".into(),
            "revoke ".into(),
            format!("revoke {id}"),
            format!("revoke soon {id}"),
            "revoke 1700000000000 ".into(),
            "revoke 1700000000000  ".into(),
            "terminate".into(),
            "terminate ".into(),
            format!("TERMINATE {id}"),
            format!("kill {id}"),
            "\u{0}\u{ff}".into(),
        ] {
            assert_eq!(Control::parse(&garbage), None, "{garbage:?}");
        }
    }

    fn stored(state: TaskState, task: &str) -> Tally {
        Tally {
            state,
            id: TaskId::new(),
            task: task.into(),
            worker: "w1".into(),
            runtime_ms: Some(7),
            starts: state == TaskState::Started,
        }
    }

    #[test]
    fn tallied_events_fill_stream_entries_of_at_most_a_hundred_lines() {
        let mut tallies = Tallies::default();
        for _ in 0..250 {
            tallies.add(&stored(TaskState::Success, "t"));
        }
        tallies.add(&stored(TaskState::Pending, "t")); // no event for PENDING
        let lines: Vec<usize> = tallies.chunks.iter().map(|c| c.lines().count()).collect();
        assert_eq!(lines, [100, 100, 50]);
        assert_eq!(
            tallies.bytes,
            tallies.chunks.iter().map(String::len).sum::<usize>() - 247,
            "the 247 newlines are not counted"
        );
        for line in tallies.chunks.iter().flat_map(|c| c.lines()) {
            let event = Event::from_line(String::new(), 0, line).expect("a line the reader understands");
            assert_eq!(
                (event.kind, event.task.as_deref(), event.worker.as_deref()),
                (EventKind::TaskSucceeded, Some("t"), Some("w1"))
            );
        }
        let tally = &tallies.by_task["t"];
        assert_eq!((tally.count, tally.sum_ms), (250, 1750));
        assert_eq!(tally.buckets[1], 250, "7 ms is in the 10 ms bucket");
    }
}
