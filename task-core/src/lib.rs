//! # Celerity
//!
//! A distributed task queue for Rust, in the spirit of Python's Celery. A web handler
//! (or any code) hands slow work to a queue and answers at once; workers, in the same
//! process or on other machines, run it and store the result; the caller waits for it,
//! polls it, or drops the handle and looks it up later by id.
//!
//! ```
//! use std::time::Duration;
//! use task_core::{task, App, TaskResult};
//!
//! #[task]
//! async fn add(x: i64, y: i64) -> TaskResult<i64> {
//!     Ok(x + y)
//! }
//!
//! #[task(queue = "media", max_retries = 5, time_limit = 30)]
//! fn resize(path: String, width: u32) -> TaskResult<String> {
//!     // a plain fn: runs on the blocking pool
//!     Ok(format!("{path}@{width}"))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), task_core::Error> {
//! let app = App::from_env().await?; // CELERITY_BROKER_URL unset: memory://
//! let worker = app.worker().concurrency(4).queues(["default", "media"]).spawn();
//!
//! let sum = add::delay(&app, 1, 2).await?;
//! let thumb = resize::signature("cat.png".into(), 128).countdown(Duration::from_millis(10)).apply_async(&app).await?;
//! assert_eq!(sum.get(Duration::from_secs(5)).await?, 3);
//! assert_eq!(thumb.get(Duration::from_secs(5)).await?, "cat.png@128");
//! assert_eq!(add(2, 2).await.unwrap(), 4); // still a plain function
//!
//! worker.shutdown().await?; // graceful
//! # Ok(()) }
//! ```
//!
//! ## The parts
//!
//! | item | what it is |
//! |---|---|
//! | [`#[task]`](macro@task) | makes a module-level `fn`/`async fn` a task: `name::delay`, `name::signature`, `name::Args`, `name::NAME`, registered at link time |
//! | [`App`] | broker + result backend + registry; `App::from_env()` or `App::builder()` |
//! | [`Signature`] | a call with per-call options (`queue`, `priority`, `countdown`, `eta`, …) |
//! | [`AsyncResult`] | `get(timeout)`, `state()`, `ready()`, `progress()`, `forget()` |
//! | [`Worker`] | `app.worker().concurrency(8).queues([..]).run_until(signal)` |
//! | [`TaskContext`] | optional first parameter: id, attempt, `set_progress`, `retry` |
//! | [`group`], [`Chain`], [`chord`] | workflows: in parallel; one after another (`add::signature(1, 2).then(mul::partial(10))`); a group whose results go to one callback |
//! | [`Beat`], [`Schedule`] | periodic tasks on intervals and cron schedules, any number of schedulers, each tick sent once |
//! | [`Event`], [`TaskStats`] | the event stream and the counts by task name, state and run time that the dashboard reads |
//! | [`Broker`], [`ResultBackend`], [`capability`] | the driver traits and the optional capabilities; [`memory`] is built in, `task-redis` adds `redis://` |
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `macros` | yes | `#[task]` (from `task-macros`) |
//! | `cli` | no | [`cli`]: `worker -c N -Q a,b --loglevel L [--beat]`, `beat`, `schedule` for your own binaries (clap) |
//! | `opentelemetry` | no | the producer's trace context in the message headers, continued by each run's span (`tracing-opentelemetry`) |
//!
//! ## Inside: layers
//!
//! Each module imports only from its own layer and those below (`tests/layers.rs`
//! checks it): **foundation** (ids, errors, states, task options, [`codec`], [`time`],
//! [`BoxFuture`]) → **wire** ([`broker::Message`] and deliveries, [`Envelope`] and its
//! workflow links, [`Event`], [`ScheduledEntry`]) → **contracts** ([`Broker`],
//! [`ResultBackend`], one [`capability`] per optional power) → **drivers** ([`memory`],
//! [`driver`]) → **runtime** ([`Registry`], [`TaskContext`], [`App`]) → **features** (the
//! client API, workflows, the worker, periodic tasks) → **edges** (`cli`, what `#[task]`
//! expands against). The suites every driver passes live in the unpublished
//! `task-suites` crate, so their test tasks are never linked into a user's binary.
//!
//! ## Guarantees
//!
//! Delivery is at least once: a message is held for its worker until the task ends
//! and the result is stored, and comes back to its queue if the worker dies. Bad input
//! never stops a worker and is never dropped silently: undecodable messages, unknown
//! task names and arguments that do not fit go to the dead letters with the reason; a
//! panicking task ends `FAILURE` with the panic text.

#![cfg_attr(docsrs, feature(doc_cfg))]

// The layers, bottom to top; a module imports only from its own layer and those below
// (`tests/layers.rs` fails on an upward import, and on a circle of modules).
//
// foundation: ids, errors, states, task options, codec, time, futures.
pub mod codec;
mod error;
mod future;
pub mod host;
mod id;
mod state;
mod task;
pub mod time;
mod trace;
// wire: what crosses the broker.
mod envelope;
mod events;
mod link;
mod message;
mod scheduled;
// contracts: what a driver implements.
pub mod backend;
pub mod broker;
pub mod capability;
// drivers: the embedded one, and the registry of URL schemes.
pub mod driver;
pub mod memory;
// runtime: what producers and workers share.
mod app;
mod context;
mod registry;
mod tries;
// features: the client API, workflows, the worker, periodic tasks.
mod beat;
mod client;
mod worker;
mod workflow;
// edges: the worker command for user binaries, what `#[task]` expands against.
#[cfg(feature = "cli")]
pub mod cli;
#[doc(hidden)]
pub mod __private {
    //! What `#[task]` generates code against. Not a stable API.
    pub use crate::private::*;
}
mod private;

pub use app::{
    App, AppBuilder, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_STARTED_AFTER, ENV_BROKER_URL, ENV_DEFAULT_QUEUE,
    ENV_MAX_MESSAGE_SIZE, ENV_RESULT_BACKEND, ENV_RESULT_TTL, ENV_STARTED_AFTER_MS, ENV_TRACK_STARTED, redact_url,
};
pub use backend::{Claim, DEFAULT_RESULT_TTL, ResultBackend};
pub use beat::{Beat, BeatHandle, Missed, Schedule};
pub use broker::Broker;
pub use capability::{HISTORY_CAP, MinuteCount, RecentTask, TaskFilter, TaskHistory};
pub use client::{AsyncResult, Signature};
pub use context::TaskContext;
pub use envelope::{ENVELOPE_VERSION, Envelope};
pub use error::{BackendError, BoxError, BrokerError, CodecError, Error, ErrorKind, TaskError, TaskResult};
pub use events::{EVENTS_CAP, Event, EventKind, RUNTIME_BUCKETS_MS, RuntimeHistogram, TaskCount, TaskStats};
pub use future::BoxFuture;
pub use id::{ConsumerId, TaskId};
pub use link::{Callback, CallbackOn, ChainLink, ChordMember};
pub use registry::{Invocation, Registry, TaskEntry, TaskFn};
pub use scheduled::ScheduledEntry;
pub use state::{TaskMeta, TaskState};
pub use task::{Backoff, DEFAULT_MAX_RETRIES, DEFAULT_QUEUE, RateLimit, Task, TaskOptions};
pub use worker::{
    DEFAULT_AUTOSCALE_KEEPALIVE, DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_TTL, DEFAULT_NODE_NAME, Next, Outcome, Pool,
    Run, TaskLayer, Worker, WorkerHandle, WorkerReport, is_pool_child,
};
pub use workflow::{Chain, Chord, Group, GroupResult, Partial, chord, group};

/// Makes a module-level `fn` or `async fn` a task. See the [crate docs](crate) and
/// the README for the options (`name`, `queue`, `max_retries`, `time_limit`, `crate`).
#[cfg(feature = "macros")]
pub use task_macros::task;
