//! [`Signature`]: a task call with its arguments and per-call options, not yet sent.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::app::App;
use crate::client::AsyncResult;
use crate::codec::encode_args;
use crate::envelope::Envelope;
use crate::error::{CodecError, Error};
use crate::id::TaskId;
use crate::link::{Callback, CallbackOn, ChainLink, ChordMember};
use crate::message::{MAX_PRIORITY, Message};
use crate::task::{Task, TaskOptions};

/// A typed task call: `add::signature(1, 2)` is a `Signature<i64>`.
///
/// Options set here win over the task's `#[task(..)]` defaults, which win over the
/// app's. Nothing is sent until [`apply_async`](Signature::apply_async).
///
/// ```
/// use std::time::Duration;
/// use task_core::{task, App, TaskResult};
///
/// #[task]
/// async fn add(x: i64, y: i64) -> TaskResult<i64> { Ok(x + y) }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), task_core::Error> {
/// let app = App::memory();
/// let res = add::signature(1, 2)
///     .countdown(Duration::from_secs(10))
///     .queue("math")
///     .priority(7)
///     .apply_async(&app)
///     .await?;
/// let stats = app.broker().inspect().unwrap().queue_stats("math").await?;
/// assert_eq!(stats.scheduled, 1); // waits in the broker for 10 s
/// # Ok(()) }
/// ```
#[must_use = "a signature does nothing until `apply_async`"]
pub struct Signature<T> {
    task: &'static str,
    args: Result<Vec<u8>, CodecError>,
    defaults: TaskOptions,
    id: Option<TaskId>,
    queue: Option<String>,
    priority: Option<u8>,
    eta: Option<SystemTime>,
    expires_at: Option<SystemTime>,
    max_retries: Option<u32>,
    time_limit: Option<Duration>,
    soft_time_limit: Option<Duration>,
    result_ttl: Option<Duration>,
    unique_for: Option<Duration>,
    unique_key: Option<String>,
    ignore_result: Option<bool>,
    acks_early: Option<bool>,
    partition_key: Option<String>,
    callbacks: Vec<Link>,
    pub(crate) chain: Option<ChainLink>,
    pub(crate) chord: Option<ChordMember>,
    _output: PhantomData<fn() -> T>,
}

/// A task sent when another ends: when, into which parameter the result goes (a chain
/// step), and how its message is prepared when the first task is sent.
struct Link {
    on: CallbackOn,
    arg: Option<&'static str>,
    prepare: PrepareCallback,
}

/// Prepares a callback's message when its parent is sent.
type PrepareCallback = Box<dyn FnOnce(&App) -> Result<Message, Error> + Send>;

/// What sending a signature needs besides the message: its uniqueness lock.
pub(crate) struct Prepared {
    pub(crate) message: Message,
    pub(crate) unique: Option<(String, Duration)>,
}

impl<T> Signature<T> {
    /// A call of task `task` with `args` (a struct with one field per parameter).
    /// `#[task]` generates `name::signature(..)`, which calls this.
    pub fn new<A: Serialize>(task: &'static str, args: &A, defaults: TaskOptions) -> Self {
        Self {
            task,
            args: encode_args(task, args),
            defaults,
            id: None,
            queue: None,
            priority: None,
            eta: None,
            expires_at: None,
            max_retries: None,
            time_limit: None,
            soft_time_limit: None,
            result_ttl: None,
            unique_for: None,
            unique_key: None,
            ignore_result: None,
            acks_early: None,
            partition_key: None,
            callbacks: Vec::new(),
            chain: None,
            chord: None,
            _output: PhantomData,
        }
    }

    /// The same call, seen as returning `U` (workflows hold steps of different types).
    pub(crate) fn cast<U>(self) -> Signature<U> {
        Signature {
            task: self.task,
            args: self.args,
            defaults: self.defaults,
            id: self.id,
            queue: self.queue,
            priority: self.priority,
            eta: self.eta,
            expires_at: self.expires_at,
            max_retries: self.max_retries,
            time_limit: self.time_limit,
            soft_time_limit: self.soft_time_limit,
            result_ttl: self.result_ttl,
            unique_for: self.unique_for,
            unique_key: self.unique_key,
            ignore_result: self.ignore_result,
            acks_early: self.acks_early,
            partition_key: self.partition_key,
            callbacks: self.callbacks,
            chain: self.chain,
            chord: self.chord,
            _output: PhantomData,
        }
    }

    /// Its task id, chosen now if it has none yet (workflows name every step up front).
    pub(crate) fn fix_id(&mut self) -> TaskId {
        self.id.get_or_insert_with(TaskId::new).clone()
    }

    /// Sends `next` when this task ends as `on`, with this task's result as `next`'s
    /// parameter `arg` when given.
    pub(crate) fn link<U: 'static>(mut self, on: CallbackOn, arg: Option<&'static str>, next: Signature<U>) -> Self {
        let prepare = Box::new(move |app: &App| next.prepare(app).map(|p| p.message));
        self.callbacks.push(Link { on, arg, prepare });
        self
    }

    /// The task name.
    pub fn task_name(&self) -> &'static str {
        self.task
    }

    /// Sends to this queue (wins over the task's queue and the app's routes).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Priority 0 (default) to 9; higher runs first. Out of range is an error at
    /// `apply_async`.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Runs no sooner than `delay` from now.
    pub fn countdown(mut self, delay: Duration) -> Self {
        self.eta = Some(crate::time::after(delay));
        self
    }

    /// Runs no sooner than `at`.
    pub fn eta(mut self, at: impl Into<SystemTime>) -> Self {
        self.eta = Some(at.into());
        self
    }

    /// Not run if not started within `after` from now: it ends `REVOKED`, "expired".
    pub fn expires(mut self, after: Duration) -> Self {
        self.expires_at = Some(crate::time::after(after));
        self
    }

    /// Not run if not started by `at`: it ends `REVOKED`, "expired".
    pub fn expires_at(mut self, at: impl Into<SystemTime>) -> Self {
        self.expires_at = Some(at.into());
        self
    }

    /// Overrides the task's `max_retries`.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Overrides the task's hard `time_limit`.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Overrides the task's `soft_time_limit` (when the task is asked to stop).
    pub fn soft_time_limit(mut self, limit: Duration) -> Self {
        self.soft_time_limit = Some(limit);
        self
    }

    /// Keeps the result this long (overrides the task's and the app's TTL).
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = Some(ttl);
        self
    }

    /// Unique for `window`: while a call of this task with the same arguments is
    /// pending or running, `apply_async` returns that call's handle instead.
    pub fn unique_for(mut self, window: Duration) -> Self {
        self.unique_for = Some(window);
        self
    }

    /// Unique by this key instead of the arguments (with the task's `unique_for`, or
    /// one hour).
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Keeps no state or result once the task ends (fire and forget).
    pub fn ignore_result(mut self, yes: bool) -> Self {
        self.ignore_result = Some(yes);
        self
    }

    /// Acknowledges before running: at most once (a task lost with its worker is not
    /// run again).
    pub fn acks_early(mut self, yes: bool) -> Self {
        self.acks_early = Some(yes);
        self
    }

    /// Sends `next` when this task succeeds (Celery's `link`). `next` is prepared when
    /// this one is sent; it receives no result (give it what it needs as arguments).
    pub fn on_success<U: 'static>(self, next: Signature<U>) -> Self {
        self.link(CallbackOn::Success, None, next)
    }

    /// Sends `next` when this task fails for good (Celery's `link_error`): after its last
    /// retry, a fatal error, a panic or a time limit.
    pub fn on_failure<U: 'static>(self, next: Signature<U>) -> Self {
        self.link(CallbackOn::Failure, None, next)
    }

    /// On a queue spread over partitions (Redis: `RedisConfig::partitions`), sends this
    /// call to the partition of `key`: the calls of one key stay in one partition, in
    /// the order they were sent. Without a key, calls spread round robin.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Uses this id instead of a random one.
    pub fn task_id(mut self, id: TaskId) -> Self {
        self.id = Some(id);
        self
    }

    /// The envelope and broker message this signature sends on `app`.
    pub(crate) fn prepare(self, app: &App) -> Result<Prepared, Error> {
        let task = self.task;
        let invalid = |what: String| Error::Config(format!("{what} (task `{task}`)"));
        let d = self.defaults;
        let priority = self.priority.or(d.priority).unwrap_or(0);
        if priority > MAX_PRIORITY {
            return Err(invalid(format!("priority must be 0 to {MAX_PRIORITY}, got {priority}")));
        }
        let time_limit = self.time_limit.or(d.time_limit);
        let soft_time_limit = self.soft_time_limit.or(d.soft_time_limit);
        for (name, value) in
            [("time_limit", time_limit), ("soft_time_limit", soft_time_limit), ("result_ttl", self.result_ttl)]
        {
            if value == Some(Duration::ZERO) {
                return Err(invalid(format!("{name} must be above zero")));
            }
        }
        if let (Some(soft), Some(hard)) = (soft_time_limit, time_limit)
            && soft >= hard
        {
            return Err(invalid(format!("soft_time_limit ({soft:?}) must be below time_limit ({hard:?})")));
        }
        let queue = self.queue.unwrap_or_else(|| app.queue_of(task, d.queue).to_owned());
        if queue.trim().is_empty() {
            return Err(invalid("the queue name cannot be empty".into()));
        }
        let args = self.args?;
        let unique_window =
            self.unique_for.or(d.unique_for).or(self.unique_key.as_ref().map(|_| DEFAULT_UNIQUE_WINDOW));
        let unique = unique_window.map(|window| {
            let key = match &self.unique_key {
                Some(key) => format!("{task}:key:{key}"),
                None => format!("{task}:args:{:016x}", fnv1a(&args)),
            };
            (key, window)
        });

        let mut envelope = Envelope::new(task, args, queue);
        if let Some(id) = self.id {
            envelope.id = id;
        }
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let unix_ms = crate::time::to_ms;
        // The envelope's send time, read once more only when an expiry is relative to it.
        let sent = || crate::time::from_ms(envelope.sent_ms);
        envelope.priority = priority;
        envelope.max_retries = self.max_retries;
        envelope.time_limit_ms = self.time_limit.map(millis);
        envelope.soft_time_limit_ms = self.soft_time_limit.map(millis);
        envelope.result_ttl_ms = self.result_ttl.or(d.result_ttl).map(millis);
        envelope.eta_ms = self.eta.map(unix_ms);
        envelope.expires_ms = self
            .expires_at
            .or_else(|| d.expires.map(|after| sent().checked_add(after.min(crate::time::FAR)).unwrap_or_else(sent)))
            .map(unix_ms);
        envelope.unique_key = unique.as_ref().map(|(key, _)| key.clone());
        envelope.ignore_result = self.ignore_result.unwrap_or(d.ignore_result);
        envelope.acks_early = self.acks_early.unwrap_or(d.acks_early);
        envelope.chain = self.chain;
        envelope.chord = self.chord;
        crate::trace::inject(&mut envelope.headers);
        for Link { on, arg, prepare } in self.callbacks {
            envelope.callbacks.push(Callback::from_message(on, arg.map(str::to_owned), prepare(app)?));
        }
        let payload = envelope.encode()?;
        let limit = app.max_message_size();
        if payload.len() > limit {
            return Err(Error::TooLarge { task: envelope.task, size: payload.len(), limit });
        }
        let message = Message::new(envelope.id, envelope.queue, payload)
            .with_priority(priority)
            .with_eta(self.eta)
            .with_partition_key(self.partition_key);
        Ok(Prepared { message, unique })
    }

    /// Sends the task; returns the handle to its result at once. A unique task whose
    /// twin is pending or running returns the twin's handle and sends nothing.
    pub async fn apply_async(self, app: &App) -> Result<AsyncResult<T>, Error> {
        let prepared = self.prepare(app)?;
        Ok(app.send_prepared(vec![prepared]).await?.pop().expect("one in, one out"))
    }
}

/// How long a call made unique by key alone stays unique, at most.
const DEFAULT_UNIQUE_WINDOW: Duration = Duration::from_secs(3600);

/// FNV-1a: a small hash that every process and release computes alike (unlike std's
/// `DefaultHasher`), so producers agree on the uniqueness key of the same arguments.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

impl App {
    /// The queue a call of task `name` goes to when the call names none: the task's own
    /// (`#[task(queue = ..)]`, given as `own`), else the app's route for the name, else
    /// the default queue.
    pub fn queue_of<'a>(&'a self, name: &str, own: Option<&'a str>) -> &'a str {
        own.or_else(|| self.route(name)).unwrap_or_else(|| self.default_queue())
    }

    /// Sends task `T` with its arguments struct: `app.send::<add::Task>(add::Args { x: 1, y: 2 })`.
    pub async fn send<T: Task>(&self, args: T::Args) -> Result<AsyncResult<T::Output>, Error> {
        Signature::<T::Output>::new(T::NAME, &args, T::OPTIONS).apply_async(self).await
    }

    /// Sends many signatures in one broker call (a pipelined batch on Redis); returns
    /// their result handles in order.
    pub async fn send_batch<T>(
        &self,
        signatures: impl IntoIterator<Item = Signature<T>>,
    ) -> Result<Vec<AsyncResult<T>>, Error> {
        let prepared = signatures.into_iter().map(|s| s.prepare(self)).collect::<Result<Vec<_>, _>>()?;
        self.send_prepared(prepared).await
    }

    async fn send_prepared<T>(&self, prepared: Vec<Prepared>) -> Result<Vec<AsyncResult<T>>, Error> {
        let mut ids = Vec::with_capacity(prepared.len());
        let mut messages = Vec::with_capacity(prepared.len());
        let mut taken: Vec<(String, TaskId)> = Vec::new();
        for Prepared { mut message, unique } in prepared {
            if self.is_eager() {
                // Eager: a countdown or an ETA is not waited for (as Celery's eager mode).
                message.eta = None;
            }
            if let Some((key, window)) = unique {
                let lock = self.broker().unique_locks().ok_or_else(|| {
                    Error::Config(format!(
                        "unique tasks need a broker that keeps uniqueness locks; {} does not",
                        self.broker_url()
                    ))
                })?;
                match lock.lock_unique(&key, &message.id, window).await {
                    Ok(Some(twin)) => {
                        ids.push(twin);
                        continue;
                    }
                    Ok(None) => taken.push((key, message.id.clone())),
                    Err(e) => {
                        self.release_unique(&taken).await;
                        return Err(e.into());
                    }
                }
            }
            ids.push(message.id.clone());
            messages.push(message);
        }
        let sent = match messages.len() {
            0 => Ok(()),
            1 => self.broker().enqueue(messages.pop().expect("one")).await,
            _ => self.broker().enqueue_batch(messages).await,
        };
        if let Err(e) = sent {
            // Nothing was queued for these locks: a later call must not find a twin.
            self.release_unique(&taken).await;
            return Err(e.into());
        }
        // Boxed: eager mode runs tasks here, which may send more (a future of its own).
        Box::pin(self.run_in_place()).await;
        Ok(ids.into_iter().map(|id| AsyncResult::new(id, self.clone())).collect())
    }

    /// Gives back the uniqueness locks of a send that failed (best effort: a lock that
    /// cannot be released now expires with its window).
    async fn release_unique(&self, taken: &[(String, TaskId)]) {
        let Some(locks) = self.broker().unique_locks() else { return };
        for (key, id) in taken {
            if let Err(e) = locks.unlock_unique(key, id).await {
                tracing::warn!(%key, error = %e, "cannot release the uniqueness lock of a failed send; it expires by itself");
            }
        }
    }
}

impl<T> fmt::Debug for Signature<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signature")
            .field("task", &self.task)
            .field("queue", &self.queue)
            .field("priority", &self.priority)
            .field("eta", &self.eta)
            .finish_non_exhaustive()
    }
}
