//! Celery interop against the real Celery (the pinned venv scripts/test.sh makes, named
//! by CELERITY_PYTHON): what Python's `delay` / `apply_async` / `send_task` put on Redis
//! reads into its parts and arguments; what Celerity writes as a task's state in
//! Celery's result format, Python's `AsyncResult.get()` returns (a value, or raises with
//! the Rust error's text), including a `get` that was already waiting.

use std::time::Duration;

use serde_json::json;
use task_redis::celery::{self, ResultMeta};
use test_support::RedisServer;

/// Python's `add`, as the snippets' Celery app declares it.
const ADD: &str = "@app.task(name='proj.tasks.add')\ndef add(x, y):\n    return x + y\n";

/// `code` run by the real Celery after its app on `url` and `add`; what it printed.
fn celery(url: &str, code: &str) -> String {
    test_support::run_celery(url, &format!("{ADD}{code}"))
}

/// [`celery`] off the async runtime (Python blocks while it waits for Rust workers).
async fn in_python(url: &str, code: &str) -> String {
    let (url, code) = (url.to_owned(), code.to_owned());
    tokio::task::spawn_blocking(move || celery(&url, &code)).await.unwrap()
}

/// The configuration of a Rust side serving the Celery queue `celery` at `url`, in a
/// namespace of its own.
fn celery_config(url: &str) -> task_redis::RedisConfig {
    task_redis::RedisConfig::from_url(url).namespace(test_support::namespace()).celery_queues(["celery"])
}

/// An app of [`celery_config`].
async fn celery_app(url: &str) -> task_core::App {
    task_redis::app_builder(celery_config(url)).await.unwrap().build().await.unwrap()
}

#[test]
fn what_python_celery_sends_reads_into_its_task_and_arguments() {
    let server = RedisServer::start();
    let url = server.url();
    celery(
        &url,
        "add.delay(2, 3)\n\
         add.apply_async((1,), {'y': 2}, countdown=30, time_limit=10)\n\
         app.send_task('proj.tasks.add', args=[4, 5], serializer='msgpack')",
    );
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let raw: Vec<Vec<u8>> = redis::cmd("LRANGE").arg("celery").arg(0).arg(-1).query(&mut con).unwrap();
    // kombu LPUSHes: the oldest is last.
    let messages: Vec<celery::CeleryMessage> = raw.iter().rev().map(|r| celery::decode(r).unwrap()).collect();
    assert_eq!(messages.len(), 3);
    let params = ["x", "y"];
    let named = |m: &celery::CeleryMessage| {
        celery::args_by_name(&m.task, &params, m.args.clone(), m.kwargs.clone()).map(serde_json::Value::Object)
    };
    assert!(messages.iter().all(|m| m.task == "proj.tasks.add"));
    assert_eq!(named(&messages[0]).unwrap(), json!({"x": 2, "y": 3}));
    assert_eq!(named(&messages[1]).unwrap(), json!({"x": 1, "y": 2}));
    assert!(messages[1].eta.is_some() && messages[1].time_limit.0 == Some(10.0));
    assert_eq!(named(&messages[2]).unwrap(), json!({"x": 4, "y": 5}), "the msgpack one");
}

/// Writes `meta` as Celery's Redis backend does: SETEX then PUBLISH on the key.
fn store(url: &str, id: &str, meta: &ResultMeta) {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let json = meta.to_json(id, Some("2026-12-01T17:45:00.123456+00:00"));
    let key = celery::result_key(id);
    let _: () = redis::pipe()
        .cmd("SETEX")
        .arg(&key)
        .arg(86_400)
        .arg(&json)
        .cmd("PUBLISH")
        .arg(&key)
        .arg(&json)
        .query(&mut con)
        .unwrap();
}

#[test]
fn python_reads_the_results_celerity_writes() {
    let server = RedisServer::start();
    let url = server.url();
    store(&url, "r-ok", &ResultMeta::Success(json!({"pages": 3, "title": "Q4"})));
    store(&url, "r-bad", &ResultMeta::Failure { kind: "TaskError".into(), message: "division by zero".into() });
    store(&url, "r-running", &ResultMeta::Started);
    // A get that waits already when the result comes: woken by the PUBLISH.
    let late = {
        let url = url.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            store(&url, "r-late", &ResultMeta::Success(json!(42)));
        })
    };
    let out = celery(
        &url,
        "import json\n\
         from celery.result import AsyncResult\n\
         print(json.dumps(AsyncResult('r-ok', app=app).get(timeout=10)))\n\
         try:\n    AsyncResult('r-bad', app=app).get(timeout=10)\n\
         except Exception as e:\n    print(type(e).__name__, '|', e)\n\
         print(AsyncResult('r-running', app=app).state)\n\
         print(AsyncResult('r-late', app=app).get(timeout=20))",
    );
    late.join().unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, [r#"{"pages": 3, "title": "Q4"}"#, "TaskError | division by zero", "STARTED", "42"], "{out}");
}

#[task_core::task(name = "proj.tasks.add")]
async fn add(x: i64, y: i64) -> task_core::TaskResult<i64> {
    Ok(x + y)
}

#[task_core::task(name = "proj.tasks.divide")]
async fn divide(x: i64, y: i64) -> task_core::TaskResult<i64> {
    if y == 0 {
        return Err(task_core::TaskError::fatal("division by zero"));
    }
    Ok(x / y)
}

/// The story end to end: Python's `delay` and `apply_async` (positional and keyword
/// arguments), a Rust worker serving the `celery` queue runs the Rust tasks registered
/// under the Celery names, and Python's `get()` returns the values, or raises with the
/// Rust error's text; a task no Rust task answers to, calls with too few or too many
/// arguments, and a chain into a group holding a chain (not served yet) end in the dead
/// letters, their failures readable from Python too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_delay_runs_on_a_rust_worker_and_python_gets_the_result() {
    let server = RedisServer::start();
    let url = server.url();
    let app = celery_app(&url).await;
    let worker = app.worker().queues(["celery"]).concurrency(2).spawn();
    let script = "@app.task(name='proj.tasks.divide')\n\
         def divide(x, y):\n    return x // y\n\
         @app.task(name='proj.tasks.nobody')\n\
         def nobody():\n    return 0\n\
         print(add.delay(2, 3).get(timeout=20))\n\
         print(add.apply_async((40,), {'y': 2}).get(timeout=20))\n\
         print(divide.delay(9, 3).get(timeout=20))\n\
         try:\n    divide.delay(1, 0).get(timeout=20)\n\
         except Exception as e:\n    print(type(e).__name__, '|', e)\n\
         try:\n    nobody.delay().get(timeout=20)\n\
         except Exception as e:\n    print(type(e).__name__, '|', e)\n\
         try:\n    app.send_task('proj.tasks.add', args=[1]).get(timeout=20)\n\
         except Exception as e:\n    print(type(e).__name__, '|', e)\n\
         try:\n    app.send_task('proj.tasks.add', args=[1, 2, 3]).get(timeout=20)\n\
         except Exception as e:\n    print(type(e).__name__, '|', e)\n\
         from celery import chain, group\n\
         try:\n    chain(add.s(1, 2), group(chain(add.s(1), add.s(2)), add.s(3))).delay().parent.get(timeout=20)\n\
         except Exception as e:\n    print(type(e).__name__, '|', e)";
    let printed = in_python(&url, script).await;
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(&lines[..4], ["5", "42", "3", "TaskError | division by zero"], "{printed}");
    assert!(lines[4].starts_with("TaskError |") && lines[4].contains("proj.tasks.nobody"), "{printed}");
    assert!(
        lines[5].starts_with("TaskError |") && lines[5].contains("missing required argument: 'y'"),
        "a missing argument: {printed}"
    );
    assert!(lines[6].contains("takes 2 positional arguments but 3 were given"), "too many: {printed}");
    assert!(lines[7].contains("nested in a group or chord) is not supported"), "refused, not half run: {printed}");
    let dead = app.broker().inspect().unwrap().dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 4, "the unknown task's, the bad calls' and the chain's messages: {dead:?}");
    worker.shutdown().await.unwrap();
}

/// `countdown` and `expires` from Python: the countdown waits in Redis (the queue's
/// delayed set, not a worker's memory), and the task then runs; one whose countdown
/// outlasts its expiry is revoked, and Python raises Celery's own `TaskRevokedError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_countdown_waits_in_redis_and_an_expired_task_is_revoked() {
    let server = RedisServer::start();
    let url = server.url();
    let namespace = test_support::namespace();
    let config = task_redis::RedisConfig::from_url(&url).namespace(&namespace).celery_queues(["celery"]);
    let app = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
    let worker = app.worker().queues(["celery"]).concurrency(2).spawn();
    // Python and the checks block: on a thread of their own, the worker runs meanwhile.
    let out = tokio::task::spawn_blocking(move || {
        let sent = celery(
            &url,
            "print(add.apply_async((1, 2), countdown=3).id)\n\
             print(add.apply_async((5, 5), countdown=3, expires=1).id)",
        );
        let ids: Vec<String> = sent.split_whitespace().map(str::to_owned).collect();
        let delayed = format!("{namespace}:{{celery}}:delayed");
        let mut con = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
        let start = std::time::Instant::now();
        loop {
            let waiting: usize = redis::cmd("ZCARD").arg(&delayed).query(&mut con).unwrap();
            if waiting == 2 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(2), "the countdowns wait in the delayed set ({waiting})");
            std::thread::sleep(Duration::from_millis(20));
        }
        celery(
            &url,
            &format!(
                "from celery.result import AsyncResult\n\
                 from celery.exceptions import TaskRevokedError\n\
                 print(AsyncResult('{}', app=app).get(timeout=20))\n\
                 try:\n    AsyncResult('{}', app=app).get(timeout=20)\n\
                 except TaskRevokedError as e:\n    print('revoked')",
                ids[0], ids[1]
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(out.lines().collect::<Vec<_>>(), ["3", "revoked"], "{out}");
    worker.shutdown().await.unwrap();
}

/// `add.delay(i, 0)` for i in 0..3, from Python, to the `celery` queue at `url`.
async fn three_sent_by_python(url: &str) {
    in_python(url, "for i in range(3):\n    add.delay(i, 0)").await;
}

/// A consumer that dies holding Celery messages: they go back to the front of kombu's
/// list in their order (the oldest taken first again, before what was sent since), for
/// Celery and Celerity alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_celery_messages_go_back_in_order() {
    use task_core::broker::Broker;
    let server = RedisServer::start();
    let url = server.url();
    three_sent_by_python(&url).await;
    let mut con = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let before: Vec<Vec<u8>> = redis::cmd("LRANGE").arg("celery").arg(0).arg(-1).query_async(&mut con).await.unwrap();
    let broker = task_redis::RedisBroker::connect(celery_config(&url)).await.unwrap();
    let consumer = task_core::ConsumerId::new();
    let taken = broker.fetch(&consumer, &["celery".to_owned()], 10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(taken.len(), 3);
    let left: usize = redis::cmd("LLEN").arg("celery").query_async(&mut con).await.unwrap();
    assert_eq!(left, 0, "taken into the consumer's own list");
    // Sent meanwhile: it stays behind the recovered ones (kombu takes from the right).
    let _: () = redis::cmd("LPUSH").arg("celery").arg("{\"late\": 1}").query_async(&mut con).await.unwrap();
    broker.recover_consumer(&consumer).await.unwrap();
    let after: Vec<Vec<u8>> = redis::cmd("LRANGE").arg("celery").arg(0).arg(-1).query_async(&mut con).await.unwrap();
    let expected: Vec<Vec<u8>> = std::iter::once(b"{\"late\": 1}".to_vec()).chain(before).collect();
    assert_eq!(after, expected, "back at the front as Celery wrote them, in their order");
}

/// A Celery queue's messages count in its depths, a paused one is not served, and a
/// queue cannot be both partitioned and a Celery queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_celery_queue_has_depths_pauses_and_refuses_partitions() {
    use task_core::broker::Broker;
    let server = RedisServer::start();
    let url = server.url();
    three_sent_by_python(&url).await;
    let namespace = test_support::namespace();
    let config = task_redis::RedisConfig::from_url(&url).namespace(&namespace).celery_queues(["celery"]);
    let broker = task_redis::RedisBroker::connect(config.clone()).await.unwrap();
    let inspect = broker.inspect().unwrap();
    assert_eq!(inspect.queue_stats("celery").await.unwrap().ready, 3, "kombu's list counts as ready");
    let queues = ["celery".to_owned()];
    broker.pausing().unwrap().pause("celery").await.unwrap();
    let consumer = task_core::ConsumerId::new();
    broker.heartbeat(&consumer, Duration::from_secs(60)).await.unwrap();
    assert!(broker.fetch(&consumer, &queues, 10, Duration::from_millis(300)).await.unwrap().is_empty(), "paused");
    broker.pausing().unwrap().resume("celery").await.unwrap();
    let taken = broker.fetch(&consumer, &queues, 2, Duration::from_secs(1)).await.unwrap();
    assert_eq!(taken.len(), 2);
    let stats = inspect.queue_stats("celery").await.unwrap();
    assert_eq!((stats.ready, stats.in_flight), (1, 2), "held ones in flight");

    let both = config.partitions("celery", 4);
    let e = task_redis::RedisBroker::connect(both).await.unwrap_err().to_string();
    assert!(e.contains("both partitioned and a Celery queue"), "{e}");
}

/// Rust sends, a stock Python `celery worker` runs (`scripts/celery/pyproj.py`), and the
/// Rust caller reads the results from Celery's backend: positional and keyword
/// arguments, another queue, an exception (its Python class and text), a countdown
/// (pending until it is due), an expired task (revoked by Celery) and a wait that ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sends_tasks_a_python_worker_runs_and_reads_their_results() {
    let server = RedisServer::start();
    let url = server.url();
    let python = test_support::CeleryWorker::start(&url, &["celery", "reports"]);
    let client = celery::Client::connect(&url).await.unwrap();
    let wait = Duration::from_secs(60);
    let log = || python.log();

    let sum = client.send_task("proj.tasks.add", (2, 3), ()).await.unwrap();
    assert_eq!(sum.get::<i64>(wait).await.unwrap_or_else(|e| panic!("{e}: {}", log())), 5);
    let call = celery::Call::new("proj.tasks.shout").args(("hi",)).unwrap().kwarg("times", 2).unwrap().queue("reports");
    let shout = client.send(call).await.unwrap();
    assert_eq!(shout.get::<String>(wait).await.unwrap(), "HI!HI!");
    match client.send_task("proj.tasks.fail", ["bad input"], ()).await.unwrap().get::<()>(wait).await {
        Err(celery::ClientError::Failed { kind, message }) => {
            assert_eq!((kind.as_str(), message.as_str()), ("ValueError", "bad input"));
        }
        other => panic!("a Python exception: {other:?}"),
    }

    let later = celery::Call::new("proj.tasks.add").args((1, 1)).unwrap().countdown(Duration::from_secs(2));
    let later = client.send(later).await.unwrap();
    assert_eq!(later.state().await.unwrap(), None, "pending until it is due");
    assert_eq!(later.get::<i64>(wait).await.unwrap(), 2);
    let expired = celery::Call::new("proj.tasks.add")
        .args((1, 1))
        .unwrap()
        .expires(chrono::Utc::now() - chrono::Duration::seconds(5));
    match client.send(expired).await.unwrap().get::<i64>(wait).await {
        Err(celery::ClientError::Revoked(_)) => {}
        other => panic!("an expired task is revoked by Celery: {other:?}"),
    }
    let nobody = client.result("no-such-task");
    assert!(matches!(nobody.get::<i64>(Duration::from_millis(300)).await, Err(celery::ClientError::TimedOut(_))));
}

#[task_core::task(name = "proj.tasks.flaky", max_retries = 5)]
async fn flaky(ctx: task_core::TaskContext, x: i64) -> task_core::TaskResult<i64> {
    if ctx.retries() < 2 {
        return Err(ctx.retry(Duration::ZERO));
    }
    Ok(x * 10 + i64::from(ctx.retries()))
}

/// Runs on Rust workers only by retrying: whoever runs it next.
#[task_core::task(name = "proj.tasks.whoami", max_retries = 1000000)]
async fn whoami(ctx: task_core::TaskContext) -> task_core::TaskResult<serde_json::Value> {
    Err(ctx.retry(Duration::ZERO))
}

/// A Rust-side retry goes back in Celery's format, as Celery's own `retry()` sends it:
/// Python's `get()` waits through the retries for the value, and a retry left in the
/// queue when the Rust worker stops is run by a stock Python worker, which reads its
/// retries from the headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_retry_is_a_celery_message_a_python_worker_runs() {
    let server = RedisServer::start();
    let url = server.url();
    let app = celery_app(&url).await;
    let worker = app.worker().queues(["celery"]).spawn();
    let got = in_python(&url, "print(app.send_task('proj.tasks.flaky', args=[4]).get(timeout=30))").await;
    assert_eq!(got.trim(), "42", "two retries, then the value");

    let client = celery::Client::connect(&url).await.unwrap();
    let sent = client.send_task("proj.tasks.whoami", (), ()).await.unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !matches!(sent.state().await.unwrap(), Some(ResultMeta::Retry { .. })) {
        assert!(std::time::Instant::now() < until, "no RETRY stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await.unwrap();
    let python = test_support::CeleryWorker::start(&url, &["celery"]);
    let by = sent
        .get::<serde_json::Value>(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", python.log()));
    assert_eq!(by["by"], "python", "{by}");
    assert!(by["retries"].as_u64().is_some_and(|n| n >= 1), "the retries Rust counted: {by}");
}

/// `celery inspect` answered by a Rust worker (`ping`, `registered`, `active`, `stats`,
/// each in Celery's reply format, named by the worker's node name), and
/// `app.control.revoke(id)` from Python made durable: the task, due later, ends REVOKED
/// and Python's `get()` raises Celery's `TaskRevokedError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_inspect_gets_rust_workers_answers_and_python_revokes() {
    let server = RedisServer::start();
    let url = server.url();
    let app = celery_app(&url).await;
    let worker = app.worker().queues(["celery"]).name("rusty@%h").concurrency(3).spawn();
    let inspect = |what: &'static str| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            test_support::celery_command(&url, &["inspect", what, "--timeout", "2", "--json"])
        })
    };
    let (ok, ping) = inspect("ping").await.unwrap();
    assert!(ok, "{ping}");
    let node = format!("rusty@{}", task_core::host::hostname());
    let ping: serde_json::Value = serde_json::from_str(ping.trim()).unwrap_or_else(|e| panic!("{e}: {ping}"));
    assert_eq!(ping, json!({node.clone(): {"ok": "pong"}}));
    let (_, registered) = inspect("registered").await.unwrap();
    let registered: serde_json::Value = serde_json::from_str(registered.trim()).unwrap();
    assert!(registered[&node].as_array().unwrap().contains(&json!("proj.tasks.add")), "{registered}");
    let (_, active) = inspect("active").await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(active.trim()).unwrap(), json!({node.clone(): []}));
    let client = celery::Client::connect(&url).await.unwrap();
    let napping = client.send_task("proj.tasks.nap", (60_000,), ()).await.unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !matches!(napping.state().await.unwrap(), Some(ResultMeta::Started)) {
        assert!(std::time::Instant::now() < until, "the nap never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, active) = inspect("active").await.unwrap();
    let active: serde_json::Value = serde_json::from_str(active.trim()).unwrap();
    let running = &active[&node][0];
    assert_eq!(
        (running["id"].as_str(), running["name"].as_str()),
        (Some(napping.id()), Some("proj.tasks.nap")),
        "{active}"
    );
    assert_eq!(running["kwargs"], json!({"ms": 60_000}), "{active}");
    app.revoke(&<task_core::TaskId as std::str::FromStr>::from_str(napping.id()).unwrap(), true).await.unwrap();
    let (_, stats) = inspect("stats").await.unwrap();
    let stats: serde_json::Value = serde_json::from_str(stats.trim()).unwrap();
    assert_eq!(stats[&node]["pool"]["max-concurrency"], 3, "{stats}");

    let printed = in_python(
        &url,
        "r = add.apply_async((1, 2), countdown=3)\n\
             app.control.revoke(r.id)\n\
             try:\n    r.get(timeout=20)\n\
             except Exception as e:\n    print(type(e).__name__, r.id)",
    )
    .await;
    let (kind, id) = printed.trim().split_once(' ').unwrap();
    assert_eq!(kind, "TaskRevokedError", "{printed}");
    let meta = app.backend().get(&<task_core::TaskId as std::str::FromStr>::from_str(id).unwrap()).await.unwrap();
    assert_eq!(meta.map(|m| m.state), Some(task_core::TaskState::Revoked), "revoked on Celerity's side too");
    worker.shutdown().await.unwrap();
}

/// A task revoked while it runs (no terminate) runs on, and its record stays REVOKED
/// (revokes are final): its Celery copy must say so too, not the SUCCESS its run ended
/// with, or Python and Celerity would disagree for good. Also a state the record refuses
/// when it is stored without a worker (the path of a cluster, where a result is stored
/// before its ack): the copy follows the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_revoked_while_it_runs_stays_revoked_in_celery_format() {
    use std::str::FromStr;
    use task_core::{TaskId, TaskMeta, TaskState};
    let server = RedisServer::start();
    let url = server.url();
    let app = celery_app(&url).await;
    let worker = app.worker().queues(["celery"]).spawn();
    let client = celery::Client::connect(&url).await.unwrap();
    let napping = client.send_task("proj.tasks.nap", (1_500,), ()).await.unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !matches!(napping.state().await.unwrap(), Some(ResultMeta::Started)) {
        assert!(std::time::Instant::now() < until, "the nap never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = TaskId::from_str(napping.id()).unwrap();
    app.revoke(&id, false).await.unwrap();
    // The nap runs on and ends 1.5 s in; the copy says STARTED until then.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let copy = loop {
        match napping.state().await.unwrap() {
            Some(ResultMeta::Started) => {}
            other => break other,
        }
        assert!(std::time::Instant::now() < until, "the nap never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(matches!(copy, Some(ResultMeta::Revoked { .. })), "the Celery copy: {copy:?}");
    assert_eq!(app.backend().get(&id).await.unwrap().map(|m| m.state), Some(TaskState::Revoked));
    // Not a moment later either (the run's end was its last word).
    worker.shutdown().await.unwrap();
    assert!(matches!(napping.state().await.unwrap(), Some(ResultMeta::Revoked { .. })));

    let id = TaskId::new();
    app.revoke(&id, false).await.unwrap();
    let mut late = TaskMeta::state(TaskState::Success);
    late.result = Some(rmp_serde::to_vec(&3).unwrap());
    assert!(app.backend().store(&id, late, Duration::from_secs(60)).await.is_err(), "refused: final");
    let copy = client.result(id.as_str()).state().await.unwrap();
    assert!(matches!(copy, Some(ResultMeta::Revoked { .. })), "{copy:?}");
}

/// A worker taken for dead whose late end is fenced (another worker's run ended the
/// task) wrote its Celery copy first: the copy is written over with the record's final
/// state, not left telling Python the end Celerity refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_end_leaves_the_celery_copy_as_the_record_says() {
    use task_core::{TaskId, TaskMeta, TaskState};
    let server = RedisServer::start();
    let url = server.url();
    let app = celery_app(&url).await;
    let client = celery::Client::connect(&url).await.unwrap();
    let ttl = Duration::from_secs(60);
    let id = TaskId::new();
    let by = |state: TaskState, worker: &str, result: Option<i64>| {
        let mut meta = TaskMeta::state(state);
        meta.worker = Some(worker.to_owned());
        meta.task = Some("proj.tasks.add".to_owned());
        meta.result = result.map(|r| rmp_serde::to_vec(&r).unwrap());
        meta
    };
    app.backend().store(&id, by(TaskState::Started, "w-new", None), ttl).await.unwrap();
    app.backend().store(&id, by(TaskState::Success, "w-new", Some(3)), ttl).await.unwrap();
    let late = app.backend().store(&id, by(TaskState::Success, "w-old", Some(4)), ttl).await;
    assert!(late.is_err(), "fenced: another worker's task");
    let record = app.backend().get(&id).await.unwrap().unwrap();
    assert_eq!(record.result, Some(rmp_serde::to_vec(&3).unwrap()), "the record keeps the end of its owner");
    let copy = client.result(id.as_str()).state().await.unwrap();
    assert!(matches!(&copy, Some(ResultMeta::Success(v)) if *v == json!(3)), "the Celery copy: {copy:?}");
}

/// Canvas built in Python and carried on by Rust workers: a chain of Rust tasks, a chain
/// through a Python task (on a queue a stock Python worker serves) and back, a link, a
/// link_error sent to Python when the Rust task fails, a failed chain that Python's
/// `get()` sees failed instead of waiting, a group, a chain through a task that reports
/// progress (progress is not its end), and a link of a task whose result is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_canvas_runs_on_rust_and_python_workers() {
    let server = RedisServer::start();
    let url = server.url();
    let app = celery_app(&url).await;
    let worker = app.worker().queues(["celery"]).spawn();
    let python = test_support::CeleryWorker::start(&url, &["py"]);
    let script = "from celery import chain, group\n\
         @app.task(name='proj.tasks.divide')\n\
         def divide(x, y):\n    return x // y\n\
         @app.task(name='proj.tasks.py_double')\n\
         def py_double(x):\n    return x * 2\n\
         print(chain(add.s(1, 2), add.s(10), add.s(100)).delay().get(timeout=30))\n\
         print(chain(add.s(1, 2), py_double.s().set(queue='py'), add.s(100)).delay().get(timeout=30))\n\
         link = add.s(10).freeze()\n\
         add.apply_async((2, 3), link=add.s(10).set(task_id=link.id))\n\
         print(app.AsyncResult(link.id).get(timeout=30))\n\
         err = py_double.si(21).set(queue='py')\n\
         err.freeze()\n\
         divide.apply_async((1, 0), link_error=err)\n\
         print(app.AsyncResult(err.id).get(timeout=30))\n\
         try:\n    chain(divide.s(1, 0), add.s(1)).delay().get(timeout=30)\n\
         except Exception as e:\n    print(type(e).__name__, '|', e)\n\
         print(group(add.s(1, 1), add.s(2, 2)).delay().get(timeout=30))\n\
         @app.task(name='proj.tasks.steps')\n\
         def steps(n):\n    return 0\n\
         print(chain(steps.s(3), add.s(1)).delay().get(timeout=30))\n\
         quiet = add.s(10).freeze()\n\
         add.apply_async((1, 2), ignore_result=True, link=add.s(10).set(task_id=quiet.id))\n\
         print(app.AsyncResult(quiet.id).get(timeout=30))";
    let printed = in_python(&url, script).await;
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines,
        ["113", "106", "15", "42", "TaskError | division by zero", "[2, 4]", "31", "13"],
        "{printed}\n{}",
        python.log()
    );
    worker.shutdown().await.unwrap();
}

#[task_core::task(name = "proj.tasks.picky")]
async fn picky(n: i64) -> task_core::TaskResult<i64> {
    if n <= 0 {
        return Err(task_core::TaskError::fatal("ValueError: n must be positive"));
    }
    Ok(n)
}

#[task_core::task(name = "proj.tasks.steps")]
async fn steps(ctx: task_core::TaskContext, n: i64) -> task_core::TaskResult<i64> {
    for step in 1..=n {
        ctx.set_progress(&(step, n)).await.map_err(|e| task_core::TaskError::new(e.to_string()))?;
    }
    Ok(n * 10)
}

#[task_core::task(name = "proj.tasks.tsum")]
async fn tsum(values: Vec<i64>) -> task_core::TaskResult<i64> {
    Ok(values.iter().sum())
}

/// Chords built in Python, joined the way Celery's Redis backend joins them: Rust
/// members and a Rust body; a chain into a group and on into a chord (which Celery makes
/// of a group followed by a task), applied by the Rust worker, and on after the chord;
/// a chain that starts with a group (a chord whose body is a chain), and its failure
/// reaching the chain's last task; Rust members and a Python body; a Python member and a Rust
/// member (each side runs its own join on the same keys) and a Rust body; and a failed
/// member: Python's `get()` raises its error (Celery raises a parent's first), and the
/// body is stored failed with Celery's `ChordError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_chords_join_across_rust_and_python_workers() {
    let server = RedisServer::start();
    let url = server.url();
    let app = celery_app(&url).await;
    let worker = app.worker().queues(["celery"]).spawn();
    let python = test_support::CeleryWorker::start(&url, &["py"]);
    let script = "from celery import chord\n\
         @app.task(name='proj.tasks.divide')\n\
         def divide(x, y):\n    return x // y\n\
         @app.task(name='proj.tasks.tsum')\n\
         def tsum(values):\n    return sum(values)\n\
         @app.task(name='proj.tasks.py_double')\n\
         def py_double(x):\n    return x * 2\n\
         @app.task(name='proj.tasks.py_total')\n\
         def py_total(values):\n    return 0\n\
         print(chord([add.s(1, 1), add.s(2, 2), add.s(3, 3)], tsum.s()).delay().get(timeout=30))\n\
         from celery import chain, group\n\
         print(chain(add.s(1, 1), group(add.s(10), add.s(20)), tsum.s()).delay().get(timeout=30))\n\
         print(chain(add.s(1, 1), group(add.s(10), add.s(20))).delay().get(timeout=30))\n\
         print(chain(add.s(1, 1), group(add.s(10), add.s(20)), tsum.s(), add.s(100)).delay().get(timeout=30))\n\
         try:\n    chain(divide.s(1, 0), group(add.s(1), add.s(2)), tsum.s()).delay().get(timeout=30)\n\
         except Exception as e:\n    print(type(e).__name__, '|', e)\n\
         print(chord([add.s(1, 1), add.s(2, 2)], py_total.s().set(queue='py')).delay().get(timeout=30))\n\
         print(chord([add.s(1, 1), py_double.s(5).set(queue='py')], tsum.s()).delay().get(timeout=30))\n\
         print(chain(group(add.s(1, 1), add.s(2, 2)), tsum.s(), add.s(100)).delay().get(timeout=30))\n\
         import time\n\
         after = chain(group(divide.s(1, 0), add.s(1, 1)), tsum.s(), add.s(1)).delay()\n\
         deadline = time.time() + 30\n\
         while after.state != 'FAILURE' and time.time() < deadline:\n    time.sleep(0.05)\n\
         print(type(after.result).__name__)\n\
         failed = chord([add.s(1, 1), divide.s(1, 0)], tsum.s()).delay()\n\
         try:\n    failed.get(timeout=30)\n\
         except Exception as e:\n    print(type(e).__name__, '|', e)\n\
         import time\n\
         while failed.state != 'FAILURE':\n    time.sleep(0.05)\n\
         print(type(failed.result).__name__, '|', failed.result)";
    let printed = in_python(&url, script).await;
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines[..10],
        [
            "12",
            "34",
            "[12, 22]",
            "134",
            "TaskError | division by zero",
            "{'total': 6, 'by': 'python'}",
            "12",
            "106",
            "ChordError",
            "TaskError | division by zero"
        ],
        "{printed}\n{}",
        python.log()
    );
    assert!(
        lines[10].starts_with("ChordError |") && lines[10].contains("division by zero"),
        "the body failed: {printed}"
    );
    worker.shutdown().await.unwrap();
}

/// A stock Flower sees a Rust worker: in its events (online, heartbeats, its tasks
/// received, started and succeeded, with their names and results) and in its
/// inspection (`registered`, `stats`, … over the pidbox).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flower_lists_the_rust_worker_and_its_tasks() {
    let server = RedisServer::start();
    let url = server.url();
    let u = url.clone();
    let flower = tokio::task::spawn_blocking(move || test_support::Flower::start(&u)).await.unwrap();
    let app = celery_app(&url).await;
    let worker = app.worker().queues(["celery"]).name("rusty@%h").spawn();
    let node = format!("rusty@{}", task_core::host::hostname());
    let ids =
        in_python(&url, "for i in range(3):\n    r = add.delay(i, 10)\n    r.get(timeout=30)\n    print(r.id)").await;
    let ids: Vec<&str> = ids.lines().collect();
    let json = |path: &str| flower.get(path).map(|body| serde_json::from_str::<serde_json::Value>(&body).unwrap());
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let (workers, tasks) = loop {
        let workers = json("/workers?json=1").unwrap_or_default();
        let tasks = json("/api/tasks").unwrap_or_default();
        let listed = workers["data"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["hostname"] == node.as_str() && w["worker-online"] == 1));
        let done = ids.iter().all(|id| tasks[id]["state"] == "SUCCESS");
        if listed && done {
            break (workers, tasks);
        }
        assert!(std::time::Instant::now() < until, "Flower shows {workers} and {tasks}\n{}", flower.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rusty = workers["data"].as_array().unwrap().iter().find(|w| w["hostname"] == node.as_str()).unwrap().clone();
    assert_eq!(rusty["status"], true, "alive by its heartbeats: {rusty}");
    assert_eq!(rusty["worker-online"], 1, "it said it is online: {rusty}");
    let first = &tasks[ids[0]];
    assert_eq!(
        (first["name"].as_str(), first["worker"].as_str(), first["result"].as_str()),
        (Some("proj.tasks.add"), Some(node.as_str()), Some("10")),
        "{first}"
    );
    // Flower's own first inspection (sent at its start, before the worker was up) may
    // still be the one a refresh joins: asked again until the worker's answers are in.
    let inspected = tokio::task::spawn_blocking(move || {
        loop {
            let inspected =
                flower.get("/api/workers?refresh=1").map(|b| serde_json::from_str::<serde_json::Value>(&b).unwrap());
            let registered = inspected.as_ref().map(|i| i[&node]["registered"].clone()).unwrap_or_default();
            if registered.as_array().is_some_and(|r| r.contains(&json!("proj.tasks.add"))) {
                break inspected.unwrap_or_default();
            }
            assert!(std::time::Instant::now() < until, "Flower's inspection: {inspected:?}\n{}", flower.log());
            std::thread::sleep(Duration::from_millis(300));
        }
    })
    .await
    .unwrap();
    let stats = inspected.as_object().and_then(|o| o.values().next()).map(|w| w["stats"].clone()).unwrap_or_default();
    assert_eq!(stats["pool"]["implementation"], "celerity", "{inspected}");
    worker.shutdown().await.unwrap();
}

#[task_core::task(name = "proj.tasks.nap")]
async fn nap(ms: u64) -> task_core::TaskResult<String> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok("rust".into())
}

/// A Python worker and a Rust worker share one Celery queue: each takes messages from
/// kombu's list (BRPOP there, one fetch script here), every task runs once, and both
/// took part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_rust_workers_share_one_queue() {
    let server = RedisServer::start();
    let url = server.url();
    let app = celery_app(&url).await;
    let worker = app.worker().queues(["celery"]).concurrency(2).spawn();
    let python = test_support::CeleryWorker::start(&url, &["celery"]);
    let printed = in_python(
        &url,
        "@app.task(name='proj.tasks.nap')\n\
             def nap(ms):\n    return 'python'\n\
             results = [nap.delay(30) for _ in range(60)]\n\
             by = [r.get(timeout=60) for r in results]\n\
             print(len(by), by.count('python'), by.count('rust'))",
    )
    .await;
    let counts: Vec<usize> = printed.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts[0], 60, "{printed}");
    assert!(counts[1] > 0 && counts[2] > 0, "both took part: {printed}\n{}", python.log());
    let rust_runs = worker.shutdown().await.unwrap().succeeded;
    // Celery logs each run: "Task proj.tasks.nap[ID] succeeded in 0.03s: 'python'".
    let python_runs = python.log().matches("succeeded in").count();
    assert_eq!(
        (rust_runs, python_runs),
        (u64::try_from(counts[2]).unwrap(), counts[1]),
        "each ran once, where its result came from"
    );
}

/// Celery's `time_limit` from Python stops a Rust task that runs over it (Python reads
/// the failure), `ignore_result=True` leaves nothing in Celery's result store, and a
/// Rust error naming a Python built-in exception is raised in Python as that class.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_celery_time_limit_stops_the_task_and_ignore_result_stores_nothing() {
    let server = RedisServer::start();
    let url = server.url();
    let app = celery_app(&url).await;
    let worker = app.worker().queues(["celery"]).spawn();
    let printed = in_python(
        &url,
        "@app.task(name='proj.tasks.nap')\n\
             def nap(ms):\n    return 'python'\n\
             try:\n    nap.apply_async((60000,), time_limit=1).get(timeout=30)\n\
             except Exception as e:\n    print(type(e).__name__, '|', e)\n\
             quiet = add.apply_async((1, 2), ignore_result=True)\n\
             print(add.delay(3, 4).get(timeout=30))\n\
             print(quiet.id)\n\
             try:\n    app.send_task('proj.tasks.picky', args=[0]).get(timeout=30)\n\
             except ValueError as e:\n    print('ValueError |', e)",
    )
    .await;
    let lines: Vec<&str> = printed.lines().collect();
    assert!(lines[0].starts_with("TaskError |") && lines[0].contains("time limit"), "{printed}");
    assert_eq!(lines[1], "7");
    assert_eq!(lines[3], "ValueError | n must be positive", "Python's own ValueError: {printed}");
    // Shut down after its runs are over (a message not yet started would go back to
    // kombu's list: none did, so the quiet one ran).
    let mut con = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    worker.shutdown().await.unwrap();
    let left: usize = redis::cmd("LLEN").arg("celery").query_async(&mut con).await.unwrap();
    assert_eq!(left, 0, "every message ran");
    let stored: Option<String> =
        redis::cmd("GET").arg(celery::result_key(lines[2])).query_async(&mut con).await.unwrap();
    assert_eq!(stored, None, "ignore_result: nothing in Celery's result store");
}

/// A Celery message whose workers keep dying holding it (one that kills them, say) does
/// not come back forever: after `max_deliveries` deaths it goes to the queue's dead
/// letters with the reason, as Celerity's envelope of it (the tools read it), and is
/// handed to the caller to end its task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_celery_message_that_outlives_its_workers_goes_to_the_dead_letters() {
    use task_core::broker::Broker;
    let server = RedisServer::start();
    let url = server.url();
    in_python(&url, "add.delay(2, 3)").await;
    let config = celery_config(&url).max_deliveries(2);
    let broker = task_redis::RedisBroker::connect(config).await.unwrap();
    let queues = ["celery".to_owned()];
    let first = task_core::ConsumerId::new();
    assert_eq!(broker.fetch(&first, &queues, 10, Duration::from_secs(1)).await.unwrap().len(), 1);
    let recovery = broker.recover_consumer(&first).await.unwrap();
    assert_eq!((recovery.moved, recovery.buried.len()), (1, 0), "back to kombu's list after one death");
    let second = task_core::ConsumerId::new();
    assert_eq!(broker.fetch(&second, &queues, 10, Duration::from_secs(1)).await.unwrap().len(), 1);
    let recovery = broker.recover_consumer(&second).await.unwrap();
    assert_eq!(recovery.buried.len(), 1, "buried after the second");
    assert!(recovery.buried[0].reason.contains("delivered 2 times"), "{:?}", recovery.buried[0].reason);
    let dead = broker.inspect().unwrap().dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let envelope = task_core::Envelope::decode(&dead[0].payload).expect("Celerity's envelope of it");
    assert_eq!(envelope.task, "proj.tasks.add");
    let mut con = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let left: usize = redis::cmd("LLEN").arg("celery").query_async(&mut con).await.unwrap();
    assert_eq!(left, 0, "not in kombu's list any more");
    assert!(broker.fetch(&second, &queues, 10, Duration::from_millis(200)).await.unwrap().is_empty());
    // A worker that stops cleanly holding one is no death: it goes back, not to the dead.
    in_python(&url, "add.delay(4, 5)").await;
    for _ in 0..3 {
        let leaving = task_core::ConsumerId::new();
        assert_eq!(broker.fetch(&leaving, &queues, 10, Duration::from_secs(1)).await.unwrap().len(), 1);
        broker.deregister(&leaving).await.unwrap();
    }
    let left: usize = redis::cmd("LLEN").arg("celery").query_async(&mut con).await.unwrap();
    assert_eq!((left, broker.inspect().unwrap().dead_letters(10).await.unwrap().len()), (1, 1));
}

/// A Celery message given back (its worker died, or stopped) returns to kombu's list of
/// its priority, where Celery put it, not to the main list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_back_celery_message_keeps_its_priority_list() {
    use task_core::broker::Broker;
    let server = RedisServer::start();
    let url = server.url();
    in_python(&url, "add.apply_async((1, 1), priority=5)\nadd.delay(2, 2)").await;
    let broker = task_redis::RedisBroker::connect(celery_config(&url)).await.unwrap();
    let mut con = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let lengths = |con: &mut redis::aio::MultiplexedConnection| {
        let mut con = con.clone();
        async move {
            let main: usize = redis::cmd("LLEN").arg("celery").query_async(&mut con).await.unwrap();
            let step3: usize = redis::cmd("LLEN").arg("celery\x06\x163").query_async(&mut con).await.unwrap();
            (main, step3)
        }
    };
    assert_eq!(lengths(&mut con).await, (1, 1), "where Celery put them");
    for stops_cleanly in [false, true] {
        let consumer = task_core::ConsumerId::new();
        let taken = broker.fetch(&consumer, &["celery".to_owned()], 10, Duration::from_secs(1)).await.unwrap();
        assert_eq!((taken.len(), lengths(&mut con).await), (2, (0, 0)));
        if stops_cleanly {
            broker.deregister(&consumer).await.unwrap();
        } else {
            broker.recover_consumer(&consumer).await.unwrap();
        }
        assert_eq!(lengths(&mut con).await, (1, 1), "each back in its own list (clean stop: {stops_cleanly})");
    }
}
