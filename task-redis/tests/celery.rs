//! Celery interop against the real Celery (the pinned venv scripts/test.sh makes, named
//! by CELERITY_PYTHON): what Python's `delay` / `apply_async` / `send_task` put on Redis
//! reads into its parts and arguments; what Celerity writes as a task's state in
//! Celery's result format, Python's `AsyncResult.get()` returns (a value, or raises with
//! the Rust error's text), including a `get` that was already waiting.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;
use task_redis::celery::{self, ResultMeta};
use test_support::RedisServer;

/// The Python with Celery installed.
fn python() -> String {
    std::env::var("CELERITY_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/celery-venv/bin/python");
        assert!(
            std::path::Path::new(venv).exists(),
            "no Python with Celery: run scripts/test.sh (it makes target/celery-venv), or set CELERITY_PYTHON"
        );
        venv.to_owned()
    })
}

/// The Celery app of the Python snippets, on `url`, then `code`.
fn celery_script(url: &str, code: &str) -> String {
    format!(
        "from celery import Celery\n\
         app = Celery('proj', broker='{url}', backend='{url}')\n\
         @app.task(name='proj.tasks.add')\n\
         def add(x, y):\n    return x + y\n\
         {code}\n"
    )
}

fn run_python(script: &str) -> Output {
    let out = Command::new(python()).arg("-c").arg(script).stderr(Stdio::piped()).output().expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn what_python_celery_sends_reads_into_its_task_and_arguments() {
    let server = RedisServer::start();
    let url = server.url();
    run_python(&celery_script(
        &url,
        "add.delay(2, 3)\n\
         add.apply_async((1,), {'y': 2}, countdown=30, time_limit=10)\n\
         app.send_task('proj.tasks.add', args=[4, 5], serializer='msgpack')",
    ));
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
    let out = run_python(&celery_script(
        &url,
        "import json\n\
         from celery.result import AsyncResult\n\
         print(json.dumps(AsyncResult('r-ok', app=app).get(timeout=10)))\n\
         try:\n    AsyncResult('r-bad', app=app).get(timeout=10)\n\
         except Exception as e:\n    print(type(e).__name__, '|', e)\n\
         print(AsyncResult('r-running', app=app).state)\n\
         print(AsyncResult('r-late', app=app).get(timeout=20))",
    ));
    late.join().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines, [r#"{"pages": 3, "title": "Q4"}"#, "TaskError | division by zero", "STARTED", "42"], "{printed}");
}
