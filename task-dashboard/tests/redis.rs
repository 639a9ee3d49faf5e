//! The dashboard on a real Redis and on a Redis Cluster: the first minute (no worker
//! ever started) and after the last worker stopped, every page and every API answers.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use task_dashboard::{DashboardConfig, router};
use task_redis::RedisConfig;
use test_support::{RedisCluster, RedisServer};
use tower::ServiceExt;

async fn get(r: &Router, uri: &str) -> (StatusCode, String) {
    let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let response = r.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

const PAGES: [&str; 16] = [
    "/",
    "/workers",
    "/dead",
    "/schedule",
    "/events",
    "/tasks",
    "/api/overview",
    "/api/workers",
    "/api/queues",
    "/api/dead",
    "/api/schedule",
    "/api/events",
    "/api/tasks",
    "/api/throughput",
    "/metrics",
    "/healthz",
];

async fn every_page_answers(dash: &Router, when: &str) {
    for page in PAGES {
        let (status, body) = get(dash, page).await;
        assert_eq!(status, StatusCode::OK, "{page} {when}: {body}");
    }
    let (status, _) = get(dash, "/api/tasks/00000000-0000-4000-8000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown task {when}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_answers_before_the_first_worker_and_after_the_last() {
    let server = RedisServer::start();
    first_minute(server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_answers_on_a_cluster_too() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0)).await.unwrap();
    first_minute(cluster.url()).await;
}

async fn first_minute(url: String) {
    let config = RedisConfig::from_url(url).namespace(test_support::namespace());
    let app = task_redis::app_builder(config).await.unwrap().build().await.unwrap();
    let dash = router(app.clone(), DashboardConfig::default());
    every_page_answers(&dash, "before any worker started").await;

    let worker = app.worker().concurrency(1).spawn();
    let start = Instant::now();
    while !get(&dash, "/api/workers").await.1.contains(worker.id().as_str()) {
        assert!(start.elapsed() < Duration::from_secs(10), "the worker never showed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await.unwrap();
    every_page_answers(&dash, "after the last worker stopped").await;
}
