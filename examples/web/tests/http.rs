//! Every route, including the bad inputs, in the all-in-one mode (memory:// and an
//! embedded worker).

mod support;

use axum::http::StatusCode;
use support::{call, follow};
use task_core::App;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_accepted_at_once_and_its_progress_and_result_follow() {
    let app = App::memory();
    let worker = app.worker().spawn();
    let router = celerity_web_example::router(app);

    let started = std::time::Instant::now();
    let (status, body) = call(&router, "POST", "/reports", Some(r#"{"title": "Q3", "pages": 5, "page_ms": 60}"#)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(started.elapsed() < std::time::Duration::from_millis(250), "the handler must not wait for the work");
    let url = body["status_url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("/reports/{}", body["id"].as_str().unwrap()));

    let seen = follow(&router, &url).await;
    let last = seen.last().unwrap();
    assert_eq!(last["state"], "SUCCESS");
    assert_eq!(last["result"]["title"], "Q3");
    assert_eq!(last["result"]["pages"], 5);
    assert_eq!(last["progress"]["done"], 5);
    assert!(
        seen.iter().any(|b| b["state"] == "PROGRESS" && b["progress"]["done"].as_u64() < Some(5)),
        "progress was visible: {seen:?}"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_report_shows_its_error() {
    let app = App::memory();
    let worker = app.worker().spawn();
    let router = celerity_web_example::router(app);
    let (_, body) =
        call(&router, "POST", "/reports", Some(r#"{"title": "fail please", "pages": 1, "page_ms": 1}"#)).await;
    let last = follow(&router, body["status_url"].as_str().unwrap()).await.pop().unwrap();
    assert_eq!(last["state"], "FAILURE");
    assert!(last["error"].as_str().unwrap().contains("printer is on fire"), "{last}");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_inputs_get_clear_4xx_json_errors() {
    let router = celerity_web_example::router(App::memory());
    let cases = [
        ("{not json", StatusCode::BAD_REQUEST, "Failed to parse the request body as JSON"),
        (r#"{"title": 5, "pages": 1}"#, StatusCode::UNPROCESSABLE_ENTITY, "invalid type"),
        (r#"{"title": "x"}"#, StatusCode::UNPROCESSABLE_ENTITY, "missing field `pages`"),
        (r#"{"title": "x", "pages": 0}"#, StatusCode::UNPROCESSABLE_ENTITY, "`pages` must be between 1 and 100"),
        (r#"{"title": " ", "pages": 3}"#, StatusCode::UNPROCESSABLE_ENTITY, "`title` must not be empty"),
    ];
    for (body, want, text) in cases {
        let (status, answer) = call(&router, "POST", "/reports", Some(body)).await;
        assert_eq!(status, want, "{body} -> {answer}");
        assert!(answer["error"].as_str().unwrap().contains(text), "{body} -> {answer}");
    }
    let (status, answer) = call(&router, "GET", "/reports/00000000-0000-4000-8000-000000000000", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"].as_str().unwrap().contains("no report with id"), "{answer}");
    let (status, _) = call(&router, "GET", "/reports/not-an-id", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_page_is_served() {
    let router = celerity_web_example::router(App::memory());
    let (status, page) = call(&router, "GET", "/", None).await;
    assert_eq!(status, StatusCode::OK);
    let page = page.as_str().unwrap();
    assert!(page.contains("Build report") && page.contains("<progress id=\"bar\""), "{page}");
}
