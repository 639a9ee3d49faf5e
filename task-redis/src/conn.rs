//! Connections: one multiplexed connection for commands, a small pool of connections
//! for blocking waits (a `BLPOP` holds its connection), each reconnecting on its own.
//! Behind Sentinel they follow the primary: a command that fails as a lost or
//! read-only primary fails it makes the connections ask the Sentinels again. On a Redis
//! Cluster, redis-rs's cluster connection routes each command to its slot's node and
//! follows `MOVED`, `ASK` and failovers itself; a pipeline is split per slot here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::config::RedisConfig;
use crate::error::{Failure, timed};
use crate::topology::{ClusterUrl, SentinelUrl, Topology};

mod cluster;

/// A client for the configured URL; `rediss://` uses TLS (feature `tls`).
fn client(config: &RedisConfig) -> Result<redis::Client, Failure> {
    let url = config.url.as_str();
    if url.starts_with("rediss://") {
        #[cfg(feature = "tls")]
        {
            // rustls needs one process-wide crypto provider; ring is ours. Installing
            // fails only when one is already installed, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
            if let Some(path) = &config.ca_cert {
                let root_cert = std::fs::read(path).map_err(|e| {
                    Failure::Redis(redis::RedisError::from(std::io::Error::new(
                        e.kind(),
                        format!("cannot read the CA certificate {}: {e}", path.display()),
                    )))
                })?;
                let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
                return Ok(redis::Client::build_with_tls(url, certs)?);
            }
        }
        #[cfg(not(feature = "tls"))]
        return Err(Failure::Redis(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "rediss:// needs the `tls` feature of task-redis",
        ))));
    }
    Ok(redis::Client::open(url)?)
}

/// Where connections go: one server, or the primary that the Sentinels name now.
pub(crate) enum Source {
    Single(redis::Client),
    Sentinel(tokio::sync::Mutex<redis::sentinel::SentinelClient>),
}

impl Source {
    fn open(config: &RedisConfig, topology: Topology) -> Result<Self, Failure> {
        match topology {
            Topology::Single(_) => Ok(Source::Single(client(config)?)),
            Topology::Sentinel(url) => {
                Ok(Source::Sentinel(tokio::sync::Mutex::new(sentinel_client(&url, config.ca_cert.as_deref())?)))
            }
            Topology::Cluster(_) => unreachable!("a cluster has no single source"),
        }
    }

    /// A client for the server to use now (behind Sentinel: the primary it names).
    async fn client(&self) -> Result<redis::Client, RedisError> {
        match self {
            Source::Single(client) => Ok(client.clone()),
            Source::Sentinel(sentinels) => sentinels.lock().await.async_get_client().await,
        }
    }
}

pub(crate) fn invalid(message: String) -> Failure {
    Failure::Redis(redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "invalid URL", message)))
}

/// A client of the Sentinels of `url`; with TLS (`rediss+sentinel://`, feature `tls`)
/// to the Sentinels and to the primary alike, trusting `ca_cert` or the system's roots.
fn sentinel_client(
    url: &SentinelUrl,
    ca_cert: Option<&std::path::Path>,
) -> Result<redis::sentinel::SentinelClient, Failure> {
    use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
    let addr = |(host, port): &(String, u16)| {
        if url.tls {
            redis::ConnectionAddr::TcpTls { host: host.clone(), port: *port, insecure: false, tls_params: None }
        } else {
            redis::ConnectionAddr::Tcp(host.clone(), *port)
        }
    };
    let nodes = url.sentinels.iter().map(addr);
    let mut builder = SentinelClientBuilder::new(nodes, url.master.clone(), SentinelServerType::Master)?
        .set_client_to_redis_db(url.db);
    if url.tls {
        builder = sentinel_tls(builder, ca_cert)?;
    }
    if let Some(user) = &url.username {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = &url.password {
        builder = builder.set_client_to_redis_password(password);
    }
    Ok(builder.build()?)
}

#[cfg(feature = "tls")]
fn sentinel_tls(
    builder: redis::sentinel::SentinelClientBuilder,
    ca_cert: Option<&std::path::Path>,
) -> Result<redis::sentinel::SentinelClientBuilder, Failure> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secure = redis::TlsMode::Secure;
    let builder = builder.set_client_to_sentinel_tls_mode(secure).set_client_to_redis_tls_mode(secure);
    let Some(path) = ca_cert else { return Ok(builder) };
    let root_cert =
        std::fs::read(path).map_err(|e| invalid(format!("cannot read the CA certificate {}: {e}", path.display())))?;
    let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
    Ok(builder.set_client_to_sentinel_certificates(certs.clone()).set_client_to_redis_certificates(certs))
}

#[cfg(not(feature = "tls"))]
fn sentinel_tls(
    _: redis::sentinel::SentinelClientBuilder,
    _: Option<&std::path::Path>,
) -> Result<redis::sentinel::SentinelClientBuilder, Failure> {
    Err(invalid("rediss+sentinel:// needs the `tls` feature of task-redis".into()))
}

/// How commands and blocking waits reach Redis.
pub(crate) struct Connections {
    op_timeout: Duration,
    /// For ordinary commands: shared, pipelined.
    pub(crate) main: Conn,
    /// For `BLPOP`: taken for the wait, given back after (of the current primary).
    idle_blocking: Mutex<Vec<Blocking>>,
    /// One server or Sentinel: the primary in use; a cluster: its clients.
    place: Place,
}

enum Place {
    Follow(Arc<Follow>),
    Cluster(Arc<cluster::Clients>),
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections").field("op_timeout", &self.op_timeout).finish_non_exhaustive()
    }
}

pub(crate) fn manager_config(op_timeout: Duration, blocking: bool) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(op_timeout))
        // A blocking wait answers only when it ends: its time is bounded by the caller.
        // Others answer before the caller's own time-out, so that the connection sees
        // the time-out (behind Sentinel: a frozen primary) and not only the caller.
        .set_response_timeout(if blocking { None } else { Some(op_timeout.mul_f64(0.9)) })
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1))
}

/// A connection held for a blocking wait.
pub(crate) struct Blocking {
    pub(crate) con: BlockingCon,
    /// The primary it was made for (see [`Follow::generation`]).
    pub(crate) generation: u64,
}

/// A connection of its own for a blocking wait: to one server, or (a cluster) one with a
/// connection per node, never shared with other commands, without a response time-out.
#[derive(Clone)]
pub(crate) enum BlockingCon {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for BlockingCon {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            BlockingCon::Single(con) => con.req_packed_command(cmd),
            BlockingCon::Cluster(con) => con.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            BlockingCon::Single(con) => con.req_packed_commands(pipeline, offset, count),
            BlockingCon::Cluster(con) => con.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            BlockingCon::Single(con) => con.get_db(),
            BlockingCon::Cluster(_) => 0,
        }
    }
}

impl Connections {
    pub(crate) async fn open(config: &RedisConfig) -> Result<Self, Failure> {
        let op_timeout = config.op_timeout;
        let topology = Topology::parse(&config.url).map_err(invalid)?;
        if let Topology::Cluster(url) = topology {
            return Self::open_cluster(config, &url).await;
        }
        let source = Source::open(config, topology)?;
        let client = timed(op_timeout, source.client()).await?;
        let manager =
            timed(op_timeout, client.get_connection_manager_with_config(manager_config(op_timeout, false))).await?;
        let follow = Follow {
            source,
            op_timeout,
            current: RwLock::new((manager, client)),
            generation: AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(()),
        };
        let follow = Arc::new(follow);
        Ok(Self {
            op_timeout,
            main: Conn::new(follow.clone()),
            idle_blocking: Mutex::new(Vec::new()),
            place: Place::Follow(follow),
        })
    }

    async fn open_cluster(config: &RedisConfig, url: &ClusterUrl) -> Result<Self, Failure> {
        let clients = cluster::Clients::new(config, url)?;
        let (main, once) = tokio::try_join!(
            timed(config.op_timeout, clients.main.get_async_connection()),
            timed(config.op_timeout, clients.once.get_async_connection()),
        )?;
        Ok(Self {
            op_timeout: config.op_timeout,
            main: Conn { link: Link::Cluster { con: main, once }, resend: true },
            idle_blocking: Mutex::new(Vec::new()),
            place: Place::Cluster(Arc::new(clients)),
        })
    }

    fn follow(&self) -> Option<&Arc<Follow>> {
        match &self.place {
            Place::Follow(follow) => Some(follow),
            Place::Cluster(_) => None,
        }
    }

    /// True on a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.place, Place::Cluster(_))
    }

    /// Where the subscriber connects: the server in use now, or the cluster.
    pub(crate) fn push_place(&self) -> PushPlace {
        match &self.place {
            Place::Follow(follow) => PushPlace::Server(Box::new(follow.read().1)),
            Place::Cluster(clients) => PushPlace::Cluster(clients.clone()),
        }
    }

    /// How many times the connections moved to a new primary (Sentinel), from 0.
    pub(crate) fn generation(&self) -> u64 {
        self.follow().map_or(0, |follow| follow.generation.load(Ordering::Acquire))
    }

    /// A call on a blocking connection of `generation` failed with `failure`: behind
    /// Sentinel, when it looks like a lost primary (a time-out included: a frozen one
    /// answers nothing), the connections look for the primary, in the background.
    pub(crate) fn failed(&self, failure: &Failure, generation: u64) {
        let lost = match failure {
            Failure::TimedOut(_) => true,
            Failure::Redis(e) => primary_lost(e),
            Failure::Closed => false,
        };
        let Some(follow) = self.follow() else { return };
        if lost && matches!(follow.source, Source::Sentinel(_)) {
            let follow = follow.clone();
            tokio::spawn(async move { follow.refresh(generation).await });
        }
    }

    /// Where the server in use is, for connections kept elsewhere (the subscriber's);
    /// `None` on a cluster (its connections follow the cluster by themselves).
    pub(crate) fn primary(&self) -> Option<Primary> {
        self.follow().map(|follow| Primary(follow.clone()))
    }

    /// A connection for one blocking wait; give it back with [`Connections::give_back`].
    pub(crate) async fn blocking(&self) -> Result<Blocking, Failure> {
        let generation = self.generation();
        let idle = {
            let mut idle = self.idle_blocking.lock().unwrap_or_else(|p| p.into_inner());
            // Those of a primary that is no longer one are dropped.
            idle.retain(|b| b.generation == generation);
            idle.pop()
        };
        if let Some(blocking) = idle {
            return Ok(blocking);
        }
        let con = match &self.place {
            Place::Follow(follow) => {
                let client = follow.read().1;
                let config = manager_config(self.op_timeout, true);
                BlockingCon::Single(timed(self.op_timeout, client.get_connection_manager_with_config(config)).await?)
            }
            Place::Cluster(clients) => {
                BlockingCon::Cluster(timed(self.op_timeout, clients.blocking.get_async_connection()).await?)
            }
        };
        Ok(Blocking { con, generation })
    }

    /// A blocking connection's call ended with `result`: the connection is given back
    /// when the call went through, and its failure looked into when it did not.
    pub(crate) fn ended<T>(&self, blocking: Blocking, result: Result<T, Failure>) -> Result<T, Failure> {
        match &result {
            Ok(_) => self.give_back(blocking),
            Err(e) => self.failed(e, blocking.generation),
        }
        result
    }

    pub(crate) fn give_back(&self, blocking: Blocking) {
        let mut idle = self.idle_blocking.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 8 && blocking.generation == self.generation() {
            idle.push(blocking);
        }
    }
}

/// Where the subscriber's connection goes.
pub(crate) enum PushPlace {
    /// The server in use now (one server, or the primary the Sentinels name).
    Server(Box<redis::Client>),
    /// A cluster (see [`cluster::Clients::push`]).
    Cluster(Arc<cluster::Clients>),
}

/// Tells a connection kept outside [`Connections`] where the server is now.
#[derive(Clone)]
pub(crate) struct Primary(Arc<Follow>);

impl Primary {
    /// Behind Sentinel: a client for the primary the Sentinels name now, if it is not at
    /// `addr`; `None` for one server (its connections reconnect by themselves) or when
    /// the Sentinels name none yet.
    pub(crate) async fn moved_from(&self, addr: &str) -> Option<redis::Client> {
        if !matches!(self.0.source, Source::Sentinel(_)) {
            return None;
        }
        let client = timed(self.0.op_timeout, self.0.source.client()).await.ok()?;
        (address(&client) != addr).then_some(client)
    }
}

/// The address a client connects to (`host:port`).
pub(crate) fn address(client: &redis::Client) -> String {
    client.get_connection_info().addr().to_string()
}

/// The connection to the server in use, and how to find the next one.
struct Follow {
    source: Source,
    op_timeout: Duration,
    current: RwLock<(ConnectionManager, redis::Client)>,
    /// Counts the primaries followed: a blocking connection of an older one is dropped.
    generation: AtomicU64,
    /// One look-up at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl Follow {
    fn read(&self) -> (ConnectionManager, redis::Client) {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// After `e` on the connection of generation `seen`: behind Sentinel, when `e` says
    /// the primary is lost or is one no more, asks the Sentinels for the primary and
    /// moves to it if it moved. True when the connection changed (a command may go
    /// again, on the new one). The look-up runs on a task of its own: a caller that
    /// gives up (its own time-out) does not cancel it.
    async fn after(self: &Arc<Self>, e: &RedisError, seen: u64) -> bool {
        if !matches!(self.source, Source::Sentinel(_)) || !primary_lost(e) {
            return false;
        }
        let follow = self.clone();
        tokio::spawn(async move { follow.refresh(seen).await }).await.unwrap_or(false)
    }

    /// Moves to the primary the Sentinels name, unless a move from `seen` happened.
    async fn refresh(&self, seen: u64) -> bool {
        let _one = self.refreshing.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return true; // another command moved it meanwhile
        }
        let client = match timed(self.op_timeout, self.source.client()).await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = ?e, "the Sentinels name no reachable primary yet");
                return false;
            }
        };
        if address(&client) == address(&self.read().1) {
            return false;
        }
        let config = manager_config(self.op_timeout, false);
        match timed(self.op_timeout, client.get_connection_manager_with_config(config)).await {
            Ok(manager) => {
                tracing::info!(primary = %address(&client), "following the new primary named by the Sentinels");
                *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (manager, client);
                self.generation.fetch_add(1, Ordering::AcqRel);
                true
            }
            Err(e) => {
                tracing::warn!(error = ?e, "cannot reach the new primary yet");
                false
            }
        }
    }
}

/// True when `e` is what a command meets when its primary died or was demoted.
fn primary_lost(e: &RedisError) -> bool {
    e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_io_error()
        || e.is_timeout()
        || matches!(e.kind(), redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
        || e.code().is_some_and(|code| code == "MASTERDOWN" || code == "READONLY")
}

/// A shared connection that sends a command again, once, when its connection was found
/// closed: a connection idle while Redis restarted (or failed over, or was killed by
/// `CLIENT KILL`) learns so only from its next command, which fails with "broken pipe",
/// or with the "connection refused" of a reconnect the manager tried while Redis was
/// still down. The manager reconnects on that failure; sent again, the command goes out
/// on the new connection, and fails only if Redis is still away. Behind Sentinel, a
/// failure that says the primary is gone or read-only moves it to the primary the
/// Sentinels name (and a command refused as read-only, which did not run, goes again).
///
/// A command in flight when the connection closed may have run: sent again, it may run
/// twice. Every command the drivers send may (delivery is at least once; writes are
/// fenced), but a fetch, whose lost reply the broker reconciles itself, goes out once
/// ([`Conn::once`]).
#[derive(Clone)]
pub(crate) struct Conn {
    link: Link,
    /// Send a command again after a closed connection.
    resend: bool,
}

#[derive(Clone)]
enum Link {
    /// One server, or the primary behind Sentinel.
    Follow {
        follow: Arc<Follow>,
        /// The connection of generation `generation`, used while that is the current one
        /// (no lock per command: one atomic load).
        cached: ConnectionManager,
        generation: u64,
    },
    /// A cluster: `con` retries what failed (redirects, a lost connection); `once`
    /// retries nothing, for calls that must not run twice.
    Cluster { con: ClusterConnection, once: ClusterConnection },
}

impl Conn {
    /// The connection for a call that must not be sent twice (a fetch, whose lost reply
    /// the broker reconciles on its own); it still follows a failover.
    pub(crate) fn once(&self) -> Conn {
        match &self.link {
            Link::Cluster { once, .. } => {
                Conn { link: Link::Cluster { con: once.clone(), once: once.clone() }, resend: false }
            }
            Link::Follow { .. } => Conn { resend: false, ..self.clone() },
        }
    }

    fn new(follow: Arc<Follow>) -> Self {
        let generation = follow.generation.load(Ordering::Acquire);
        let cached = follow.read().0;
        Conn { link: Link::Follow { follow, cached, generation }, resend: true }
    }
}

/// Whether to send again after `e` on the connection of `generation`.
async fn again(follow: &Arc<Follow>, resend: bool, e: &RedisError, generation: u64) -> bool {
    let moved = follow.after(e, generation).await;
    let refused_unrun = matches!(e.kind(), redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly));
    (moved && (resend || refused_unrun)) || (resend && closed_before_sending(e))
}

/// The current connection of `follow`, and its generation (the cache refreshed when a
/// failover moved it).
fn current<'a>(
    follow: &Arc<Follow>,
    cached: &'a mut ConnectionManager,
    seen: &mut u64,
) -> (&'a mut ConnectionManager, u64) {
    let generation = follow.generation.load(Ordering::Acquire);
    if generation != *seen {
        *cached = follow.read().0;
        *seen = generation;
    }
    (cached, generation)
}

/// True when a command failed because its connection was closed or could not be made.
fn closed_before_sending(e: &RedisError) -> bool {
    e.is_connection_dropped()
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let resend = self.resend;
            let (follow, cached, seen) = match &mut self.link {
                Link::Cluster { con, .. } => return con.req_packed_command(cmd).await,
                Link::Follow { follow, cached, generation } => (follow.clone(), cached, generation),
            };
            let (con, generation) = current(&follow, cached, seen);
            match con.req_packed_command(cmd).await {
                Err(e) if again(&follow, resend, &e, generation).await => {
                    current(&follow, cached, seen).0.req_packed_command(cmd).await
                }
                answered => answered,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let resend = self.resend;
            let (follow, cached, seen) = match &mut self.link {
                Link::Cluster { con, .. } => return cluster::split_pipeline(con, pipeline, offset, count).await,
                Link::Follow { follow, cached, generation } => (follow.clone(), cached, generation),
            };
            let (con, generation) = current(&follow, cached, seen);
            match con.req_packed_commands(pipeline, offset, count).await {
                Err(e) if again(&follow, resend, &e, generation).await => {
                    current(&follow, cached, seen).0.req_packed_commands(pipeline, offset, count).await
                }
                answered => answered,
            }
        })
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Follow { cached, .. } => cached.get_db(),
            Link::Cluster { .. } => 0,
        }
    }
}
