//! Calling the router in-process, as an HTTP client would.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// One request: the status and the JSON (or text) body.
pub(crate) async fn call(router: &Router, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

/// Polls the status URL until the report is done; returns every body seen.
pub(crate) async fn follow(router: &Router, status_url: &str) -> Vec<Value> {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let (status, body) = call(router, "GET", status_url, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let state = body["state"].as_str().unwrap().to_owned();
        seen.push(body);
        if matches!(state.as_str(), "SUCCESS" | "FAILURE" | "REVOKED") {
            return seen;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never finished: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
