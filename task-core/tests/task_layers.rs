//! Layers around every run: their order, what they see of the outcome, and a context
//! a layer sets for the task's own code (a tenant, a transaction).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use task_core::{App, BoxFuture, Next, Outcome, Run, TaskError, TaskLayer, TaskResult, task};

tokio::task_local! {
    static TENANT: String;
}

#[task]
async fn whose() -> TaskResult<String> {
    Ok(TENANT.try_with(Clone::clone).unwrap_or_else(|_| "nobody".into()))
}

#[task(max_retries = 0)]
async fn refuses() -> TaskResult<()> {
    Err(TaskError::new("not today"))
}

/// Records what it sees, named.
struct Recorder(&'static str, Arc<Mutex<Vec<String>>>);

impl TaskLayer for Recorder {
    fn call<'a>(&'a self, run: &'a Run, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            self.1.lock().unwrap().push(format!("{} before {} attempt {}", self.0, run.task, run.attempt));
            let outcome = next.run().await;
            let how = outcome.error().map_or_else(|| "ok".to_owned(), |e| format!("failed: {e}"));
            self.1.lock().unwrap().push(format!("{} after {how}", self.0));
            outcome
        })
    }
}

/// Runs the task inside a tenant's context.
struct Tenant;

impl TaskLayer for Tenant {
    fn call<'a>(&'a self, _: &'a Run, next: Next<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(TENANT.scope("acme".to_owned(), next.run()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_wrap_every_run_in_order_and_see_its_outcome() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = App::memory();
    let worker = app
        .worker()
        .layer(Recorder("outer", seen.clone()))
        .layer(Recorder("inner", seen.clone()))
        .layer(Tenant)
        .concurrency(1)
        .spawn();
    assert_eq!(whose::delay(&app).await.unwrap().get(Duration::from_secs(5)).await.unwrap(), "acme");
    assert!(refuses::delay(&app).await.unwrap().get(Duration::from_secs(5)).await.is_err());
    worker.shutdown().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let whose_name = whose::NAME;
    let refuses_name = refuses::NAME;
    assert_eq!(
        seen,
        [
            format!("outer before {whose_name} attempt 1"),
            format!("inner before {whose_name} attempt 1"),
            "inner after ok".to_owned(),
            "outer after ok".to_owned(),
            format!("outer before {refuses_name} attempt 1"),
            format!("inner before {refuses_name} attempt 1"),
            "inner after failed: not today".to_owned(),
            "outer after failed: not today".to_owned(),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_layers_a_task_has_no_context() {
    let app = App::memory();
    let worker = app.worker().spawn();
    assert_eq!(whose::delay(&app).await.unwrap().get(Duration::from_secs(5)).await.unwrap(), "nobody");
    worker.shutdown().await.unwrap();
}

/// The worker's start and stop hooks (Celery's worker_ready and worker_shutdown): each
/// called once, the first before any task runs, the second with the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_shutdown_hooks_are_called_once_each() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (on_ready, on_stop, in_task) = (seen.clone(), seen.clone(), seen.clone());
    let app = App::memory();
    let worker = app
        .worker()
        .on_ready(move |info| on_ready.lock().unwrap().push(format!("ready {}", info.concurrency)))
        .on_shutdown(move |report| on_stop.lock().unwrap().push(format!("stopped after {}", report.succeeded)))
        .layer(Recorder("task", in_task))
        .concurrency(3)
        .spawn();
    whose::delay(&app).await.unwrap().get(Duration::from_secs(5)).await.unwrap();
    worker.shutdown().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.first().map(String::as_str), Some("ready 3"), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("stopped after 1"), "{seen:?}");
    assert_eq!(seen.len(), 4, "ready, the task's two, stopped: {seen:?}");
}
