//! Redis Cluster: the clients of each kind of connection, and pipelines split per
//! slot (redis-rs sends a pipeline to one node and refuses one that spans slots).

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Arg, Cmd, Pipeline, RedisResult, Value};

use crate::config::RedisConfig;
use crate::error::Failure;
use crate::topology::ClusterUrl;

/// The clients of a cluster, one per kind of connection (each connection it makes holds
/// one connection per node it talks to).
pub(crate) struct Clients {
    /// Ordinary commands: a response time-out under the caller's, redirects followed,
    /// a command resent after a lost connection.
    pub(crate) main: ClusterClient,
    /// Calls that must not run twice (a fetch): nothing is retried.
    pub(crate) once: ClusterClient,
    /// Blocking waits: no response time-out (the caller bounds the wait).
    pub(crate) blocking: ClusterClient,
    url: ClusterUrl,
    op_timeout: Duration,
    ca_cert: Option<std::path::PathBuf>,
}

impl Clients {
    pub(crate) fn new(config: &RedisConfig, url: &ClusterUrl) -> Result<Self, Failure> {
        let op = config.op_timeout;
        let clients = |build: &dyn Fn(ClusterClientBuilder) -> ClusterClientBuilder| -> Result<_, Failure> {
            Ok(build(builder(url, op, config.ca_cert.as_deref())?).build()?)
        };
        Ok(Self {
            main: clients(&|b| b.response_timeout(op.mul_f64(0.9)).overall_response_timeout(None).retries(6))?,
            once: clients(&|b| b.response_timeout(op.mul_f64(0.9)).overall_response_timeout(None).retries(0))?,
            blocking: clients(&|b| b.overall_response_timeout(None).retries(6))?,
            url: url.clone(),
            op_timeout: op,
            ca_cert: config.ca_cert.clone(),
        })
    }

    /// A client for the subscriber: RESP3, its pushes to `pushes`; it resubscribes by
    /// itself after a reconnect.
    pub(crate) fn push(&self, pushes: impl redis::aio::AsyncPushSender) -> Result<ClusterClient, Failure> {
        let builder = builder(&self.url, self.op_timeout, self.ca_cert.as_deref())?
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .response_timeout(self.op_timeout.mul_f64(0.9))
            .overall_response_timeout(None);
        Ok(builder.build()?)
    }
}

fn builder(
    url: &ClusterUrl,
    op_timeout: Duration,
    ca_cert: Option<&std::path::Path>,
) -> Result<ClusterClientBuilder, Failure> {
    let scheme = if url.tls { "rediss" } else { "redis" };
    let nodes: Vec<String> = url.nodes.iter().map(|(host, port)| format!("{scheme}://{host}:{port}")).collect();
    let mut builder = ClusterClientBuilder::new(nodes).connection_timeout(op_timeout);
    if let Some(user) = &url.username {
        builder = builder.username(user);
    }
    if let Some(password) = &url.password {
        builder = builder.password(password);
    }
    if url.tls {
        builder = tls(builder, ca_cert)?;
    }
    Ok(builder)
}

#[cfg(feature = "tls")]
fn tls(builder: ClusterClientBuilder, ca_cert: Option<&std::path::Path>) -> Result<ClusterClientBuilder, Failure> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = builder.tls(redis::cluster::TlsMode::Secure);
    let Some(path) = ca_cert else { return Ok(builder) };
    let root_cert = std::fs::read(path)
        .map_err(|e| super::invalid(format!("cannot read the CA certificate {}: {e}", path.display())))?;
    Ok(builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) }))
}

#[cfg(not(feature = "tls"))]
fn tls(_: ClusterClientBuilder, _: Option<&std::path::Path>) -> Result<ClusterClientBuilder, Failure> {
    Err(super::invalid("rediss+cluster:// needs the `tls` feature of task-redis".into()))
}

/// Where a command of a pipeline goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// To the node of this slot, with the other commands of the slot.
    Slot(Slot),
    /// Alone, routed by redis-rs (a command without a key, or for every node).
    Alone,
}

/// The route of a command by its first key: the key follows the command's name, or for
/// `EVAL`/`EVALSHA`/`FCALL` the number of keys (alone when it is 0). Commands without a
/// key, and those redis-rs sends to several nodes, go alone.
pub(crate) fn route(args: &[&[u8]]) -> Route {
    let Some(name) = args.first() else { return Route::Alone };
    let name = name.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            match args.get(2).and_then(|n| std::str::from_utf8(n).ok()).and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n > 0 => args.get(3),
                _ => None,
            }
        }
        b"TIME" | b"INFO" | b"CONFIG" | b"PING" | b"WAIT" | b"SCRIPT" | b"CLUSTER" | b"DBSIZE" | b"FLUSHALL"
        | b"FLUSHDB" | b"SCAN" | b"KEYS" | b"MULTI" | b"EXEC" | b"CLIENT" | b"MEMORY" => None,
        _ => args.get(1),
    };
    key.map_or(Route::Alone, |key| Route::Slot(Slot::for_key(key)))
}

fn route_of(cmd: &Cmd) -> Route {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .map(|arg| match arg {
            Arg::Simple(bytes) => bytes,
            _ => &b""[..],
        })
        .collect();
    route(&args)
}

/// Groups the positions `0..routes.len()` by route: the positions of each slot in
/// their order, the slots in the order they first appear; each command that goes alone
/// is a group of its own.
pub(crate) fn groups(routes: &[Route]) -> Vec<(Route, Vec<usize>)> {
    let mut out: Vec<(Route, Vec<usize>)> = Vec::new();
    for (at, route) in routes.iter().enumerate() {
        match out.iter_mut().find(|(r, _)| *r == *route && *route != Route::Alone) {
            Some((_, positions)) => positions.push(at),
            None => out.push((*route, vec![at])),
        }
    }
    out
}

/// Runs `pipeline` on a cluster: as it is when its keyed commands share one slot (or it
/// is a transaction, which must), otherwise as one pipeline per slot and each command
/// without a key alone, concurrently, and the replies put back in the pipeline's order.
pub(crate) async fn split_pipeline(
    con: &mut ClusterConnection,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> RedisResult<Vec<Value>> {
    use redis::aio::ConnectionLike;
    if pipeline.is_transaction() {
        return con.req_packed_commands(pipeline, offset, count).await;
    }
    let routes: Vec<Route> = pipeline.cmd_iter().map(route_of).collect();
    let groups = groups(&routes);
    // One slot, with or without commands of no key (a `WAIT` after a send): as it is.
    // redis-rs sends it to that slot's node on one connection, in order, so a `WAIT`
    // counts the writes before it, on their node alone.
    if groups.iter().filter(|(route, _)| *route != Route::Alone).count() == 1 {
        return con.req_packed_commands(pipeline, offset, count).await;
    }
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    // Each part on a task of its own, so that the nodes work at once.
    let sent: Vec<_> = groups
        .iter()
        .map(|(route, positions)| {
            let mut con = con.clone();
            if *route == Route::Alone {
                let alone = commands[positions[0]].clone();
                return tokio::spawn(async move { con.req_packed_command(&alone).await.map(|v| vec![v]) });
            }
            let mut part = Pipeline::with_capacity(positions.len());
            for &at in positions {
                part.add_command(commands[at].clone());
            }
            tokio::spawn(async move { con.req_packed_commands(&part, 0, part.len()).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(sent.len());
    for part in sent {
        replies.push(part.await.map_err(|e| {
            redis::RedisError::from(std::io::Error::other(format!("a part of a pipeline was lost: {e}")))
        })??);
    }
    let mut out = vec![Value::Nil; routes.len()];
    for ((_, positions), values) in groups.iter().zip(replies) {
        for (&at, value) in positions.iter().zip(values) {
            out[at] = value;
        }
    }
    Ok(out.into_iter().skip(offset).take(count).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(key: &str) -> Route {
        Route::Slot(Slot::for_key(key.as_bytes()))
    }

    #[test]
    fn commands_route_by_their_first_key() {
        assert_eq!(route(&[b"HSET", b"ns:{q}:x", b"f", b"v"]), slot("ns:{q}:x"));
        assert_eq!(route(&[b"hset", b"ns:{q}:x"]), slot("q"), "the hash tag decides");
        assert_eq!(route(&[b"EVALSHA", b"abc", b"2", b"k1", b"k2", b"a"]), slot("k1"));
        assert_eq!(route(&[b"EVALSHA", b"abc", b"0", b"a"]), Route::Alone);
        assert_eq!(route(&[b"TIME"]), Route::Alone);
        assert_eq!(route(&[b"INFO", b"cpu"]), Route::Alone);
        assert_eq!(route(&[]), Route::Alone);
    }

    #[test]
    fn groups_keep_each_slots_order_and_lone_commands_apart() {
        let (a, b) = (Route::Slot(Slot::new(1).unwrap()), Route::Slot(Slot::new(2).unwrap()));
        let routes = [a, b, a, Route::Alone, b, Route::Alone, a];
        assert_eq!(
            groups(&routes),
            [(a, vec![0, 2, 6]), (b, vec![1, 4]), (Route::Alone, vec![3]), (Route::Alone, vec![5])]
        );
        assert_eq!(groups(&[]), []);
    }
}
