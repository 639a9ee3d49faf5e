//! Behaviour of the generated code: names, argument encoding, direct calls, queued runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use task_core::{App, Registry, Task, TaskContext, TaskResult, task};

#[task]
async fn add(x: i64, y: i64) -> TaskResult<i64> {
    Ok(x + y)
}

#[task(name = "custom.name", queue = "q1", max_retries = 7, time_limit = 9, result_ttl = 60)]
fn configured(text: String) -> TaskResult<usize> {
    Ok(text.len())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: f64,
    y: f64,
}

#[task]
async fn norm(ctx: TaskContext, p: Point, scale: Option<f64>) -> TaskResult<f64> {
    let _ = ctx.id();
    Ok((p.x * p.x + p.y * p.y).sqrt() * scale.unwrap_or(1.0))
}

#[task]
fn unit_task() {}

#[task(max_retries = 2, retry_backoff = 3, retry_jitter = false)]
async fn steady() -> TaskResult<()> {
    Ok(())
}

#[test]
fn the_default_name_is_the_module_path_and_the_function_name() {
    assert_eq!(add::NAME, "expand::add");
    assert_eq!(norm::NAME, "expand::norm");
    assert_eq!(<add::Task as Task>::NAME, add::NAME);
}

#[test]
fn options_are_carried_in_the_task_type() {
    assert_eq!(configured::NAME, "custom.name");
    let options = <configured::Task as Task>::OPTIONS;
    assert_eq!(options.queue, Some("q1"));
    assert_eq!(options.max_retries, Some(7));
    assert_eq!(options.time_limit, Some(Duration::from_secs(9)));
    assert_eq!(options.result_ttl, Some(Duration::from_secs(60)));
    let entry = Registry::global().get("custom.name").expect("registered");
    assert!(entry.is_blocking());
    assert!(entry.location().contains("expand.rs"), "{}", entry.location());
}

#[test]
fn args_are_a_messagepack_map_keyed_by_parameter_name() {
    let args = norm::Args { p: Point { x: 3.0, y: 4.0 }, scale: None };
    let bytes = rmp_serde::to_vec_named(&args).unwrap();
    #[derive(Deserialize)]
    struct Loose {
        p: Point,
        scale: Option<f64>,
    }
    let back: Loose = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back.p, Point { x: 3.0, y: 4.0 });
    assert_eq!(back.scale, None);
    assert_eq!(bytes[0], 0x82, "a map of two entries: the context is not an argument");
}

#[test]
fn every_task_of_this_file_is_registered() {
    let registry = Registry::global();
    for name in [add::NAME, configured::NAME, norm::NAME, unit_task::NAME] {
        assert!(registry.get(name).is_some(), "{name} missing");
    }
    registry.check().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_call_equals_the_queued_run() {
    let app = App::memory();
    let worker = app.worker().queues(["default", "q1"]).spawn();
    let wait = Duration::from_secs(10);
    let p = Point { x: 3.0, y: 4.0 };
    let direct = norm(TaskContext::detached("t"), p.clone(), Some(2.0)).await.unwrap();
    let queued = norm::delay(&app, p, Some(2.0)).await.unwrap().get(wait).await.unwrap();
    assert_eq!(direct, queued);
    assert_eq!(add(1, 2).await.unwrap(), add::delay(&app, 1, 2).await.unwrap().get(wait).await.unwrap());
    assert_eq!(configured::delay(&app, "four".into()).await.unwrap().get(wait).await.unwrap(), 4);
    unit_task::delay(&app).await.unwrap().get(wait).await.unwrap();
    assert_eq!(worker.shutdown().await.unwrap().succeeded, 4);
}

#[test]
fn backoff_options_fill_in_the_defaults() {
    let backoff = <steady::Task as Task>::OPTIONS.backoff.expect("set");
    assert_eq!(backoff.base, Duration::from_secs(3));
    assert_eq!(backoff.max, task_core::Backoff::DEFAULT.max);
    assert!(!backoff.jitter);
    assert_eq!(backoff.delay(1), Duration::from_secs(6), "no jitter: exactly base * 2^retries");
    assert_eq!(<add::Task as Task>::OPTIONS.backoff, None);
}
