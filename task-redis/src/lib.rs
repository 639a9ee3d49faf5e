//! # task-redis
//!
//! Celerity's production broker and result backend on Redis (or Valkey), chosen by
//! URL: link this crate (`use task_redis as _;`) and set
//! `CELERITY_BROKER_URL=redis://127.0.0.1:6379/0`.
//!
//! ## URLs
//!
//! `redis://[[user]:password@]host[:port][/db]`, or `rediss://…` for TLS (feature `tls`,
//! on by default: rustls, trusting the system's roots, or the CA in the PEM file named
//! by `CELERITY_REDIS_CA_CERT` / [`RedisConfig::ca_cert`]). Behind Sentinel:
//! `redis+sentinel://[[user]:password@]s1:26379[,s2:26379…]/MASTER[/db]` names the
//! Sentinels (the password is the primary's; `rediss+sentinel://` speaks TLS to them
//! and to the primary); the connections follow the primary through a failover. A Redis
//! Cluster: `redis+cluster://[[user]:password@]h1:p1[,h2:p2…]` names some of its nodes
//! (the rest is discovered; `rediss+cluster://` for TLS). The namespace of every key is
//! `celerity`, or `CELERITY_REDIS_NAMESPACE`, or [`RedisConfig::namespace`]. To
//! configure in code, build a [`RedisBroker`] and a [`RedisBackend`] from a
//! [`RedisConfig`] and give them to `App::builder().broker(..).backend(..)`.
//!
//! ## Guarantees
//!
//! - **At least once, never twice on a live worker.** Fetch moves messages into a
//!   processing list owned by the worker in one Lua script (no pop-then-write gap).
//!   A message leaves it only when acked after the task finished and its result was
//!   stored; a task with nothing to send on stores its result and acks in one script
//!   (`store_many.lua`), both or neither (on a cluster, where the record and the
//!   processing list are in different slots: stored, fenced by the record's owner, then
//!   acked; a crash between the two runs the task again). Workers heartbeat into a zset scored by Redis's own clock; when one stops,
//!   any live worker (under a short lock) returns its messages to the front of their
//!   queues. A long task on a live worker is never redelivered. After 5 deliveries
//!   (configurable) a message goes to the queue's dead letters with the reason.
//! - **Fencing.** Ack, retry, release and dead-letter remove the message from the
//!   worker's own processing list and fail (`ErrorKind::Fenced`) when it is no longer
//!   there. Results name their worker: once another worker has started a recovered
//!   task, the old worker's late result is refused; a result written with its ack is
//!   refused when the ack is.
//! - **No polling.** An idle worker blocks in `BLPOP` on its queues' wake lists; a
//!   producer pushes a token when it adds work, and a fetch that leaves work behind
//!   passes the token on. Delayed messages (countdown, ETA, retry back-off) wait in a
//!   zset and are promoted by the fetch script; a worker's blocking wait ends when the
//!   next one is due. Waiting for a result wakes on a pub/sub message; all waiters of a
//!   process share one connection.
//! - **Outages.** Every call is bounded by the operation time-out (5 s by default);
//!   connections come back by themselves after Redis restarts, and the worker resumes.
//! - **Redis Cluster.** Every key of a queue carries the hash tag `{queue}`, every
//!   script receives all its keys in `KEYS[]` and touches one slot; pipelines that
//!   span slots are split per slot (see the README's "Scale-out").
//!
//! ## Key layout
//!
//! See [`keys`](crate#key-layout) below: every name is built in one module.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `NS:{Q}:ready:P` | list | ready messages of queue `Q` at priority `P` (0–9) |
//! | `NS:{Q}:delayed` | zset | messages waiting for their due time (score: Unix ms) |
//! | `NS:{Q}:wake` | list | at most one token; idle workers block on it |
//! | `NS:{Q}:proc:W` | list | messages held by worker `W` |
//! | `NS:{Q}:dead` | list | dead letters: `at_ms:reason_len:reason` + envelope |
//! | `NS:queues` | set | queue names in use |
//! | `NS:workers` | zset | worker ids by heartbeat deadline (Redis clock, ms) |
//! | `NS:lock:recover` | string | held while a dead worker's messages are recovered |
//! | `NS:result:ID` | hash | state, worker, result, error, progress; `run` (task, queue, retries, start, arguments) and `end` (runtime, finish) packed (`backend/record.rs`); TTL |
//! | `NS:revoked` | zset | revoked task ids, scored by until when the revoke holds (Unix ms) |
//! | channel `NS:done:ID` | pub/sub | the final state, when the task ends |
//!
//! A list entry is a 4-byte ASCII header — the priority digit and a 3-digit count of
//! earlier deliveries, `"0000"` for a new message — followed by the MessagePack
//! envelope. A message pushed by hand without the header is taken as priority 0.

mod backend;
mod broker;
pub mod celery;
mod config;
mod conn;
mod entry;
mod error;
mod keys;
mod scripts;
mod topology;

use std::sync::Arc;

pub use backend::RedisBackend;
pub use broker::RedisBroker;
pub use config::{
    ENV_CA_CERT, ENV_CELERY_QUEUES, ENV_EVENTS_CAP, ENV_NAMESPACE, ENV_PARTITIONS, ENV_WAIT_REPLICAS, RedisConfig,
};
use task_core::driver::Driver;
use task_core::{Broker, Error, ResultBackend};

/// An [`AppBuilder`](task_core::AppBuilder) with this configuration's broker and result
/// backend: how to use a namespace, time-out or CA of your own in code.
///
/// ```no_run
/// # async fn demo() -> Result<(), task_core::Error> {
/// use task_redis::RedisConfig;
/// let config = RedisConfig::from_url("redis://127.0.0.1:6379/0").namespace("billing");
/// let app = task_redis::app_builder(config).await?.default_queue("invoices").build().await?;
/// # Ok(()) }
/// ```
pub async fn app_builder(config: RedisConfig) -> Result<task_core::AppBuilder, Error> {
    let broker = RedisBroker::connect(config.clone()).await?;
    let backend = RedisBackend::connect(config).await?;
    Ok(task_core::App::builder().broker(Arc::new(broker)).backend(Arc::new(backend)))
}

fn connect_broker(url: String) -> task_core::BoxFuture<'static, Result<Arc<dyn Broker>, Error>> {
    Box::pin(async move { Ok(Arc::new(RedisBroker::connect(RedisConfig::from_url(url)).await?) as Arc<dyn Broker>) })
}

fn connect_backend(url: String) -> task_core::BoxFuture<'static, Result<Arc<dyn ResultBackend>, Error>> {
    Box::pin(
        async move { Ok(Arc::new(RedisBackend::connect(RedisConfig::from_url(url)).await?) as Arc<dyn ResultBackend>) },
    )
}

task_core::__private::inventory::submit! {
    Driver { scheme: "redis", broker: Some(connect_broker), backend: Some(connect_backend) }
}

task_core::__private::inventory::submit! {
    Driver { scheme: "rediss", broker: Some(connect_broker), backend: Some(connect_backend) }
}

task_core::__private::inventory::submit! {
    Driver { scheme: "redis+sentinel", broker: Some(connect_broker), backend: Some(connect_backend) }
}

task_core::__private::inventory::submit! {
    Driver { scheme: "rediss+sentinel", broker: Some(connect_broker), backend: Some(connect_backend) }
}

task_core::__private::inventory::submit! {
    Driver { scheme: "redis+cluster", broker: Some(connect_broker), backend: Some(connect_backend) }
}

task_core::__private::inventory::submit! {
    Driver { scheme: "rediss+cluster", broker: Some(connect_broker), backend: Some(connect_backend) }
}
