//! Helpers shared by the integration tests.

use std::time::Duration;

use task_core::{App, Error, Worker, WorkerReport};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A worker running in the background until `stop`.
pub(crate) struct Running {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<WorkerReport, Error>>,
}

impl Running {
    pub(crate) fn start(worker: Worker) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            handle,
        }
    }

    pub(crate) async fn stop(mut self) -> WorkerReport {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("worker stops")
            .unwrap()
            .unwrap()
    }
}

pub(crate) fn app() -> App {
    App::memory()
}

/// Waits until `f` holds, up to 10 s.
pub(crate) async fn eventually(mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "condition not met in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
