//! The web process and a separate worker process on Redis and on a Redis Cluster; and
//! Redis stopped while the service runs.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use support::{call, follow};
use task_core::App;
use task_redis::RedisConfig;
use test_support::{RedisCluster, RedisServer};

async fn redis_app(server: &RedisServer, namespace: &str) -> App {
    app_at(&server.url(), namespace).await
}

async fn app_at(url: &str, namespace: &str) -> App {
    let config = RedisConfig::from_url(url).namespace(namespace).op_timeout(Duration::from_secs(1));
    task_redis::app_builder(config).await.unwrap().build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_process_sends_and_a_worker_process_builds() {
    let server = RedisServer::start();
    sends_and_builds(&server.url()).await;
}

/// The same on a private Redis Cluster of three primaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_process_and_a_worker_process_on_a_cluster() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0)).await.unwrap();
    sends_and_builds(&cluster.url()).await;
}

async fn sends_and_builds(url: &str) {
    let namespace = test_support::namespace();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_web"))
        .args(["worker", "-c", "4", "--no-banner", "--loglevel", "error"])
        .env("CELERITY_BROKER_URL", url)
        .env("CELERITY_REDIS_NAMESPACE", &namespace)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let router = celerity_web_example::router(app_at(url, &namespace).await);
    let (status, body) =
        call(&router, "POST", "/reports", Some(r#"{"title": "On Redis", "pages": 3, "page_ms": 50}"#)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let last = follow(&router, body["status_url"].as_str().unwrap()).await.pop().unwrap();
    assert_eq!(last["state"], "SUCCESS", "{last}");
    assert_eq!(last["result"]["title"], "On Redis");
    let _ = Command::new("kill").args(["-TERM", &worker.id().to_string()]).status();
    worker.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_stopped_the_service_answers_503_at_once() {
    let mut server = RedisServer::start();
    let router = celerity_web_example::router(redis_app(&server, &test_support::namespace()).await);
    server.stop();
    let start = Instant::now();
    let (status, body) = call(&router, "POST", "/reports", Some(r#"{"title": "x", "pages": 1}"#)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("the task queue is unavailable"), "{body}");
    let (status, _) = call(&router, "GET", "/reports/00000000-0000-4000-8000-000000000000", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(start.elapsed() < Duration::from_secs(10), "no hang: {:?}", start.elapsed());
}
