//! Connections: one multiplexed connection for commands, a small pool of connections
//! for blocking waits (a `BLPOP` holds its connection), each reconnecting on its own.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{Failure, timed};

/// How commands and blocking waits reach Redis.
pub(crate) struct Connections {
    client: redis::Client,
    op_timeout: Duration,
    /// For ordinary commands: shared, pipelined.
    pub(crate) main: ConnectionManager,
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
    pub(crate) async fn open(url: &str, op_timeout: Duration) -> Result<Self, Failure> {
        let client = redis::Client::open(url)?;
        let main =
            timed(op_timeout, client.get_connection_manager_with_config(manager_config(op_timeout, false))).await?;
        Ok(Self { client, op_timeout, main, idle_blocking: Mutex::new(Vec::new()) })
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
