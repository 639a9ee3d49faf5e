//! Sending tasks to Python's Celery workers from Rust, and waiting for their results in
//! Celery's Redis result backend.
//!
//! ```no_run
//! # async fn run() -> Result<(), task_redis::celery::ClientError> {
//! use std::time::Duration;
//! use task_redis::celery::{Call, Client};
//!
//! let celery = Client::connect("redis://127.0.0.1:6379/0").await?;
//! let sent = celery.send_task("proj.tasks.add", (2, 3), ()).await?;
//! let sum: i64 = sent.get(Duration::from_secs(10)).await?;
//! # let _ = sum;
//! let later = celery.send(Call::new("proj.tasks.report").kwarg("day", "2026-12-01")?.countdown(Duration::from_secs(60)).queue("reports")).await?;
//! # let _ = later;
//! # Ok(()) }
//! ```

use std::time::Duration;

use redis::AsyncCommands as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use task_core::BrokerError;

use super::iso;
use super::message::{CeleryMessage, kombu_list};
use super::meta::{ResultMeta, result_key};
use crate::RedisConfig;
use crate::conn::{Connections, PushPlace};
use crate::error::{Failure, timed};

/// Why a call to Celery did not give its value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Redis could not be reached, or refused a command.
    #[error(transparent)]
    Redis(#[from] BrokerError),
    /// The URL names what Celery's Redis transport does not use (a Redis Cluster).
    #[error("{0}")]
    Unsupported(String),
    /// The arguments are not what Celery sends (a list, a map of names), or do not
    /// serialize to JSON.
    #[error("bad arguments for a Celery task: {0}")]
    Arguments(String),
    /// The task raised: `kind` is the Python exception's class.
    #[error("the task raised {kind}: {message}")]
    Failed {
        /// The exception's class name.
        kind: String,
        /// Its text.
        message: String,
    },
    /// The task was revoked.
    #[error("the task was revoked: {0}")]
    Revoked(String),
    /// No final state within the time given.
    #[error("no result within {0:?}")]
    TimedOut(Duration),
    /// The value stored does not deserialize into the type asked for.
    #[error("the task's value does not fit the type asked for: {0}")]
    Value(String),
}

fn redis(failure: Failure, context: &str) -> ClientError {
    ClientError::Redis(failure.broker(context))
}

fn to_json(value: impl Serialize) -> Result<Value, ClientError> {
    serde_json::to_value(value).map_err(|e| ClientError::Arguments(e.to_string()))
}

/// A task call as Celery's `apply_async` makes it: the task's name, its arguments and
/// options. `Call::new("proj.tasks.add").args((2, 3))?` is `add.apply_async((2, 3))`.
#[derive(Debug, Clone)]
pub struct Call {
    message: CeleryMessage,
}

impl Call {
    /// A call of `task` (its Celery name) with no arguments, to the queue `celery`.
    pub fn new(task: impl Into<String>) -> Self {
        Self { message: CeleryMessage::new(task, uuid::Uuid::new_v4().to_string(), "celery") }
    }

    /// The positional arguments: a tuple, a `Vec` or a JSON array (`()` for none).
    pub fn args(mut self, args: impl Serialize) -> Result<Self, ClientError> {
        self.message.args = match to_json(args)? {
            Value::Array(args) => args,
            Value::Null => Vec::new(),
            other => return Err(ClientError::Arguments(format!("args must be a list, not {other}"))),
        };
        Ok(self)
    }

    /// The keyword arguments: a struct, a map or a JSON object (`()` for none).
    pub fn kwargs(mut self, kwargs: impl Serialize) -> Result<Self, ClientError> {
        self.message.kwargs = match to_json(kwargs)? {
            Value::Object(kwargs) => kwargs,
            Value::Null => Map::new(),
            other => return Err(ClientError::Arguments(format!("kwargs must be a map, not {other}"))),
        };
        Ok(self)
    }

    /// One keyword argument.
    pub fn kwarg(mut self, name: impl Into<String>, value: impl Serialize) -> Result<Self, ClientError> {
        self.message.kwargs.insert(name.into(), to_json(value)?);
        Ok(self)
    }

    /// The queue (Celery's `queue=`; `celery` by default).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.message.routing_key = Some(queue.into());
        self
    }

    /// The task's id (a new UUID by default).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.message.root_id = Some(id.clone());
        self.message.id = id;
        self
    }

    /// Runs no sooner than `delay` from now (Celery's `countdown=`).
    pub fn countdown(self, delay: Duration) -> Self {
        let at = chrono::Duration::from_std(delay).ok().and_then(|d| chrono::Utc::now().checked_add_signed(d));
        self.eta(at.unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC))
    }

    /// Runs no sooner than `at` (Celery's `eta=`).
    pub fn eta(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.message.eta = Some(iso(at));
        self
    }

    /// Revoked if it has not started by `at` (Celery's `expires=`).
    pub fn expires(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.message.expires = Some(iso(at));
        self
    }

    /// kombu's priority, 0 (served first on Redis) to 9 (Celery's `priority=`).
    pub fn priority(mut self, priority: u8) -> Self {
        self.message.priority = priority.min(9);
        self
    }

    /// Hard and soft time limits (Celery's `time_limit=` and `soft_time_limit=`).
    pub fn time_limits(mut self, hard: Option<Duration>, soft: Option<Duration>) -> Self {
        self.message.time_limit = (hard.map(|d| d.as_secs_f64()), soft.map(|d| d.as_secs_f64()));
        self
    }

    /// Keep no result (Celery's `ignore_result=True`).
    pub fn ignore_result(mut self, yes: bool) -> Self {
        self.message.ignore_result = yes;
        self
    }

    /// The message as it will be sent.
    pub fn message(&self) -> &CeleryMessage {
        &self.message
    }
}

/// A connection to the Redis a Celery project uses as its broker and result backend.
pub struct Client {
    conns: Connections,
    op_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("conns", &self.conns).finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the Redis of `url` (`redis://`, `rediss://`, or behind Sentinel
    /// `redis+sentinel://`; Celery's Redis transport does not use a Redis Cluster).
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::with_config(RedisConfig::from_url(url)).await
    }

    /// Connects as `config` says (its URL, TLS CA and time-out).
    pub async fn with_config(config: RedisConfig) -> Result<Self, ClientError> {
        let conns = Connections::open(&config).await.map_err(|e| redis(e, "cannot connect to Celery's Redis"))?;
        if conns.is_cluster() {
            return Err(ClientError::Unsupported(
                "Celery's Redis transport and result backend use one Redis (or Sentinel), not a Redis Cluster".into(),
            ));
        }
        Ok(Self { conns, op_timeout: config.op_timeout })
    }

    /// Sends `task(*args, **kwargs)` to the queue `celery`, as Python's
    /// `app.send_task(task, args, kwargs)`.
    pub async fn send_task(
        &self,
        task: &str,
        args: impl Serialize,
        kwargs: impl Serialize,
    ) -> Result<AsyncResult<'_>, ClientError> {
        self.send(Call::new(task).args(args)?.kwargs(kwargs)?).await
    }

    /// Sends `call`: `LPUSH` of its kombu entry into the list of its queue and priority,
    /// where Celery's workers `BRPOP` it.
    pub async fn send(&self, call: Call) -> Result<AsyncResult<'_>, ClientError> {
        let m = call.message;
        let list = kombu_list(m.routing_key.as_deref().unwrap_or("celery"), m.priority);
        let mut con = self.conns.main.clone();
        timed::<()>(self.op_timeout, con.lpush(&list, m.to_kombu()))
            .await
            .map_err(|e| redis(e, &format!("cannot send Celery task {} to `{list}`", m.task)))?;
        Ok(AsyncResult { id: m.id, client: self })
    }

    /// The result of the task `id`, sent by anyone.
    pub fn result(&self, id: impl Into<String>) -> AsyncResult<'_> {
        AsyncResult { id: id.into(), client: self }
    }

    async fn read(&self, id: &str) -> Result<Option<ResultMeta>, ClientError> {
        let mut con = self.conns.main.clone();
        let raw: Option<String> = timed(self.op_timeout, con.get(result_key(id)))
            .await
            .map_err(|e| redis(e, &format!("cannot read the Celery result of {id}")))?;
        Ok(raw.and_then(|raw| match ResultMeta::from_json(&raw) {
            Ok(meta) => Some(meta),
            Err(e) => {
                tracing::warn!(id, error = %e, "a Celery result that does not parse is taken as pending");
                None
            }
        }))
    }
}

/// A task sent to Celery, as Python's `AsyncResult`.
#[derive(Debug)]
pub struct AsyncResult<'a> {
    id: String,
    client: &'a Client,
}

impl AsyncResult<'_> {
    /// The task's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The state stored for it, `None` while PENDING (nothing stored yet, or expired).
    pub async fn state(&self) -> Result<Option<ResultMeta>, ClientError> {
        self.client.read(&self.id).await
    }

    /// Waits up to `timeout` for the final state, as Python's `get(timeout=..)`: the
    /// value, or the exception it raised, or that it was revoked. It listens on the
    /// result's channel (Celery's backend `PUBLISH`es each state on the key's name) and
    /// reads the key after subscribing, and once a second besides.
    pub async fn get<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T, ClientError> {
        let value = self.get_json(timeout).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Value(e.to_string()))
    }

    /// [`AsyncResult::get`], the value as JSON.
    pub async fn get_json(&self, timeout: Duration) -> Result<Value, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let key = result_key(&self.id);
        // A subscription, when one can be made: without it, the reads below still find
        // the state, a second later at most.
        let mut sub = match self.client.conns.push_place() {
            PushPlace::Server(client) => match timed(self.client.op_timeout, client.get_async_pubsub()).await {
                Ok(mut sub) => match timed(self.client.op_timeout, sub.subscribe(&key)).await {
                    Ok(()) => Some(sub),
                    Err(e) => {
                        tracing::debug!(error = ?e, "waiting for a Celery result without a subscription");
                        None
                    }
                },
                Err(e) => {
                    tracing::debug!(error = ?e, "waiting for a Celery result without a subscription");
                    None
                }
            },
            PushPlace::Cluster(_) => None,
        };
        loop {
            // A read that fails (Redis restarting) is tried again until the deadline.
            match self.state().await {
                Ok(Some(meta)) => {
                    if let Some(done) = settled(meta) {
                        return done;
                    }
                }
                Ok(None) => {}
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => tracing::debug!(error = %e, "cannot read a Celery result yet"),
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ClientError::TimedOut(timeout));
            }
            let tick = (deadline - now).min(Duration::from_secs(1));
            match sub.as_mut() {
                Some(subscribed) => {
                    // A closed subscription ends at once: the reads go on, a second apart.
                    if let Ok(false) = tokio::time::timeout(tick, next_message(subscribed)).await {
                        sub = None;
                    }
                }
                None => tokio::time::sleep(tick).await,
            }
        }
    }
}

/// Waits for the next message of `sub` (its payload is read again from the key: one
/// path); false when the subscription has closed.
async fn next_message(sub: &mut redis::aio::PubSub) -> bool {
    use futures_util::StreamExt as _;
    sub.on_message().next().await.is_some()
}

/// The outcome of a final state; `None` for one that is not final.
fn settled(meta: ResultMeta) -> Option<Result<Value, ClientError>> {
    match meta {
        ResultMeta::Success(value) => Some(Ok(value)),
        ResultMeta::Failure { kind, message } => Some(Err(ClientError::Failed { kind, message })),
        ResultMeta::Revoked { reason } => Some(Err(ClientError::Revoked(reason))),
        _ => None,
    }
}
