//! Connections: one multiplexed connection for commands, a small pool of connections
//! for blocking waits (a `BLPOP` holds its connection), each reconnecting on its own.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::config::RedisConfig;
use crate::error::{Failure, timed};

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

/// How commands and blocking waits reach Redis.
pub(crate) struct Connections {
    client: redis::Client,
    op_timeout: Duration,
    /// For ordinary commands: shared, pipelined.
    pub(crate) main: Conn,
    /// For `BLPOP`: taken for the wait, given back after.
    idle_blocking: Mutex<Vec<ConnectionManager>>,
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
        .set_response_timeout(if blocking { None } else { Some(op_timeout) })
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1))
}

impl Connections {
    pub(crate) async fn open(config: &RedisConfig) -> Result<Self, Failure> {
        let op_timeout = config.op_timeout;
        let client = client(config)?;
        let main =
            timed(op_timeout, client.get_connection_manager_with_config(manager_config(op_timeout, false))).await?;
        Ok(Self { client, op_timeout, main: Conn(main), idle_blocking: Mutex::new(Vec::new()) })
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A connection for one blocking wait; give it back with [`Connections::give_back`].
    pub(crate) async fn blocking(&self) -> Result<ConnectionManager, Failure> {
        let idle = self.idle_blocking.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(con) => Ok(con),
            None => {
                timed(
                    self.op_timeout,
                    self.client.get_connection_manager_with_config(manager_config(self.op_timeout, true)),
                )
                .await
            }
        }
    }

    pub(crate) fn give_back(&self, con: ConnectionManager) {
        let mut idle = self.idle_blocking.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 8 {
            idle.push(con);
        }
    }
}

/// A shared connection that sends a command again, once, when its connection was found
/// closed: a connection idle while Redis restarted (or failed over, or was killed by
/// `CLIENT KILL`) learns so only from its next command, which fails with "broken pipe",
/// or with the "connection refused" of a reconnect the manager tried while Redis was
/// still down. The manager reconnects on that failure; sent again, the command goes out
/// on the new connection, and fails only if Redis is still away.
///
/// A command in flight when the connection closed may have run: sent again, it may run
/// twice. Every command the drivers send may (delivery is at least once; writes are
/// fenced), but a fetch, whose lost reply the broker reconciles itself, goes out once
/// ([`Conn::once`]).
#[derive(Clone)]
pub(crate) struct Conn(ConnectionManager);

impl Conn {
    /// The manager itself, for a call that must not be sent twice (a fetch, whose lost
    /// reply the broker reconciles on its own).
    pub(crate) fn once(&self) -> ConnectionManager {
        self.0.clone()
    }
}

/// True when a command failed because its connection was closed or could not be made.
fn closed_before_sending(e: &RedisError) -> bool {
    e.is_connection_dropped()
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.0.req_packed_command(cmd).await {
                Err(e) if closed_before_sending(&e) => self.0.req_packed_command(cmd).await,
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
            match self.0.req_packed_commands(pipeline, offset, count).await {
                Err(e) if closed_before_sending(&e) => self.0.req_packed_commands(pipeline, offset, count).await,
                answered => answered,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}
