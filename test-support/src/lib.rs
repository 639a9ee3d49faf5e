//! A private `redis-server` for tests (sqlx-test habit): started on a free port on
//! 127.0.0.1 with its own data directory, stopped and cleaned up on drop.
//!
//! Needs the `redis-server` binary on `PATH` (Debian: `apt-get install redis-server`;
//! `.ci/run` installs it). Every test gets its own server, so tests run in parallel
//! without flushing each other's data.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod celery;
pub use celery::{CeleryWorker, Flower, celery_command, celery_python, run_celery};

/// How the server keeps data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// In memory only: a restart starts empty (fast; most tests).
    None,
    /// Append-only file, fsync'd every write: a restart keeps everything.
    AppendOnly,
}

/// A running private `redis-server`; stopped when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    persistence: Persistence,
    /// Serves TLS only (`rediss://`), with a CA of its own.
    tls: bool,
    /// More arguments (a replica's `--replicaof`), or a sentinel's config file.
    role: Role,
}

/// What a server is, besides its persistence.
#[derive(Debug, Clone, Copy)]
enum Role {
    Primary,
    /// A replica of the server on this port.
    Replica(u16),
    /// A sentinel watching the primary on this port as `mymaster`.
    Sentinel(u16),
    /// A node of a Redis Cluster (not yet given slots).
    ClusterNode,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A free TCP port on 127.0.0.1 (for a server a test starts).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port on 127.0.0.1")
}

impl RedisServer {
    /// Starts an in-memory server.
    pub fn start() -> Self {
        Self::start_with(Persistence::None)
    }

    /// Starts a server with the given persistence.
    pub fn start_with(persistence: Persistence) -> Self {
        Self::launch(persistence, false)
    }

    /// Starts a server that speaks TLS only, with a certificate for 127.0.0.1 signed by
    /// a CA made for it ([`RedisServer::ca_cert`]); needs the `openssl` command.
    pub fn start_tls() -> Self {
        Self::launch(Persistence::None, true)
    }

    /// Starts a replica of `primary`.
    pub fn start_replica_of(primary: &RedisServer) -> Self {
        Self::launch_as(Persistence::None, false, Role::Replica(primary.port))
    }

    fn launch(persistence: Persistence, tls: bool) -> Self {
        Self::launch_as(persistence, tls, Role::Primary)
    }

    fn launch_as(persistence: Persistence, tls: bool, role: Role) -> Self {
        Self::launch_with(persistence, tls, role, None)
    }

    /// `certificates`: a directory whose CA and server certificate this TLS server
    /// shares (a set whose members must trust each other); else it makes its own.
    fn launch_with(persistence: Persistence, tls: bool, role: Role, certificates: Option<&std::path::Path>) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("celerity-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir for redis");
        match (tls, certificates) {
            (false, _) => {}
            (true, None) => make_certificates(&dir),
            (true, Some(from)) => {
                for file in ["ca.crt", "server.crt", "server.key"] {
                    std::fs::copy(from.join(file), dir.join(file)).expect("copy a certificate");
                }
            }
        }
        // A port can be taken between our probe and the server's bind: try a few.
        for _ in 0..5 {
            let mut server = Self { child: None, port: free_port(), dir: dir.clone(), persistence, tls, role };
            if server.spawn() {
                return server;
            }
            // Not ours to delete: the next attempt uses the same directory.
            server.dir = PathBuf::new();
        }
        let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
        panic!("could not start redis-server (is it installed? apt-get install redis-server); its output:\n{log}");
    }

    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        if let Role::Sentinel(primary) = self.role {
            // A sentinel rewrites its own config file: it must be one of its own.
            let conf = self.dir.join("sentinel.conf");
            let file = |name: &str| self.dir.join(name).display().to_string();
            let listen = if self.tls {
                format!(
                    "port 0\ntls-port {port}\ntls-auth-clients no\ntls-replication yes\n\
                     tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n",
                    port = self.port,
                    cert = file("server.crt"),
                    key = file("server.key"),
                    ca = file("ca.crt"),
                )
            } else {
                format!("port {}\n", self.port)
            };
            let text = format!(
                "{listen}bind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor mymaster 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 5000\n\
                 sentinel parallel-syncs mymaster 1\n",
                dir = self.dir.display(),
            );
            std::fs::write(&conf, text).expect("write sentinel.conf");
            cmd.arg(&conf).arg("--sentinel");
        }
        if let Role::Replica(primary) = self.role {
            cmd.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        if matches!(self.role, Role::ClusterNode) {
            // Its node table lives in its own directory (`--dir`).
            cmd.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "2000"]);
        }
        if matches!(self.role, Role::Sentinel(_)) {
            cmd.args(["--loglevel", "warning"]);
        } else if self.tls {
            let file = |name: &str| self.dir.join(name).to_str().expect("utf-8 temp dir").to_owned();
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string(), "--tls-auth-clients", "no"])
                .args(["--tls-cert-file", &file("server.crt"), "--tls-key-file", &file("server.key")])
                .args(["--tls-ca-cert-file", &file("ca.crt")]);
            if matches!(self.role, Role::Replica(_) | Role::ClusterNode) {
                cmd.args(["--tls-replication", "yes"]);
            }
            if matches!(self.role, Role::ClusterNode) {
                cmd.args(["--tls-cluster", "yes"]);
            }
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        if !matches!(self.role, Role::Sentinel(_)) {
            cmd.args(["--bind", "127.0.0.1", "--save", ""])
                .args(["--dir", self.dir.to_str().expect("utf-8 temp dir")])
                .args(["--maxmemory-policy", "noeviction", "--loglevel", "warning"]);
        }
        cmd
            // Redis logs to stdout; the log is shown when the server does not come up.
            .stdout(Stdio::from(std::fs::File::create(self.dir.join("redis.log")).expect("redis log file")))
            .stderr(Stdio::null());
        match (&self.role, self.persistence) {
            (Role::Sentinel(_), _) => &mut cmd,
            (_, Persistence::None) => cmd.args(["--appendonly", "no"]),
            (_, Persistence::AppendOnly) => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
        };
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => panic!("cannot run redis-server: {e} (install it: apt-get install redis-server)"),
        };
        // A watchdog: if the test process dies without dropping us, the server goes too.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; kill {} 2>/dev/null",
                std::process::id(),
                child.id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if self.ping() {
                // Another test's server may hold the port (both probed it free at once):
                // then ours exits, and the answer came from theirs. Only ours will do.
                if self.answers_as_ours() {
                    return true;
                }
                self.kill();
                return false;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false; // exited: most likely the port was taken
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        false
    }

    /// True when the server on the port is the one this value started (by its pid).
    fn answers_as_ours(&self) -> bool {
        let Some(pid) = self.child.as_ref().map(std::process::Child::id) else { return false };
        let info = self.cli(&["INFO", "server"]);
        info.lines().any(|line| line.trim() == format!("process_id:{pid}"))
    }

    fn ping(&self) -> bool {
        if self.tls {
            return self.cli(&["PING"]) == "PONG";
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read(&mut buf).map(|n| buf[..n].starts_with(b"+PONG")).unwrap_or(false)
    }

    /// `redis://127.0.0.1:PORT/0`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The PEM file of the CA that signed a TLS server's certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server with SIGTERM (it saves an append-only file first) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "redis-server did not come back on port {}", self.port);
    }

    /// Freezes the server (SIGSTOP) until [`resume`](Self::resume): it neither answers
    /// nor replicates, as a stalled machine would.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args(["-STOP", &child.id().to_string()]).status();
        }
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
        }
    }

    /// Kills the server with SIGKILL, as a crash would (for failover tests).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `redis-cli -p PORT args..` and returns its output (for tests that act as
    /// an operator would).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        if self.tls {
            cmd.args(["--tls", "--cacert", self.ca_cert().to_str().expect("utf-8 temp dir")]);
        }
        let out = cmd.args(["-p", &self.port.to_string()]).args(args).output().expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A primary, a replica and three sentinels watching them as `mymaster` (quorum 2,
/// a primary unanswered for 1 s is down), each a private server; stopped when dropped.
#[derive(Debug)]
pub struct SentinelSet {
    /// The primary at the start (after a failover, a dead server or a replica).
    pub primary: RedisServer,
    /// Its replica at the start (after a failover, the primary).
    pub replica: RedisServer,
    sentinels: Vec<RedisServer>,
}

impl SentinelSet {
    /// Starts the five servers and waits until every sentinel knows the replica.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// The same, every server speaking TLS only, all with one certificate for 127.0.0.1
    /// signed by one CA ([`SentinelSet::ca_cert`]); needs the `openssl` command.
    pub fn start_tls() -> Self {
        Self::launch(true)
    }

    fn launch(tls: bool) -> Self {
        let primary = RedisServer::launch_with(Persistence::None, tls, Role::Primary, None);
        let certs = tls.then(|| primary.dir.clone());
        let member = |role| RedisServer::launch_with(Persistence::None, tls, role, certs.as_deref());
        let replica = member(Role::Replica(primary.port));
        let sentinels: Vec<RedisServer> = (0..3).map(|_| member(Role::Sentinel(primary.port))).collect();
        let set = Self { primary, replica, sentinels };
        let start = Instant::now();
        loop {
            let synced = set.replica.cli(&["INFO", "replication"]).contains("master_link_status:up");
            let known = set.sentinels.iter().all(|s| {
                let replicas = s.cli(&["SENTINEL", "replicas", "mymaster"]);
                // Each must know the other two, or a failover waits for them.
                let master = s.cli(&["SENTINEL", "master", "mymaster"]);
                let lines: Vec<&str> = master.lines().collect();
                let others = lines.windows(2).find(|w| w[0] == "num-other-sentinels").map(|w| w[1]);
                replicas.contains(&set.replica.port.to_string()) && others == Some("2")
            });
            if synced && known {
                return set;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the sentinel set never came together");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster/0`
    /// (`rediss+sentinel://…` for a TLS set).
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        let scheme = if self.primary.tls { "rediss" } else { "redis" };
        format!("{scheme}+sentinel://{}/mymaster/0", nodes.join(","))
    }

    /// The PEM file of the CA that signed every server's certificate (TLS sets).
    pub fn ca_cert(&self) -> PathBuf {
        self.primary.ca_cert()
    }

    /// The primary's port, as the sentinels tell it.
    pub fn primary_port(&self) -> Option<u16> {
        let answer = self.sentinels[0].cli(&["SENTINEL", "get-master-addr-by-name", "mymaster"]);
        answer.lines().nth(1).and_then(|port| port.trim().parse().ok())
    }

    /// Kills the primary (SIGKILL) and waits until the sentinels have promoted the
    /// replica and it takes writes.
    pub fn fail_over(&mut self) {
        self.primary.kill();
        self.wait_for_promotion();
    }

    /// Waits until the sentinels have promoted the replica and it takes writes (after
    /// the primary was killed or frozen).
    pub fn wait_for_promotion(&self) {
        let old = self.primary.port;
        let start = Instant::now();
        loop {
            let promoted = self.primary_port() == Some(self.replica.port);
            if promoted && self.replica.cli(&["ROLE"]).starts_with("master") {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no failover from {old} to {}", self.replica.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A Redis Cluster of private nodes: `primaries` primaries sharing the 16,384 slots,
/// each with `replicas` replicas, made with `redis-cli --cluster create`; stopped when
/// dropped.
#[derive(Debug)]
pub struct RedisCluster {
    /// Every node, primaries first (as `redis-cli --cluster create` was given them).
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, joins them and waits until every node says `cluster_state:ok`.
    pub fn start(primaries: usize, replicas: usize) -> Self {
        Self::launch(primaries, replicas, false)
    }

    /// The same, every node speaking TLS only (to clients, to its replicas and on the
    /// cluster bus), all with one certificate for 127.0.0.1 signed by one CA
    /// ([`RedisCluster::ca_cert`]); needs the `openssl` command.
    pub fn start_tls(primaries: usize, replicas: usize) -> Self {
        Self::launch(primaries, replicas, true)
    }

    fn launch(primaries: usize, replicas: usize, tls: bool) -> Self {
        let count = primaries * (1 + replicas);
        let first = RedisServer::launch_with(Persistence::None, tls, Role::ClusterNode, None);
        let certs = tls.then(|| first.dir.clone());
        let mut nodes = vec![first];
        nodes.extend(
            (1..count).map(|_| RedisServer::launch_with(Persistence::None, tls, Role::ClusterNode, certs.as_deref())),
        );
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut create = Command::new("redis-cli");
        if tls {
            create.args(["--tls", "--cacert", nodes[0].ca_cert().to_str().expect("utf-8 temp dir")]);
        }
        let out = create
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes };
        let start = Instant::now();
        while !cluster.nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
            assert!(start.elapsed() < Duration::from_secs(30), "the cluster never came to cluster_state:ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        // A replica that has not finished its first sync has no data to take over with:
        // it would never be promoted.
        let synced = |n: &RedisServer| {
            let info = n.cli(&["INFO", "replication"]);
            !info.contains("role:slave") || info.contains("master_link_status:up")
        };
        while !cluster.nodes.iter().all(synced) {
            assert!(start.elapsed() < Duration::from_secs(30), "the replicas never finished their first sync");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…` naming every node
    /// (`rediss+cluster://…` for a TLS cluster).
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let scheme = if self.nodes[0].tls { "rediss" } else { "redis" };
        format!("{scheme}+cluster://{}", nodes.join(","))
    }

    /// The PEM file of the CA that signed every node's certificate (TLS clusters).
    pub fn ca_cert(&self) -> PathBuf {
        self.nodes[0].ca_cert()
    }

    /// The primary that serves `key`'s slot now: the live node that answers a `GET` of
    /// it without a redirect (for tests that check keys slot by slot).
    pub fn owner_of(&self, key: &str) -> Option<&RedisServer> {
        self.owner_index(key).map(|i| &self.nodes[i])
    }

    fn owner_index(&self, key: &str) -> Option<usize> {
        self.nodes.iter().position(|n| {
            if n.child.is_none() {
                return false;
            }
            let answer = n.cli(&["GET", key]);
            !answer.starts_with("MOVED")
                && !answer.starts_with("ASK")
                && !answer.contains("CLUSTERDOWN")
                && !answer.starts_with("Could not connect")
        })
    }

    /// The live replica of `primary` (by its `INFO replication`).
    pub fn replica_of(&self, primary: &RedisServer) -> Option<&RedisServer> {
        let line = format!("master_port:{}", primary.port);
        self.nodes.iter().find(|n| n.child.is_some() && n.cli(&["INFO", "replication"]).contains(&line))
    }

    /// Waits until the replica of the primary serving `key`'s slot has every write that
    /// primary took so far (their replication offsets).
    pub fn wait_for_replica_of(&self, key: &str) {
        let offset = |node: &RedisServer| -> u64 {
            let info = node.cli(&["INFO", "replication"]);
            info.lines()
                .find_map(|l| l.strip_prefix("master_repl_offset:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let primary = self.owner_of(key).expect("a node serves the key");
        let replica = self.replica_of(primary).expect("the primary has a replica");
        let target = offset(primary);
        let start = Instant::now();
        while offset(replica) < target {
            assert!(start.elapsed() < Duration::from_secs(30), "the replica never caught up with its primary");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the primary serving `key`'s slot with SIGKILL, as a crash would, and waits
    /// until another node (its replica, promoted) serves the slot; the port killed.
    pub fn fail_over_owner_of(&mut self, key: &str) -> u16 {
        let at = self.owner_index(key).expect("a node serves the key");
        let port = self.nodes[at].port;
        self.nodes[at].kill();
        let start = Instant::now();
        while self.owner_index(key).is_none() {
            assert!(start.elapsed() < Duration::from_secs(30), "no replica took over the slot of {key}: {}", {
                let live = self.nodes.iter().find(|n| n.child.is_some()).expect("a live node");
                live.cli(&["CLUSTER", "NODES"])
            });
            std::thread::sleep(Duration::from_millis(100));
        }
        port
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (apt-get install openssl)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("write ext.cnf");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=celerity-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// A namespace of its own for one test (`celerity-test-<random>`).
pub fn namespace() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("celerity-test-{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}
