//! The one subscriber connection of a process: completion channels for waiters, and
//! the control channel (revokes, terminate requests).

use redis::cluster_async::ClusterConnection;

use super::announced::Announced;
use super::*;
use crate::conn::{Connections, Primary, PushPlace};
use crate::error::Failure;

/// The subscriber's connection, replaced when it follows a new primary (Sentinel).
#[derive(Clone)]
pub(super) struct SubCon {
    current: Arc<std::sync::RwLock<(SubLink, String)>>,
}

/// A RESP3 connection for pushes: to one server, or to a cluster (where a message
/// published on any node reaches the subscribers of every node).
#[derive(Clone)]
enum SubLink {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl SubLink {
    async fn subscribe(&mut self, channels: impl redis::ToRedisArgs + Send + Sync) -> redis::RedisResult<()> {
        match self {
            SubLink::Server(con) => con.subscribe(channels).await,
            SubLink::Cluster(con) => con.subscribe(channels).await,
        }
    }

    /// Subscribes to completion channels: classic ones on one server; sharded ones on a
    /// cluster, one `SSUBSCRIBE` each (several in one would span slots: `CROSSSLOT`),
    /// all at once.
    async fn watch(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        match self {
            SubLink::Server(con) => con.subscribe(channels).await,
            SubLink::Cluster(con) => each(con, channels, true).await,
        }
    }

    async fn unwatch(&mut self, channels: &[String]) -> redis::RedisResult<()> {
        match self {
            SubLink::Server(con) => con.unsubscribe(channels).await,
            SubLink::Cluster(con) => each(con, channels, false).await,
        }
    }

    /// The record at `key`, `None` when it cannot be read (the waiter reads it again on
    /// its own connection) or on a cluster (the record's node is not the channel's).
    async fn read(&mut self, key: String, op_timeout: Duration) -> Option<Fields> {
        let SubLink::Server(con) = self else { return None };
        let read = timed(op_timeout, redis::cmd("HGETALL").arg(key).query_async(con)).await;
        read.map_err(|e| tracing::debug!(error = ?e, "cannot read a record on the subscriber's connection")).ok()
    }

    async fn ping(&mut self) -> redis::RedisResult<String> {
        match self {
            SubLink::Server(con) => redis::cmd("PING").query_async(con).await,
            SubLink::Cluster(con) => redis::cmd("PING").query_async(con).await,
        }
    }
}

/// `SSUBSCRIBE` (`subscribe`) or `SUNSUBSCRIBE` of each channel, concurrently; the
/// first error, if any.
async fn each(con: &ClusterConnection, channels: &[String], subscribe: bool) -> redis::RedisResult<()> {
    let mut calls = tokio::task::JoinSet::new();
    for channel in channels {
        let (mut con, channel) = (con.clone(), channel.clone());
        calls.spawn(async move {
            if subscribe { con.ssubscribe(&channel).await } else { con.sunsubscribe(&channel).await }
        });
    }
    let mut first = Ok(());
    while let Some(done) = calls.join_next().await {
        let done = done.unwrap_or_else(|e| Err(redis::RedisError::from(std::io::Error::other(e.to_string()))));
        if first.is_ok() {
            first = done;
        }
    }
    first
}

impl SubCon {
    fn get(&self) -> SubLink {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).0.clone()
    }

    fn addr(&self) -> String {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
    }
}

/// Opens the subscriber's RESP3 connection to `client`'s server, its pushes to `tx`.
async fn open_push(
    client: &redis::Client,
    tx: mpsc::UnboundedSender<PushInfo>,
    op_timeout: Duration,
) -> Result<ConnectionManager, Failure> {
    let info = client.get_connection_info().clone();
    let resp3 = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(resp3))?;
    let config = manager_config(op_timeout, false).set_push_sender(tx).set_automatic_resubscription();
    timed(op_timeout, client.get_connection_manager_with_config(config)).await
}

/// What the waiters of one channel share: their wake-up, and what woke them: how many
/// messages the channel has brought, and the final record when the last one carried it
/// (`store_many.lua` publishes it when anyone listens), so that a waiter woken by it
/// need not read it.
#[derive(Debug, Default)]
pub(super) struct Heard {
    pub(super) notify: Notify,
    last: Mutex<(u64, Option<TaskMeta>)>,
}

impl Heard {
    /// How many messages have been heard: taken before a read, for [`Self::record_after`].
    pub(super) fn heard(&self) -> u64 {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// The final record the last message carried, if more than `seen` messages have
    /// been heard: a record heard before a waiter's read is not news to it (the task
    /// may have run again since).
    pub(super) fn record_after(&self, seen: u64) -> Option<TaskMeta> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.1.as_ref().filter(|m| last.0 > seen && m.state.is_ready()).cloned()
    }

    /// One more message, with the record it carried, if any; the waiters are woken after.
    /// `None` is also the wake-up to read the state again (a message may have been missed).
    fn hear(&self, record: Option<TaskMeta>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = (last.0 + 1, record);
        drop(last);
        self.notify.notify_waiters();
    }
}

/// The waiters of each channel: what they share and how many wait on it.
type Waiters = Mutex<HashMap<String, (Arc<Heard>, usize)>>;

/// What the waiters of `channel` share, if anyone waits on it (taken out of the lock:
/// waking them needs no lock held).
fn heard_of(waiters: &Waiters, channel: &str) -> Option<Arc<Heard>> {
    waiters.lock().unwrap_or_else(|p| p.into_inner()).get(channel).map(|(heard, _)| heard.clone())
}

/// Wakes every waiter to read its state again: after the connection was lost or moved,
/// a message may have been missed.
fn wake_all(waiters: &Waiters) {
    for (heard, _) in waiters.lock().unwrap_or_else(|p| p.into_inner()).values() {
        heard.hear(None);
    }
}

/// One RESP3 connection subscribed to the `done` channels of the tasks being waited
/// for, in this process. A channel is subscribed while it has waiters.
pub(super) struct Subscriber {
    pub(super) waiters: Arc<Waiters>,
    /// Subscription changes, carried out in order by [`subscriptions`].
    pub(super) changes: mpsc::UnboundedSender<Change>,
    /// `terminate ID` requests from the control channel, for workers.
    pub(super) terminate: Listeners,
    /// `ask ID COMMAND` requests (remote control), for workers.
    pub(super) requests: Listeners<task_core::capability::Request>,
    /// Revoked ids, kept up to date by the control channel's `revoke` messages.
    pub(super) revocations: Arc<Mutex<Revocations>>,
    /// Brings the connection back (or to a new primary) when a subscribe fails.
    keeper: Keeper,
}

/// The revoked task ids this process knows of, each with until when its revoke holds
/// (Unix ms): how a worker that does not store STARTED checks for a revoke without a
/// round trip per task. Loaded from `NS:revoked` at the first check and again after
/// the subscriber's connection was lost (messages may have been missed meanwhile); in
/// between, every revoke arrives as a `revoke UNTIL ID` message on the control channel.
#[derive(Debug, Default)]
pub(super) struct Revocations {
    pub(super) until: HashMap<TaskId, i64>,
    pub(super) loaded: bool,
}

impl Revocations {
    /// Adds revokes, and now and then forgets those that no longer hold.
    pub(super) fn add(&mut self, revoked: impl IntoIterator<Item = (TaskId, i64)>) {
        self.until.extend(revoked);
        if self.until.len() % 1024 == 0 {
            let now = now_ms();
            self.until.retain(|_, until| *until > now);
        }
    }

    pub(super) fn holds(&self, id: &TaskId) -> bool {
        self.until.get(id).is_some_and(|until| *until > now_ms())
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").finish_non_exhaustive()
    }
}

/// A registration for one channel; unsubscribes when the last one is dropped.
pub(super) struct Watch {
    pub(super) channel: String,
    pub(super) heard: Arc<Heard>,
    pub(super) waiters: Arc<Waiters>,
    pub(super) changes: mpsc::UnboundedSender<Change>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, refs)) = waiters.get_mut(&self.channel) {
            *refs -= 1;
            if *refs == 0 {
                waiters.remove(&self.channel);
            }
        }
        drop(waiters);
        let _ = self.changes.send(Change::Unwatch(std::mem::take(&mut self.channel)));
    }
}

/// A record as `HGETALL` reads it.
pub(super) type Fields = HashMap<String, Vec<u8>>;

/// A change of the subscriptions, as a waiter asks for it.
pub(super) enum Change {
    /// One more waiter of the channel; answered once it is subscribed, with the record
    /// at the key given, read on the subscriber's connection right after the subscribe
    /// (`None` when it could not be read).
    Watch(String, Option<String>, oneshot::Sender<Result<Option<Fields>, Failure>>),
    /// One waiter less.
    Unwatch(String),
}

/// Carries out the subscription changes in the order they were asked for, so that the
/// unsubscribe of a channel's last waiter can never overtake (and cancel) the subscribe
/// of its next one. Changes that arrived meanwhile go together: one SUBSCRIBE and one
/// UNSUBSCRIBE for all their channels, and a channel left and watched again in between
/// is not touched at all.
///
/// The waiters' first reads go on the same connection as the SUBSCRIBE, sent after it
/// without waiting for its answer: Redis runs a connection's commands in order, so each
/// read sees any completion that the subscription missed, and the waiter saves a round
/// trip. The requests of one connection leave in the order they are made (one queue,
/// whose permits are handed out in turn), and [`join`] polls the subscribe first.
async fn subscriptions(sub: SubCon, mut changes: mpsc::UnboundedReceiver<Change>, op_timeout: Duration) {
    let mut refs: HashMap<String, usize> = HashMap::new();
    let mut batch = Vec::new();
    while changes.recv_many(&mut batch, 1024).await > 0 {
        let subscribed_before: HashMap<String, bool> =
            batch.iter().map(|c| c.channel()).map(|ch| (ch.to_owned(), refs.contains_key(ch))).collect();
        let (mut answers, mut reads) = (Vec::new(), Vec::new());
        for change in batch.drain(..) {
            match change {
                Change::Watch(channel, read, answer) => {
                    *refs.entry(channel).or_default() += 1;
                    answers.push(answer);
                    reads.push(read);
                }
                Change::Unwatch(channel) => {
                    if let Some(n) = refs.get_mut(&channel) {
                        *n -= 1;
                        if *n == 0 {
                            refs.remove(&channel);
                        }
                    }
                }
            }
        }
        let mut con = sub.get();
        // The reads go on this same connection, whatever the keeper does meanwhile.
        let cons: Vec<SubLink> = reads.iter().map(|_| con.clone()).collect();
        let (mut subscribe, mut unsubscribe) = (Vec::<String>::new(), Vec::<String>::new());
        for (channel, before) in subscribed_before {
            match (before, refs.contains_key(&channel)) {
                (false, true) => subscribe.push(channel),
                (true, false) => unsubscribe.push(channel),
                _ => {}
            }
        }
        if !unsubscribe.is_empty() {
            let _ = timed(op_timeout, con.unwatch(&unsubscribe)).await;
        }
        let subscribing = async {
            if subscribe.is_empty() {
                return Ok(());
            }
            let done = timed(op_timeout, con.watch(&subscribe)).await;
            if done.is_err() {
                // Not subscribed: the waiters hear the error and drop their watches,
                // whose unwatches follow in order.
                tracing::debug!(channels = subscribe.len(), "cannot subscribe to completion channels");
            }
            done
        };
        let reading = futures_util::future::join_all(
            reads.into_iter().zip(cons).map(|(key, mut con)| async move { con.read(key?, op_timeout).await }),
        );
        let (subscribed, read) = futures_util::future::join(subscribing, reading).await;
        for (answer, read) in answers.into_iter().zip(read) {
            let _ = answer.send(subscribed.clone().map(|()| read));
        }
    }
}

impl Change {
    fn channel(&self) -> &str {
        match self {
            Change::Watch(channel, ..) | Change::Unwatch(channel) => channel,
        }
    }
}

impl Subscriber {
    /// Opens it, subscribed to the control channel, and to `pidbox` (a channel and where
    /// its messages go: Celery's remote control) when given.
    pub(super) async fn open(
        conns: &Connections,
        op_timeout: Duration,
        control: String,
        pidbox: Option<(String, mpsc::UnboundedSender<Vec<u8>>)>,
    ) -> Result<Self, Failure> {
        let (tx, rx) = mpsc::unbounded_channel::<PushInfo>();
        let (con, addr) = match conns.push_place() {
            PushPlace::Server(client) => {
                (SubLink::Server(open_push(&client, tx.clone(), op_timeout).await?), crate::conn::address(&client))
            }
            PushPlace::Cluster(clients) => {
                let client = clients.push(tx.clone())?;
                (SubLink::Cluster(timed(op_timeout, client.get_async_connection()).await?), "cluster".to_owned())
            }
        };
        let primary = conns.primary();
        let sub = SubCon { current: Arc::new(std::sync::RwLock::new((con.clone(), addr))) };
        let waiters: Arc<Waiters> = Arc::default();
        let terminate = Listeners::default();
        let requests = Listeners::default();
        let revocations: Arc<Mutex<Revocations>> = Arc::default();
        let pidbox_channel = pidbox.as_ref().map(|(channel, _)| channel.clone());
        let keeper = Keeper {
            sub: sub.clone(),
            primary,
            pushes: tx,
            control: control.clone(),
            pidbox: pidbox_channel.clone(),
            op_timeout,
            busy: Arc::default(),
            alive: Arc::downgrade(&waiters),
        };
        let routes = Routes {
            control: control.clone(),
            terminate: terminate.clone(),
            requests: requests.clone(),
            revocations: revocations.clone(),
            pidbox,
        };
        tokio::spawn(dispatch(rx, Arc::downgrade(&waiters), routes, keeper.clone()));
        let mut con = con;
        timed(op_timeout, con.subscribe(control)).await?;
        if let Some(channel) = pidbox_channel {
            timed(op_timeout, con.subscribe(channel)).await?;
        }
        let (changes, asked) = mpsc::unbounded_channel();
        tokio::spawn(subscriptions(sub, asked, op_timeout));
        Ok(Self { waiters, changes, terminate, requests, revocations, keeper })
    }

    /// Makes the subscriptions again (a completion was found missed).
    pub(super) fn resubscribe(&self) {
        self.keeper.reconnect();
    }

    /// Subscribes to `channel` for one more waiter; with `read`, the record at that key
    /// too, read right after the subscribe on the same connection (see [`subscriptions`]):
    /// only on one server, where the record lives where the subscriber listens. The record
    /// comes with how many messages the channel had brought before it was read (see
    /// [`Heard::heard`]): a waiter that finds more since cannot tell whether it woke for
    /// one of them, and reads again.
    pub(super) async fn watch(
        &self,
        channel: String,
        read: Option<String>,
        op_timeout: Duration,
    ) -> Result<(Watch, Option<(u64, Fields)>), Failure> {
        let heard = {
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            let slot = waiters.entry(channel.clone()).or_default();
            slot.1 += 1;
            slot.0.clone()
        };
        let before = heard.heard();
        let watch =
            Watch { channel: channel.clone(), heard, waiters: self.waiters.clone(), changes: self.changes.clone() };
        let (answer, answered) = oneshot::channel();
        self.changes.send(Change::Watch(channel, read, answer)).map_err(|_| Failure::Closed)?;
        let subscribed = match tokio::time::timeout(op_timeout, answered).await {
            Ok(Ok(subscribed)) => subscribed,
            Ok(Err(_)) => Err(Failure::Closed),
            Err(_) => Err(Failure::TimedOut(op_timeout)),
        };
        if subscribed.is_err() {
            // No disconnection may have been seen (a frozen server): look into it.
            self.keeper.reconnect();
        }
        subscribed.map(|read| (watch, read.map(|fields| (before, fields))))
    }
}

/// Brings the subscriber's connection back after it was lost. The connection manager
/// reconnects only when a command fails on it, and tries once: a subscriber sends no
/// commands of its own, so when Redis is still down at that try, it would stay
/// disconnected, deaf to completions and to the control channel. The keeper pings
/// until a ping is answered, with growing pauses; the manager then resubscribes every
/// channel by itself. Behind Sentinel, when the Sentinels name another primary, it
/// opens a connection there instead, subscribes it to the control channel and every
/// watched channel, and wakes the waiters to read their state again.
#[derive(Clone)]
pub(super) struct Keeper {
    sub: SubCon,
    /// `None` on a cluster: its connection follows the cluster by itself.
    primary: Option<Primary>,
    /// Where the pushes of a new connection go (the dispatcher).
    pushes: mpsc::UnboundedSender<PushInfo>,
    control: String,
    /// Celery's pidbox channel, when served.
    pidbox: Option<String>,
    op_timeout: Duration,
    /// A reconnect loop runs.
    busy: Arc<std::sync::atomic::AtomicBool>,
    /// Gone when the backend is: the loop stops trying then.
    alive: std::sync::Weak<Waiters>,
}

impl Keeper {
    pub(super) fn reconnect(&self) {
        use std::sync::atomic::Ordering;
        if self.busy.swap(true, Ordering::SeqCst) {
            return;
        }
        let keeper = self.clone();
        let (op_timeout, busy, alive) = (self.op_timeout, self.busy.clone(), self.alive.clone());
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                tokio::time::sleep(pause).await;
                let Some(waiters) = alive.upgrade() else { return };
                // A demoted primary still answers a ping: ask where the primary is first.
                if keeper.follow(&waiters).await {
                    break;
                }
                let mut con = keeper.sub.get();
                if matches!(con, SubLink::Cluster(_)) {
                    if keeper.restore(&mut con, &waiters).await {
                        break;
                    }
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
                let pong = timed(op_timeout, con.ping()).await;
                match pong {
                    Ok(_) => break,
                    Err(e) => tracing::debug!(error = ?e, "the subscriber is still disconnected"),
                }
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            busy.store(false, Ordering::SeqCst);
            tracing::info!("the subscriber reconnected");
        });
    }
}

impl Keeper {
    /// On a cluster: subscribes again to every watched sharded channel, one at a time
    /// (redis-rs restores them as one `SSUBSCRIBE`, which spans slots and is refused),
    /// then wakes the waiters to read their state (a completion may have been missed);
    /// true once every one is subscribed (until then, a slot may still have no node).
    async fn restore(&self, con: &mut SubLink, waiters: &Waiters) -> bool {
        let channels: Vec<String> = waiters.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        if let Err(e) = timed(self.op_timeout, con.watch(&channels)).await {
            tracing::debug!(error = ?e, "the subscriber cannot subscribe again yet");
            return false;
        }
        wake_all(waiters);
        true
    }

    /// Behind Sentinel: moves the subscriber to the primary the Sentinels name, if it
    /// moved; true once it listens there.
    async fn follow(&self, waiters: &Waiters) -> bool {
        let Some(primary) = &self.primary else { return false };
        let Some(client) = primary.moved_from(&self.sub.addr()).await else { return false };
        let mut con = match open_push(&client, self.pushes.clone(), self.op_timeout).await {
            Ok(con) => con,
            Err(e) => {
                tracing::debug!(error = ?e, "the subscriber cannot reach the new primary yet");
                return false;
            }
        };
        let mut channels: Vec<String> = waiters.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        channels.push(self.control.clone());
        channels.extend(self.pidbox.clone());
        if let Err(e) = timed(self.op_timeout, con.subscribe(&channels)).await {
            tracing::debug!(error = ?e, "the subscriber cannot subscribe on the new primary yet");
            return false;
        }
        let addr = crate::conn::address(&client);
        *self.sub.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            (SubLink::Server(con), addr.clone());
        // A completion may have been missed meanwhile: every waiter reads its state.
        wake_all(waiters);
        tracing::info!(primary = %addr, "the subscriber follows the new primary named by the Sentinels");
        true
    }
}

/// A command on the control channel (`NS:control`), as `revoke.lua` and
/// [`RedisBackend::revoke`] publish them.
#[derive(Debug, PartialEq)]
pub(super) enum Control {
    /// `revoke <until_ms> <id>`: do not start `id` before `until_ms` (Unix ms).
    Revoke { id: TaskId, until_ms: i64 },
    /// `terminate <id>`: abort `id` where it runs.
    Terminate(TaskId),
    /// `ask <request> <command ...>`: a remote-control command for every worker.
    Ask(task_core::capability::Request),
}

impl Control {
    /// The command `message` is, `None` for anything else.
    pub(super) fn parse(message: &str) -> Option<Self> {
        if let Some(rest) = message.strip_prefix("revoke ") {
            let (until, id) = rest.split_once(' ')?;
            return Some(Self::Revoke { id: TaskId::from_str(id).ok()?, until_ms: until.parse().ok()? });
        }
        if let Some(rest) = message.strip_prefix("ask ") {
            let (id, command) = rest.split_once(' ')?;
            return (!id.is_empty() && !command.trim().is_empty())
                .then(|| Self::Ask(task_core::capability::Request::new(id, command)));
        }
        Some(Self::Terminate(TaskId::from_str(message.strip_prefix("terminate ")?).ok()?))
    }
}

/// Where the messages of the channels always subscribed go.
pub(super) struct Routes {
    /// The control channel's name.
    control: String,
    terminate: Listeners,
    requests: Listeners<task_core::capability::Request>,
    revocations: Arc<Mutex<Revocations>>,
    /// Celery's pidbox channel and where its messages go, when served.
    pidbox: Option<(String, mpsc::UnboundedSender<Vec<u8>>)>,
}

/// Wakes the waiters of each message's channel; on a lost connection, wakes everyone
/// so they read the state again (a message may have been missed meanwhile).
pub(super) async fn dispatch(
    mut rx: mpsc::UnboundedReceiver<PushInfo>,
    waiters: std::sync::Weak<Waiters>,
    routes: Routes,
    keeper: Keeper,
) {
    let Routes { control, terminate, requests, revocations, pidbox } = routes;
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Some(Value::SimpleString(s)) => Some(s.clone()),
        _ => None,
    };
    let mut announced = Announced::default();
    loop {
        // A push already queued goes first: the message after a `+` mostly is, and then
        // no timer is set (setting one may wake the runtime's timer thread).
        let push = match rx.try_recv() {
            Ok(push) => push,
            Err(mpsc::error::TryRecvError::Disconnected) => return,
            Err(mpsc::error::TryRecvError::Empty) => {
                let due = announced.next_due();
                tokio::select! {
                    push = rx.recv() => match push {
                        Some(push) => push,
                        None => return,
                    },
                    () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                        let Some(waiters) = waiters.upgrade() else { return };
                        for channel in announced.overdue(tokio::time::Instant::now()) {
                            if let Some(heard) = heard_of(&waiters, &channel) {
                                heard.hear(None);
                            }
                        }
                        continue;
                    }
                }
            }
        };
        let Some(waiters) = waiters.upgrade() else { return };
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let Some(channel) = text(push.data.first()) else { continue };
                if let Some((_, to)) = pidbox.as_ref().filter(|(pidbox, _)| *pidbox == channel) {
                    if let Some(Value::BulkString(message)) = push.data.get(1) {
                        let _ = to.send(message.clone());
                    }
                    continue;
                }
                // Control commands run the listeners' code: without the waiters' lock.
                if channel == control {
                    match text(push.data.get(1)).as_deref().and_then(Control::parse) {
                        Some(Control::Revoke { id, until_ms }) => {
                            revocations.lock().unwrap_or_else(|p| p.into_inner()).add([(id, until_ms)]);
                        }
                        Some(Control::Terminate(id)) => {
                            terminate.notify(&id);
                        }
                        Some(Control::Ask(request)) => requests.notify(&request),
                        // Anyone can publish here: anything else is ignored.
                        None => {
                            tracing::debug!(channel, "ignored a message on the control channel that is not a command");
                        }
                    }
                    continue;
                }
                let Some(heard) = heard_of(&waiters, &channel) else { continue };
                match push.data.get(1) {
                    // A final state's first message: the record (or the state) follows,
                    // unless it was stored on another server (see `announced`).
                    Some(Value::BulkString(message)) if message == b"+" => {
                        announced.announce(channel, tokio::time::Instant::now());
                    }
                    Some(Value::BulkString(message)) => {
                        announced.followed(&channel);
                        heard.hear(record::published(message).and_then(record::parse));
                    }
                    _ => {
                        announced.followed(&channel);
                        heard.hear(None);
                    }
                }
            }
            // The server dropped a sharded subscription (its slot moved: resharding, a
            // manual failover) while the connection stays: if anyone still waits on it,
            // subscribe again (the keeper) and let its waiters read their state.
            PushKind::SUnsubscribe => {
                let Some(channel) = text(push.data.first()) else { continue };
                if let Some(heard) = heard_of(&waiters, &channel) {
                    heard.hear(None);
                    keeper.reconnect();
                }
            }
            PushKind::Disconnection => {
                wake_all(&waiters);
                revocations.lock().unwrap_or_else(|p| p.into_inner()).loaded = false;
                keeper.reconnect();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heard_record_is_news_only_to_a_waiter_that_read_before_it() {
        use task_core::TaskState;
        let heard = Heard::default();
        let before = heard.heard();
        assert_eq!(heard.record_after(before), None, "nothing heard");
        heard.hear(Some(TaskMeta::state(TaskState::Failure)));
        let state = |m: Option<TaskMeta>| m.map(|m| m.state);
        assert_eq!(state(heard.record_after(before)), Some(TaskState::Failure));
        // Read after it (the task may have run again): not news.
        let after = heard.heard();
        assert_eq!(heard.record_after(after), None);
        // A bare state (a record too large to publish) or no record: read again.
        heard.hear(None);
        assert_eq!(heard.record_after(before), None);
        heard.hear(Some(TaskMeta::state(TaskState::Success)));
        assert_eq!(state(heard.record_after(after)), Some(TaskState::Success));
        // Never a state that is not final.
        heard.hear(Some(TaskMeta::state(TaskState::Started)));
        assert_eq!(heard.record_after(before), None);
    }

    #[test]
    fn control_commands_parse_and_anything_else_is_none() {
        let id = TaskId::new();
        let revoke = |id: &TaskId| Some(Control::Revoke { id: id.clone(), until_ms: 1_700_000_000_000 });
        assert_eq!(Control::parse(&format!("revoke 1700000000000 {id}")), revoke(&id));
        assert_eq!(Control::parse(&format!("terminate {id}")), Some(Control::Terminate(id.clone())));
        let ask = |id: &str, command: &str| Some(Control::Ask(task_core::capability::Request::new(id, command)));
        assert_eq!(Control::parse("ask r1 ping"), ask("r1", "ping"));
        assert_eq!(Control::parse("ask r1 rate-limit t 10/s"), ask("r1", "rate-limit t 10/s"));
        assert_eq!(Control::parse("ask r1 "), None);
        assert_eq!(Control::parse("ask r1"), None);
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

    proptest::proptest! {
        #[test]
        fn arbitrary_control_messages_never_panic(message in "\\PC{0,120}") {
            let _ = Control::parse(&message);
        }

        #[test]
        fn control_commands_round_trip(until_ms in proptest::prelude::any::<i64>(), id in "[^\\s]\\PC{0,59}") {
            let id = TaskId::from_str(&id).unwrap();
            let revoke = Control::parse(&format!("revoke {until_ms} {id}"));
            proptest::prop_assert_eq!(revoke, Some(Control::Revoke { id: id.clone(), until_ms }));
            proptest::prop_assert_eq!(Control::parse(&format!("terminate {id}")), Some(Control::Terminate(id)));
        }
    }
}
