//! Helpers shared by the integration tests.

use std::sync::Arc;
use std::time::Duration;

use task_core::memory::InMemoryBroker;
use task_core::{App, WorkerHandle, WorkerReport};

/// Stops a spawned worker and returns its report (fails the test on an error).
pub(crate) async fn stop(worker: WorkerHandle) -> WorkerReport {
    tokio::time::timeout(Duration::from_secs(60), worker.shutdown()).await.expect("worker stops").expect("worker ran")
}

pub(crate) fn app() -> App {
    App::memory()
}

/// An app over a broker the test can inspect and break.
pub(crate) async fn app_with_broker() -> (App, InMemoryBroker) {
    let broker = InMemoryBroker::new();
    let app = App::builder().broker(Arc::new(broker.clone())).build().await.expect("app");
    (app, broker)
}

/// Waits until `f` holds, up to 10 s.
pub(crate) async fn eventually(mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "condition not met in 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
