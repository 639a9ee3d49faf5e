//! Every `celerity` command, as a process, against a private Redis and a live worker.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use task_core::{TaskResult, task};
use task_redis::RedisConfig;
use test_support::{RedisCluster, RedisServer, SentinelSet};

#[task(name = "cli.add")]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

#[task(name = "cli.sleepy")]
async fn sleepy(ms: u64) -> TaskResult<u64> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

struct Env {
    url: String,
    namespace: String,
    /// The servers, stopped with the test.
    _servers: Servers,
}

#[allow(dead_code)] // held for their Drop
enum Servers {
    One(RedisServer),
    Sentinel(SentinelSet),
    Cluster(RedisCluster),
}

impl Env {
    /// A private Redis.
    fn redis() -> Self {
        let server = RedisServer::start();
        Self { url: server.url(), namespace: test_support::namespace(), _servers: Servers::One(server) }
    }

    /// A private primary, replica and Sentinels, reached through the Sentinels.
    fn sentinel() -> Self {
        let set = SentinelSet::start();
        Self { url: set.url(), namespace: test_support::namespace(), _servers: Servers::Sentinel(set) }
    }

    /// A private Redis Cluster of three primaries.
    fn cluster() -> Self {
        let cluster = RedisCluster::start(3, 0);
        Self { url: cluster.url(), namespace: test_support::namespace(), _servers: Servers::Cluster(cluster) }
    }

    fn celerity(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_celerity"))
            .args(args)
            .env("CELERITY_BROKER_URL", &self.url)
            .env("CELERITY_REDIS_NAMESPACE", &self.namespace)
            .env_remove("CELERITY_RESULT_BACKEND")
            .output()
            .expect("celerity runs")
    }

    /// Runs a command with --json; its exit code and parsed output.
    fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.celerity(&all);
        let text = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), value)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_does_what_its_help_says() {
    let env = Env::redis();
    let config = RedisConfig::from_url(env.url.as_str()).namespace(&env.namespace);
    let app = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
    let worker = app.worker().concurrency(2).spawn();

    // status and inspect registered: the worker announced itself.
    eventually("the worker shows in `status`", || env.json(&["status"]).1.as_array().is_some_and(|w| w.len() == 1))
        .await;
    let (code, workers) = env.json(&["status"]);
    assert_eq!(code, 0);
    assert_eq!(workers[0]["id"], worker.id().as_str());
    assert_eq!(workers[0]["pid"], std::process::id());
    assert_eq!(workers[0]["concurrency"], 2);
    let (_, registered) = env.json(&["inspect", "registered"]);
    assert!(registered["cli.add"].is_array(), "{registered}");
    let table = env.celerity(&["status"]);
    assert!(String::from_utf8_lossy(&table.stdout).starts_with("WORKER"), "a table for people");

    // call + result.
    let (code, sent) = env.json(&["call", "cli.add", "--args", r#"{"x": 2, "y": 3}"#]);
    assert_eq!(code, 0);
    let id = sent["id"].as_str().unwrap().to_owned();
    let (code, done) = env.json(&["result", &id, "--wait", "10"]);
    assert_eq!((code, done["state"].as_str(), done["result"].as_i64()), (0, Some("SUCCESS"), Some(5)), "{done}");
    let bad = env.celerity(&["call", "cli.add", "--args", "[1, 2]"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--args must be a JSON object"), "{}", stderr(&bad));
    let unknown = env.celerity(&["result", "00000000-0000-4000-8000-000000000000"]);
    assert_eq!(unknown.status.code(), Some(4));

    // inspect active + revoke --terminate.
    let (_, sent) = env.json(&["call", "cli.sleepy", "--args", r#"{"ms": 30000}"#]);
    let long = sent["id"].as_str().unwrap().to_owned();
    eventually("`inspect active` shows the running task", || {
        env.json(&["inspect", "active"]).1.as_array().is_some_and(|a| a.iter().any(|t| t["id"] == long.as_str()))
    })
    .await;
    let (code, _) = env.json(&["revoke", &long, "--terminate"]);
    assert_eq!(code, 0);
    let (code, revoked) = env.json(&["result", &long, "--wait", "10"]);
    assert_eq!((code, revoked["state"].as_str()), (1, Some("REVOKED")), "{revoked}");
    let (code, listed) = env.json(&["inspect", "revoked"]);
    assert_eq!(code, 0, "{listed}");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "only the revoked one: {listed}");
    assert_eq!((listed[0]["id"].as_str(), listed[0]["task"].as_str()), (Some(long.as_str()), Some("cli.sleepy")));
    assert!(listed[0]["reason"].as_str().is_some_and(|r| !r.is_empty()), "with its reason: {listed}");

    // inspect scheduled, queues, purge.
    env.json(&["call", "cli.add", "--args", r#"{"x": 1, "y": 1}"#, "--countdown", "600"]);
    let (_, scheduled) = env.json(&["inspect", "scheduled"]);
    assert_eq!(scheduled.as_array().map(Vec::len), Some(1), "{scheduled}");
    let (_, queues) = env.json(&["queues"]);
    let default = queues.as_array().unwrap().iter().find(|q| q["queue"] == "default").unwrap().clone();
    assert_eq!(default["scheduled"], 1);
    let refused = env.celerity(&["purge", "default"]);
    assert_eq!(refused.status.code(), Some(2), "no purge without --yes");
    assert!(stderr(&refused).contains("add --yes"), "{}", stderr(&refused));
    let (code, purged) = env.json(&["purge", "default", "--yes"]);
    assert_eq!((code, purged["purged"].as_u64()), (0, Some(1)));

    // dead letters: a task nobody runs is buried; list, retry, purge.
    let warned = env.celerity(&["call", "nobody.home"]);
    assert!(stderr(&warned).contains("no live worker runs `nobody.home`"), "{}", stderr(&warned));
    eventually("the unknown task reaches the dead letters", || {
        env.json(&["dead", "list"]).1.as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    let (_, dead) = env.json(&["dead", "list"]);
    assert!(dead[0]["reason"].as_str().unwrap().starts_with("unknown task `nobody.home`"), "{dead}");
    assert_eq!(dead[0]["task"], "nobody.home");
    let (code, retried) = env.json(&["dead", "retry"]);
    assert_eq!((code, retried["retried"].as_u64()), (0, Some(1)));
    eventually("buried again", || env.json(&["dead", "list"]).1.as_array().is_some_and(|d| !d.is_empty())).await;
    let dead_id = env.json(&["dead", "list"]).1[0]["id"].as_str().unwrap().to_owned();
    let (code, one) = env.json(&["dead", "retry", "--id", &dead_id]);
    assert_eq!((code, one["retried"].as_u64()), (0, Some(1)), "{one}");
    let missing = env.celerity(&["dead", "retry", "--id", "00000000-0000-4000-8000-000000000000"]);
    assert_eq!(missing.status.code(), Some(4), "{}", stderr(&missing));
    eventually("buried a third time", || env.json(&["dead", "list"]).1.as_array().is_some_and(|d| !d.is_empty())).await;
    assert_eq!(env.celerity(&["dead", "purge"]).status.code(), Some(2));
    let (code, gone) = env.json(&["dead", "purge", "--yes"]);
    assert_eq!((code, gone["purged"].as_u64()), (0, Some(1)));

    let (_, stats) = env.json(&["inspect", "stats"]);
    assert_eq!(stats["workers"], 1);

    // schedule: what a running scheduler announced.
    let (code, none) = env.json(&["schedule"]);
    assert_eq!((code, none.as_array().map(Vec::len)), (0, Some(0)));
    let beat =
        task_core::Beat::new()
            .entry("cli.every-hour", task_core::Schedule::every(Duration::from_secs(3600)), || add::signature(1, 1));
    let scheduler = beat.spawn(&app);
    eventually("`schedule` lists the entry", || env.json(&["schedule"]).1.as_array().is_some_and(|e| e.len() == 1))
        .await;
    let (_, entries) = env.json(&["schedule"]);
    assert_eq!(entries[0]["name"], "cli.every-hour");
    assert_eq!(entries[0]["task"], "cli.add");
    assert_eq!(entries[0]["schedule"], "every 1h");
    assert!(String::from_utf8_lossy(&env.celerity(&["schedule"]).stdout).starts_with("ENTRY"), "a table for people");
    scheduler.shutdown().await.unwrap();
    worker.shutdown().await.unwrap();
}

#[test]
fn help_and_errors_are_clear() {
    let help = Command::new(env!("CARGO_BIN_EXE_celerity")).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["status", "inspect", "queues", "purge", "call", "result", "revoke", "dead"] {
        assert!(text.contains(command), "`{command}` missing from --help:\n{text}");
    }
    let no_broker =
        Command::new(env!("CARGO_BIN_EXE_celerity")).arg("status").env_remove("CELERITY_BROKER_URL").output().unwrap();
    assert_eq!(no_broker.status.code(), Some(2));
    assert!(stderr(&no_broker).contains("no broker"), "{}", stderr(&no_broker));
    let mut server = RedisServer::start();
    server.stop();
    let down =
        Command::new(env!("CARGO_BIN_EXE_celerity")).args(["--broker", &server.url(), "queues"]).output().unwrap();
    assert_eq!(down.status.code(), Some(2));
    assert!(stderr(&down).contains("cannot connect the broker"), "{}", stderr(&down));
    // A Sentinel URL without its master's name: what is missing, and never the password.
    let bad = "redis+sentinel://:hunter2@127.0.0.1:1";
    let no_master = Command::new(env!("CARGO_BIN_EXE_celerity")).args(["--broker", bad, "status"]).output().unwrap();
    assert_eq!(no_master.status.code(), Some(2));
    let text = stderr(&no_master);
    assert!(text.contains("names no master") && !text.contains("hunter2"), "{text}");
}

/// The first minute: every reading command works on a Redis no worker has ever used, and
/// again once the last worker has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_before_the_first_worker_and_after_the_last() {
    first_minute(Env::redis()).await;
}

/// The same first minute through `redis+sentinel://`: the CLI finds the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_through_the_sentinels_too() {
    let env = tokio::task::spawn_blocking(Env::sentinel).await.unwrap();
    assert!(env.url.starts_with("redis+sentinel://"), "{}", env.url);
    first_minute(env).await;
}

/// The same first minute on a Redis Cluster: queues, workers and records on nodes of
/// their own slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_on_a_cluster_too() {
    let env = tokio::task::spawn_blocking(Env::cluster).await.unwrap();
    assert!(env.url.starts_with("redis+cluster://"), "{}", env.url);
    first_minute(env).await;
}

async fn first_minute(env: Env) {
    let reads: [&[&str]; 12] = [
        &["status"],
        &["inspect", "active"],
        &["inspect", "scheduled"],
        &["inspect", "reserved", "--timeout", "0.2"],
        &["inspect", "revoked"],
        &["inspect", "ping", "--timeout", "0.2"],
        &["inspect", "registered"],
        &["inspect", "stats"],
        &["queues"],
        &["schedule"],
        &["dead", "list"],
        &["dead", "retry"],
    ];
    let check = |when: &str| {
        for args in reads {
            for json in [false, true] {
                let mut all = if json { vec!["--json"] } else { vec![] };
                all.extend_from_slice(args);
                let out = env.celerity(&all);
                assert_eq!(out.status.code(), Some(0), "`celerity {}` {when}: {}", all.join(" "), stderr(&out));
            }
        }
        let (_, workers) = env.json(&["status"]);
        assert_eq!(workers.as_array().map(Vec::len), Some(0), "no live worker {when}: {workers}");
    };
    check("before any worker started");

    let config = RedisConfig::from_url(env.url.as_str()).namespace(&env.namespace);
    let app = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
    let worker = app.worker().concurrency(1).spawn();
    eventually("the worker shows in `status`", || env.json(&["status"]).1.as_array().is_some_and(|w| w.len() == 1))
        .await;
    worker.shutdown().await.unwrap();
    check("after the last worker stopped");
}

#[task(name = "cli.media", queue = "media")]
async fn media(name: String) -> TaskResult<String> {
    Ok(name)
}

/// `celerity call` without `--queue` sends a task where a program that links it would:
/// its own queue (`#[task(queue = "media")]`), as the live workers that run it say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_without_a_queue_sends_a_task_to_its_own() {
    let env = Env::redis();
    let config = RedisConfig::from_url(env.url.as_str()).namespace(&env.namespace);
    let app = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
    let worker = app.worker().queues(["default", "media"]).spawn();
    eventually("the worker shows in `status`", || env.json(&["status"]).1.as_array().is_some_and(|w| w.len() == 1))
        .await;
    let (code, sent) = env.json(&["call", "cli.media", "--args", r#"{"name": "cat.png"}"#]);
    assert_eq!((code, sent["queue"].as_str()), (0, Some("media")), "{sent}");
    let id = sent["id"].as_str().unwrap().to_owned();
    let (code, done) = env.json(&["result", &id, "--wait", "10"]);
    assert_eq!((code, done["result"].as_str()), (0, Some("cat.png")), "{done}");
    // An explicit --queue still wins; an unknown task goes to the default queue.
    let (_, sent) = env.json(&["call", "cli.media", "--queue", "default", "--args", r#"{"name": "x"}"#]);
    assert_eq!(sent["queue"], "default");
    let (_, sent) = env.json(&["call", "nobody.knows"]);
    assert_eq!(sent["queue"], "default");
    worker.shutdown().await.unwrap();
}

/// Hostile names and ids on the command line: a clear answer with the usual exit codes,
/// never a panic (exit 101), and JSON that stays JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_ids_get_clear_answers() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::redis();
    let huge = "x".repeat(100 * 1024);
    let hostile = ["q'\"<script>alert(1)</script>", "../../etc/passwd", "a b\tc\nd", huge.as_str(), "{}[]%00"];
    for name in hostile {
        for args in [
            vec!["result", name],
            vec!["revoke", name],
            vec!["purge", name, "--yes"],
            vec!["dead", "retry", "--id", name],
            vec!["dead", "purge", "--queue", name, "--yes"],
            vec!["call", name, "--args", "{}"],
            vec!["call", "t", "--queue", name, "--args", "{}"],
            vec!["call", "t", "--args", name],
        ] {
            for json in [false, true] {
                let mut all = if json { vec!["--json"] } else { vec![] };
                all.extend_from_slice(&args);
                let out = env.celerity(&all);
                let code = out.status.code();
                let shown = &all.join(" ")[..all.join(" ").len().min(80)];
                assert!(matches!(code, Some(0 | 1 | 2 | 4)), "`celerity {shown}`: exit {code:?}: {}", stderr(&out));
                if json && code == Some(0) {
                    let text = String::from_utf8_lossy(&out.stdout);
                    assert!(serde_json::from_str::<Value>(text.trim()).is_ok(), "`{shown}` printed no JSON: {text}");
                }
            }
        }
    }
    // Bytes that are not UTF-8, as a shell may pass them.
    let out = Command::new(env!("CARGO_BIN_EXE_celerity"))
        .arg("result")
        .arg(std::ffi::OsStr::from_bytes(b"\xff\xfe"))
        .env("CELERITY_BROKER_URL", env.url.as_str())
        .env("CELERITY_REDIS_NAMESPACE", &env.namespace)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `celerity pause` holds a queue's messages under a live worker (sends go on), `queues`
/// says so, and `celerity resume` lets the worker run them: nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_waits_for_resume_with_nothing_lost() {
    let env = Env::redis();
    let config = RedisConfig::from_url(env.url.as_str()).namespace(&env.namespace);
    let app = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
    let worker = app.worker().spawn();
    let (code, paused) = env.json(&["pause", "default"]);
    assert_eq!((code, paused["paused"].as_bool()), (0, Some(true)), "{paused}");
    let sent: Vec<_> = futures_sent(&app, 20).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, queues) = env.json(&["queues"]);
    let default = queues.as_array().unwrap().iter().find(|q| q["queue"] == "default").unwrap().clone();
    assert_eq!((default["paused"].as_bool(), default["ready"].as_u64()), (Some(true), Some(20)), "{default}");
    let table = String::from_utf8_lossy(&env.celerity(&["queues"]).stdout).into_owned();
    assert!(table.contains("PAUSED") && table.contains("paused"), "{table}");
    assert_eq!(env.json(&["resume", "default"]).0, 0);
    for (i, r) in sent.iter().enumerate() {
        assert_eq!(r.get(Duration::from_secs(10)).await.unwrap(), i as i64 + 1, "nothing lost");
    }
    worker.shutdown().await.unwrap();
}

async fn futures_sent(app: &task_core::App, n: i64) -> Vec<task_core::AsyncResult<i64>> {
    app.send_batch((0..n).map(|i| add::signature(i, 1))).await.unwrap()
}

/// Remote control against two live workers: `inspect ping` has one answer from each,
/// `control shutdown` stops both, gracefully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_workers_answer_ping_and_stop_on_control_shutdown() {
    let env = Env::redis();
    let mut workers = Vec::new();
    for name in ["w1@%h", "w2@%h"] {
        let config = RedisConfig::from_url(env.url.as_str()).namespace(&env.namespace);
        let app = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
        workers.push(app.worker().name(name).spawn());
    }
    eventually("both workers show in `status`", || env.json(&["status"]).1.as_array().is_some_and(|w| w.len() == 2))
        .await;
    let (code, answers) = env.json(&["inspect", "ping"]);
    assert_eq!(code, 0, "{answers}");
    let mut ids: Vec<&str> = answers.as_array().unwrap().iter().map(|a| a["worker"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut expected: Vec<&str> = workers.iter().map(|w| w.id().as_str()).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "one answer from each: {answers}");
    assert!(
        answers.as_array().unwrap().iter().all(|a| a["ok"] == "pong" && a["name"].as_str().unwrap().starts_with('w'))
    );
    // The pool and the queues change while the workers run (fetches in flight dropped).
    let before: Vec<u64> =
        env.json(&["status"]).1.as_array().unwrap().iter().map(|w| w["concurrency"].as_u64().unwrap()).collect();
    let (code, grown) = env.json(&["control", "pool-grow", "2"]);
    assert_eq!(code, 0, "{grown}");
    eventually("both pools grew by 2", || {
        let now: Vec<u64> =
            env.json(&["status"]).1.as_array().unwrap().iter().map(|w| w["concurrency"].as_u64().unwrap()).collect();
        now.len() == 2 && now.iter().sum::<u64>() == before.iter().sum::<u64>() + 4
    })
    .await;
    assert_eq!(env.json(&["control", "add-consumer", "extra"]).0, 0);
    eventually("both take from extra", || {
        env.json(&["status"])
            .1
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["queues"].as_array().unwrap().iter().any(|q| q == "extra"))
    })
    .await;
    let (_, sent) = env.json(&["call", "cli.add", "--queue", "extra", "--args", r#"{"x": 1, "y": 1}"#]);
    let (code, done) = env.json(&["result", sent["id"].as_str().unwrap(), "--wait", "10"]);
    assert_eq!((code, done["result"].as_i64()), (0, Some(2)), "{done}");
    let (code, reserved) = env.json(&["inspect", "reserved"]);
    assert_eq!(code, 0, "{reserved}");
    assert!(reserved.as_array().unwrap().iter().all(|a| a["reserved"] == serde_json::json!([])), "{reserved}");
    // Task options change on both, and a refusal says so with exit 1.
    let (code, limited) = env.json(&["control", "rate-limit", "cli.add", "100/s"]);
    assert_eq!(code, 0, "{limited}");
    assert!(limited.as_array().unwrap().iter().all(|a| a["ok"].is_string()), "{limited}");
    assert_eq!(env.json(&["control", "time-limit", "cli.add", "1", "2"]).0, 0);
    let (code, refused) = env.json(&["control", "rate-limit", "cli.nothing", "1/s"]);
    assert_eq!(code, 1, "{refused}");
    assert!(refused.as_array().unwrap().iter().all(|a| a["error"].as_str().unwrap().contains("unknown task")));
    let (code, stopped) = env.json(&["control", "shutdown"]);
    assert_eq!(code, 0, "{stopped}");
    assert!(stopped.as_array().unwrap().iter().all(|a| a["ok"] == "shutting down"), "{stopped}");
    for worker in workers {
        let start = Instant::now();
        while !worker.is_finished() {
            assert!(start.elapsed() < Duration::from_secs(20), "a worker did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worker.shutdown().await.unwrap();
    }
    let (code, _) = env.json(&["inspect", "ping", "--timeout", "0.3"]);
    assert_eq!(code, 0, "no live worker: nothing to wait for");
}
