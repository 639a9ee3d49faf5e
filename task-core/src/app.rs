//! [`App`]: the broker, the result backend and the registry, shared by producers and
//! workers. Cheap to clone (an `Arc` inside), `Send + Sync`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{DEFAULT_RESULT_TTL, ResultBackend};
use crate::broker::Broker;
use crate::driver;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::id::TaskId;
use crate::memory::{InMemoryBackend, InMemoryBroker};
use crate::registry::Registry;
use crate::task::DEFAULT_QUEUE;

/// The broker URL variable read by [`App::from_env`].
pub const ENV_BROKER_URL: &str = "CELERITY_BROKER_URL";
/// The result backend URL variable read by [`App::from_env`].
pub const ENV_RESULT_BACKEND: &str = "CELERITY_RESULT_BACKEND";
/// The default queue variable read by [`App::from_env`].
pub const ENV_DEFAULT_QUEUE: &str = "CELERITY_DEFAULT_QUEUE";
/// The result TTL variable (seconds) read by [`App::from_env`].
pub const ENV_RESULT_TTL: &str = "CELERITY_RESULT_TTL";
/// Whether workers store `STARTED` when a task starts (`1`/`true`, the default, or
/// `0`/`false`); see [`AppBuilder::track_started`].
pub const ENV_TRACK_STARTED: &str = "CELERITY_TRACK_STARTED";
/// How long (ms) a run goes before its `STARTED` is stored; see
/// [`AppBuilder::started_after`].
pub const ENV_STARTED_AFTER_MS: &str = "CELERITY_STARTED_AFTER_MS";
/// How long a run goes before its `STARTED` is stored when nothing else says: shorter
/// than anyone watching a dashboard notices, longer than most small tasks take.
pub const DEFAULT_STARTED_AFTER: Duration = Duration::from_millis(50);
/// The largest message and result (bytes) read by [`App::from_env`]; see
/// [`AppBuilder::max_message_size`].
pub const ENV_MAX_MESSAGE_SIZE: &str = "CELERITY_MAX_MESSAGE_SIZE";

/// The largest encoded task or result when nothing else says: 16 MiB, as brokers cap
/// their messages. Past it, a send is refused, a fetched message goes to the dead
/// letters and a result ends its task `FAILURE`.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// A URL with its password (and user) replaced by `***`, for logs and banners.
///
/// ```
/// assert_eq!(task_core::redact_url("redis://:hunter2@10.0.0.5:6379/0"), "redis://***@10.0.0.5:6379/0");
/// assert_eq!(task_core::redact_url("memory://"), "memory://");
/// ```
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// A Celerity application: where tasks are sent and where results are kept.
///
/// ```
/// use std::time::Duration;
/// use task_core::{task, App, TaskResult};
///
/// #[task]
/// async fn add(x: i64, y: i64) -> TaskResult<i64> {
///     Ok(x + y)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), task_core::Error> {
/// let app = App::builder().broker_url("memory://").build().await?;
/// let worker = tokio::spawn(app.worker().concurrency(2).run_until(tokio::time::sleep(Duration::from_secs(2))));
/// let result = add::delay(&app, 1, 2).await?;
/// assert_eq!(result.get(Duration::from_secs(5)).await?, 3);
/// # worker.abort();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Arc<dyn Broker>,
    backend: Arc<dyn ResultBackend>,
    registry: Arc<Registry>,
    broker_url: String,
    backend_url: String,
    default_queue: String,
    result_ttl: Duration,
    routes: Vec<(String, String)>,
    track_started: bool,
    started_after: Duration,
    max_message_size: usize,
    /// Runs what was sent, in place, before the send returns (eager mode).
    eager: Option<Arc<dyn RunInPlace>>,
}

/// What an app in eager mode calls after each send: runs everything queued, in place.
/// Defined here, carried out by the worker (`AppBuilder::eager`), so that sending needs
/// no worker of its own.
pub(crate) trait RunInPlace: Send + Sync {
    /// Runs every queued task of `app` (and what they send) to its end.
    fn run<'a>(&'a self, app: &'a App) -> crate::future::BoxFuture<'a, ()>;
}

impl App {
    /// An app on the embedded in-memory broker and backend, with every linked task.
    pub fn memory() -> App {
        App {
            inner: Arc::new(Inner {
                broker: Arc::new(InMemoryBroker::new()),
                backend: Arc::new(InMemoryBackend::new()),
                registry: Registry::global(),
                broker_url: "memory://".into(),
                backend_url: "memory://".into(),
                default_queue: DEFAULT_QUEUE.into(),
                result_ttl: DEFAULT_RESULT_TTL,
                track_started: true,
                started_after: DEFAULT_STARTED_AFTER,
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                eager: None,
                routes: Vec::new(),
            }),
        }
    }

    /// Configured from the environment:
    ///
    /// | variable | meaning | unset |
    /// |---|---|---|
    /// | `CELERITY_BROKER_URL` | broker URL | `memory://` |
    /// | `CELERITY_RESULT_BACKEND` | result backend URL | the broker URL |
    /// | `CELERITY_DEFAULT_QUEUE` | queue of tasks that name none | `default` |
    /// | `CELERITY_RESULT_TTL` | seconds results are kept | 86400 |
    /// | `CELERITY_TRACK_STARTED` | store `STARTED` when a task starts (`1`/`0`) | `1` |
    /// | `CELERITY_STARTED_AFTER_MS` | how long a run goes before its `STARTED` is stored | 50 |
    /// | `CELERITY_MAX_MESSAGE_SIZE` | the largest task or result, in bytes | 16 MiB |
    pub async fn from_env() -> Result<App, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut builder = App::builder();
        if let Some(url) = var(ENV_BROKER_URL) {
            builder = builder.broker_url(url);
        }
        if let Some(url) = var(ENV_RESULT_BACKEND) {
            builder = builder.result_backend(url);
        }
        if let Some(queue) = var(ENV_DEFAULT_QUEUE) {
            builder = builder.default_queue(queue);
        }
        if let Some(ttl) = var(ENV_RESULT_TTL) {
            let secs: u64 = ttl
                .parse()
                .map_err(|_| Error::Config(format!("{ENV_RESULT_TTL}=`{ttl}` is not a whole number of seconds")))?;
            builder = builder.result_ttl(Duration::from_secs(secs));
        }
        if let Some(track) = var(ENV_TRACK_STARTED) {
            builder = builder.track_started(flag(ENV_TRACK_STARTED, &track)?);
        }
        if let Some(ms) = var(ENV_STARTED_AFTER_MS) {
            let ms: u64 = ms.parse().map_err(|_| {
                Error::Config(format!("{ENV_STARTED_AFTER_MS}=`{ms}` is not a whole number of milliseconds"))
            })?;
            builder = builder.started_after(Duration::from_millis(ms));
        }
        if let Some(size) = var(ENV_MAX_MESSAGE_SIZE) {
            let bytes = size.parse().ok().filter(|b| *b > 0).ok_or_else(|| {
                Error::Config(format!("{ENV_MAX_MESSAGE_SIZE}=`{size}` is not a positive number of bytes"))
            })?;
            builder = builder.max_message_size(bytes);
        }
        builder.build().await
    }

    /// A builder, for configuration in code.
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }

    /// The result backend.
    pub fn backend(&self) -> &Arc<dyn ResultBackend> {
        &self.inner.backend
    }

    /// The tasks this app's workers run.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// The broker URL as configured (with any password: use [`redact_url`] to print it).
    pub fn broker_url(&self) -> &str {
        &self.inner.broker_url
    }

    /// The result backend URL.
    pub fn backend_url(&self) -> &str {
        &self.inner.backend_url
    }

    /// The queue of tasks that name none.
    pub fn default_queue(&self) -> &str {
        &self.inner.default_queue
    }

    /// Whether workers store `STARTED` when a task starts, unless the task says
    /// otherwise (see [`AppBuilder::track_started`]).
    pub fn track_started(&self) -> bool {
        self.inner.track_started
    }

    /// How long a run goes before its `STARTED` is stored (see
    /// [`AppBuilder::started_after`]).
    pub fn started_after(&self) -> Duration {
        self.inner.started_after
    }

    /// True in eager mode ([`AppBuilder::eager`]): tasks run where they are sent.
    pub fn is_eager(&self) -> bool {
        self.inner.eager.is_some()
    }

    /// Runs what was queued, in place, when the app is eager.
    pub(crate) async fn run_in_place(&self) {
        if let Some(eager) = &self.inner.eager {
            eager.run(self).await;
        }
    }

    /// The largest encoded task or result, in bytes (see [`AppBuilder::max_message_size`]).
    pub fn max_message_size(&self) -> usize {
        self.inner.max_message_size
    }

    /// How long results are kept.
    pub fn result_ttl(&self) -> Duration {
        self.inner.result_ttl
    }

    /// The queue the route table gives task `name`: the first route whose pattern
    /// matches (`*` any run of characters, `?` one character), if any.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), task_core::Error> {
    /// let app = task_core::App::builder()
    ///     .route("media.*", "media")
    ///     .route("*.send_email", "emails")
    ///     .build()
    ///     .await?;
    /// assert_eq!(app.route("media.resize"), Some("media"));
    /// assert_eq!(app.route("shop::send_email"), None); // `*.` needs a dot
    /// assert_eq!(app.route("shop.send_email"), Some("emails"));
    /// # Ok(()) }
    /// ```
    pub fn route(&self, name: &str) -> Option<&str> {
        self.inner.routes.iter().find(|(pattern, _)| glob_match(pattern, name)).map(|(_, queue)| queue.as_str())
    }

    /// Revokes task `id`, durably: it ends `REVOKED` and a worker that dequeues it,
    /// even one started later, skips it (for as long as results are kept). A task that
    /// already ended is left as it is. With `terminate`, the worker running it aborts
    /// it (an async task at its next `.await`; a sync task's thread cannot be stopped
    /// and runs on, detached, while its slot is freed), and it stays `REVOKED`
    /// ("terminated").
    pub async fn revoke(&self, id: &TaskId, terminate: bool) -> Result<(), Error> {
        let reason = if terminate { "terminated" } else { "revoked" };
        Ok(self.backend().revoke(id, reason, terminate, self.result_ttl()).await?)
    }

    /// How long the result of the task `envelope` is kept: its own TTL, else the app's.
    pub(crate) fn ttl_of(&self, envelope: &Envelope) -> Duration {
        envelope.result_ttl_ms.map_or_else(|| self.result_ttl(), Duration::from_millis)
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("broker", &self.inner.broker_url)
            .field("backend", &self.inner.backend_url)
            .field("tasks", &self.inner.registry.len())
            .finish_non_exhaustive()
    }
}

/// Builds an [`App`]: URLs (looked up by scheme) or ready-made driver objects.
#[derive(Default, Clone)]
pub struct AppBuilder {
    broker_url: Option<String>,
    backend_url: Option<String>,
    broker: Option<Arc<dyn Broker>>,
    backend: Option<Arc<dyn ResultBackend>>,
    registry: Option<Arc<Registry>>,
    default_queue: Option<String>,
    result_ttl: Option<Duration>,
    routes: Vec<(String, String)>,
    track_started: Option<bool>,
    started_after: Option<Duration>,
    max_message_size: Option<usize>,
    pub(crate) eager: Option<Arc<dyn RunInPlace>>,
}

impl fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppBuilder")
            .field("broker_url", &self.broker_url)
            .field("backend_url", &self.backend_url)
            .finish_non_exhaustive()
    }
}

impl AppBuilder {
    /// The broker URL (`memory://`, `redis://host:port/db`, …).
    pub fn broker_url(mut self, url: impl Into<String>) -> Self {
        self.broker_url = Some(url.into());
        self
    }

    /// The result backend URL; unset, the broker URL is used.
    pub fn result_backend(mut self, url: impl Into<String>) -> Self {
        self.backend_url = Some(url.into());
        self
    }

    /// A broker object (wins over `broker_url`).
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// A backend object (wins over `result_backend`).
    pub fn backend(mut self, backend: Arc<dyn ResultBackend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// The tasks workers of this app run (default: every linked task).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(Arc::new(registry));
        self
    }

    /// The queue of tasks that name none (default `default`).
    pub fn default_queue(mut self, queue: impl Into<String>) -> Self {
        self.default_queue = Some(queue.into());
        self
    }

    /// How long results are kept (default one day).
    pub fn result_ttl(mut self, ttl: Duration) -> Self {
        self.result_ttl = Some(ttl);
        self
    }

    /// Whether workers store `STARTED` (with the task's arguments, in their own name)
    /// when a task starts: on by default. Off, as Celery's default `track_started`, a
    /// task goes from `PENDING` to its end in one write, which carries its arguments;
    /// running tasks are not listed as `STARTED` and the revoke check at the start is a
    /// read. About a quarter less work per task in Redis. `#[task(track_started = ..)]`
    /// decides per task.
    pub fn track_started(mut self, yes: bool) -> Self {
        self.track_started = Some(yes);
        self
    }

    /// How long a run goes before its `STARTED` is stored, where the backend can store a
    /// result with its message's ack (one Redis; default [`DEFAULT_STARTED_AFTER`]). A run
    /// that ends sooner stores its start with its end: one write instead of two, fenced
    /// by the ack, and the revoke check before the run is a read (as with
    /// `track_started` off); a `STARTED` written later that finds the task revoked
    /// stops the run. `Duration::ZERO` stores `STARTED` before every run, as Celery does.
    /// Elsewhere (the memory backend, a cluster, `acks_early`) it is always stored
    /// before the run.
    pub fn started_after(mut self, after: Duration) -> Self {
        self.started_after = Some(after);
        self
    }

    /// The largest encoded task (its envelope, arguments included) or result, in bytes:
    /// [`DEFAULT_MAX_MESSAGE_SIZE`] unless set. A larger send is refused with
    /// [`Error::TooLarge`] and nothing is sent; a larger message fetched (sent by another
    /// program) goes to the dead letters; a larger result ends its task `FAILURE`.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = Some(bytes.max(1));
        self
    }

    /// Routes tasks whose name matches `pattern` (`*`, `?`) to `queue`, like Celery's
    /// `task_routes`. The first matching route wins; a queue given per call or in
    /// `#[task(queue = ..)]` wins over every route.
    pub fn route(mut self, pattern: impl Into<String>, queue: impl Into<String>) -> Self {
        self.routes.push((pattern.into(), queue.into()));
        self
    }

    /// Connects the drivers and makes the app.
    pub async fn build(self) -> Result<App, Error> {
        let broker_url = self.broker_url.unwrap_or_else(|| "memory://".into());
        let backend_url = self.backend_url.unwrap_or_else(|| broker_url.clone());
        let broker = match self.broker {
            // Eager: sent tasks run in place, through a private queue.
            _ if self.eager.is_some() => Arc::new(InMemoryBroker::new()),
            Some(broker) => broker,
            None => driver::connect_broker(&broker_url).await?,
        };
        let backend = match self.backend {
            Some(backend) => backend,
            None => driver::connect_backend(&backend_url).await?,
        };
        let default_queue = self.default_queue.unwrap_or_else(|| DEFAULT_QUEUE.into());
        if default_queue.trim().is_empty() {
            return Err(Error::Config("the default queue name cannot be empty".into()));
        }
        Ok(App {
            inner: Arc::new(Inner {
                broker,
                backend,
                registry: self.registry.unwrap_or_else(Registry::global),
                broker_url,
                backend_url,
                default_queue,
                result_ttl: self.result_ttl.unwrap_or(DEFAULT_RESULT_TTL),
                routes: self.routes,
                track_started: self.track_started.unwrap_or(true),
                started_after: self.started_after.unwrap_or(DEFAULT_STARTED_AFTER),
                max_message_size: self.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
                eager: self.eager,
            }),
        })
    }
}

/// A yes/no environment variable: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`.
fn flag(name: &str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::Config(format!("{name}=`{value}` is not 1 or 0 (true or false)"))),
    }
}

/// `*` matches any run of characters, `?` one; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None; // (pattern index after `*`, text index it matched to)
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi + 1, ti));
            pi += 1;
        } else if let Some((after, matched)) = star {
            pi = after;
            ti = matched + 1;
            star = Some((after, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::{flag, glob_match};

    #[test]
    fn flags_read_yes_and_no_and_name_a_bad_value() {
        assert!(flag("X", "1").unwrap() && flag("X", " TRUE ").unwrap() && flag("X", "on").unwrap());
        assert!(!flag("X", "0").unwrap() && !flag("X", "false").unwrap() && !flag("X", "Off").unwrap());
        let err = flag("CELERITY_TRACK_STARTED", "maybe").unwrap_err().to_string();
        assert!(err.contains("CELERITY_TRACK_STARTED=`maybe`"), "{err}");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("media.*", "media.resize"));
        assert!(!glob_match("media.*", "mediaresize"));
        assert!(glob_match("*::send_*", "shop::emails::send_welcome"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
    }
}
