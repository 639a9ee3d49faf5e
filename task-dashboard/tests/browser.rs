//! The dashboard in a real browser (Debian's headless Chromium, driven by playwright-core
//! from the web example's `browser/` install): counts change live while tasks run, and
//! a pending task is revoked from its page. `scripts/test.sh` installs both.

use std::path::Path;
use std::time::Duration;

use task_core::{App, TaskResult, task};
use task_dashboard::{DashboardConfig, router};

#[task(name = "browser.step")]
async fn step(i: u32) -> TaskResult<u32> {
    Ok(i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_watches_tasks_run_and_revokes_one() {
    let playwright = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/web/browser");
    assert!(
        playwright.join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs chromium and playwright-core: run scripts/test.sh (it installs both)"
    );
    let app = App::memory();
    let worker = app.worker().concurrency(4).heartbeat_ttl(Duration::from_millis(600)).spawn();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, router(app.clone(), DashboardConfig::default())).into_future());
    let pending = step::signature(0).countdown(Duration::from_secs(600)).apply_async(&app).await.unwrap();
    // A dead letter whose queue and task id are made to run script if pasted as code.
    let hostile_queue = "q'\"><img src=x onerror=alert('queue')>";
    let hostile_id = "x',alert(1),'";
    let mut envelope = task_core::Envelope::new("nobody.home", vec![0x80], hostile_queue);
    envelope.id = hostile_id.parse().unwrap();
    let message = task_core::broker::Message::new(envelope.id.clone(), hostile_queue, envelope.encode().unwrap());
    app.broker().enqueue(message).await.unwrap();
    let buries = app.worker().queues([hostile_queue]).spawn();

    // Tasks keep coming while the page is open.
    let producer = {
        let app = app.clone();
        tokio::spawn(async move {
            for i in 0..400 {
                step::delay(&app, i).await.unwrap();
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let out = tokio::process::Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs"))
        .arg(&base)
        .arg(pending.id().as_str())
        .arg(&shots)
        .arg(hostile_id)
        .env("PLAYWRIGHT_FROM", playwright.join("package.json"))
        .output()
        .await
        .expect("node runs");
    producer.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(seen["after"].as_u64() >= seen["before"].as_u64().map(|b| b + 20), "counts rose live: {seen}");
    assert!(seen["live"].as_str().unwrap().starts_with("live, updated"), "{seen}");
    assert_eq!(seen["pending"], "PENDING", "{seen}");
    assert_eq!(seen["state"], "REVOKED", "{seen}");
    assert_eq!(pending.state().await.unwrap(), task_core::TaskState::Revoked);
    assert_eq!(seen["dialogs"], serde_json::json!([]), "the hostile data ran script: {seen}");
    assert_eq!(seen["deadShown"], true, "the hostile task id is shown as text: {seen}");
    assert_eq!(seen["title"], format!("Task {hostile_id}"), "{seen}");
    buries.shutdown().await.unwrap();
    for shot in ["overview", "task"] {
        let file = shots.with_file_name(format!("dashboard-{shot}.png"));
        assert!(std::fs::metadata(&file).map(|m| m.len() > 1000).unwrap_or(false), "{}", file.display());
    }
    worker.shutdown().await.unwrap();
}
