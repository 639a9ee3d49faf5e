//! Tasks from another crate of the workspace are registered and run.

use std::time::Duration;

use celerity_example_tasks::{reverse, send_email};
use task_core::{App, Error, Registry};

#[test]
fn library_tasks_are_in_the_registry() {
    let registry = Registry::global();
    assert!(registry.get(reverse::NAME).is_some());
    assert_eq!(reverse::NAME, "celerity_example_tasks::reverse");
    let email = registry.get("emails.send").expect("registered under its custom name");
    assert_eq!(email.options().queue, Some("emails"));
    assert!(email.is_blocking());
    registry.check().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_tasks_run_through_a_worker() {
    let app = App::memory();
    let worker = app.worker().queues(["default", "emails"]).spawn();
    let wait = Duration::from_secs(10);
    assert_eq!(reverse::delay(&app, "abc".into()).await.unwrap().get(wait).await.unwrap(), "cba");
    let sent = send_email::delay(&app, "a@b.c".into(), "hi".into()).await.unwrap();
    assert_eq!(sent.get(wait).await.unwrap(), "sent `hi` to a@b.c");
    let bad = send_email::delay(&app, "nobody".into(), "hi".into()).await.unwrap();
    assert!(
        matches!(bad.get(wait).await, Err(Error::TaskFailed { error, .. }) if error.contains("not an e-mail address"))
    );
    worker.shutdown().await.unwrap();
}
