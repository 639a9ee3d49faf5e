//! What the process tests share: a private Redis (or Redis Cluster), a namespace, a
//! journal file, and the demo binaries started against them.
#![allow(dead_code)] // each test crate uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use task_core::{App, AsyncResult};
use task_redis::RedisConfig;
use test_support::{Persistence, RedisCluster, RedisServer};

pub(crate) const WORKER: &str = env!("CARGO_BIN_EXE_demo-worker");
pub(crate) const PRODUCER: &str = env!("CARGO_BIN_EXE_demo-producer");

/// A test's Redis, namespace and journal file.
pub(crate) struct Setup {
    server: Option<RedisServer>,
    pub(crate) cluster: Option<RedisCluster>,
    pub(crate) url: String,
    pub(crate) namespace: String,
    pub(crate) journal: PathBuf,
    /// `CELERITY_REDIS_PARTITIONS` for every process, and the app's config.
    partitions: Option<String>,
    /// More variables for every process started.
    env: Vec<(String, String)>,
}

impl Setup {
    pub(crate) fn new(persistence: Persistence) -> Self {
        let server = RedisServer::start_with(persistence);
        let namespace = test_support::namespace();
        let journal = std::env::temp_dir().join(format!("{namespace}.journal"));
        Self {
            url: server.url(),
            server: Some(server),
            cluster: None,
            namespace,
            journal,
            partitions: None,
            env: Vec::new(),
        }
    }

    /// On a private Redis Cluster of `primaries` primaries with `replicas` replicas each.
    pub(crate) fn on_cluster(primaries: usize, replicas: usize) -> Self {
        let cluster = RedisCluster::start(primaries, replicas);
        let namespace = test_support::namespace();
        let journal = std::env::temp_dir().join(format!("{namespace}.journal"));
        Self {
            url: cluster.url(),
            server: None,
            cluster: Some(cluster),
            namespace,
            journal,
            partitions: None,
            env: Vec::new(),
        }
    }

    /// `name=value` for every process started.
    pub(crate) fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Partitioned queues (`emails=8,…`) for every process started, and the app.
    pub(crate) fn with_partitions(mut self, setting: &str) -> Self {
        self.partitions = Some(setting.to_owned());
        self
    }

    /// The one Redis (not on a cluster).
    pub(crate) fn server(&mut self) -> &mut RedisServer {
        self.server.as_mut().expect("a setup of one Redis")
    }

    pub(crate) fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env("CELERITY_BROKER_URL", &self.url)
            .env("CELERITY_REDIS_NAMESPACE", &self.namespace)
            .env("CELERITY_JOURNAL", &self.journal)
            .env("CELERITY_DEMO_TICK_SECS", "1")
            .env_remove("CELERITY_RESULT_BACKEND");
        match &self.partitions {
            Some(setting) => cmd.env(task_redis::ENV_PARTITIONS, setting),
            None => cmd.env_remove(task_redis::ENV_PARTITIONS),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    pub(crate) fn worker(&self, args: &[&str]) -> Child {
        self.command(WORKER)
            .args(["worker", "--no-banner", "--loglevel"])
            // `CELERITY_TEST_LOGLEVEL=info` shows what the workers do.
            .arg(std::env::var("CELERITY_TEST_LOGLEVEL").unwrap_or_else(|_| "error".into()))
            .args(args)
            .stdout(if std::env::var_os("CELERITY_TEST_LOGLEVEL").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .expect("demo-worker starts")
    }

    pub(crate) async fn app(&self) -> App {
        let mut config = RedisConfig::from_url(&self.url).namespace(&self.namespace);
        let declared = self.partitions.iter().flat_map(|s| s.split(',')).filter_map(|p| p.split_once('='));
        for (queue, n) in declared {
            config = config.partitions(queue.trim(), n.trim().parse().expect("a partition count"));
        }
        task_redis::app_builder(config).await.unwrap().build().await.unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.journal);
    }
}

/// Every completed run: (tag, pid of the worker that ran it).
pub(crate) fn journal_lines(path: &Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(t, p)| (t.to_owned(), p.parse().unwrap())))
        .collect()
}

pub(crate) async fn wait_for_journal(path: &Path, lines: usize) {
    let start = Instant::now();
    while journal_lines(path).len() < lines {
        assert!(start.elapsed() < Duration::from_secs(60), "the journal never reached {lines} lines");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for every result, riding out a Redis outage; returns the values.
/// Stops a process as a supervisor would (SIGTERM), and waits for it.
pub(crate) fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// Every result's value, waiting up to two minutes for each (through failovers and
/// restarts, whose errors it prints and waits on).
pub(crate) async fn results(all: &[AsyncResult<String>]) -> Vec<String> {
    let mut values = Vec::with_capacity(all.len());
    for r in all {
        let start = Instant::now();
        loop {
            match r.get(Duration::from_secs(10)).await {
                Ok(v) => break values.push(v),
                Err(e) if start.elapsed() < Duration::from_secs(120) => {
                    eprintln!("waiting for {}: {e}", r.id());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("task {} never finished: {e}", r.id()),
            }
        }
    }
    values
}

/// Worker processes, killed (SIGKILL) if the test fails before it stops them.
pub(crate) struct Workers(pub(crate) Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
