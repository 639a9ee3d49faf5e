//! A service's own tracing subscriber sees one span per task run, with the task's name,
//! id, attempt and queue, and the task's own events inside it. (Its own test binary: it
//! installs a global subscriber.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use task_core::{App, TaskContext, TaskError, TaskResult, task};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span's or an event's fields, as text.
type FieldList = Vec<(String, String)>;

/// Every `task` span opened, as its fields; and the spans that events were in.
#[derive(Clone, Default)]
struct Seen {
    spans: Arc<Mutex<Vec<FieldList>>>,
    events_in_task: Arc<Mutex<Vec<String>>>,
}

struct Fields(FieldList);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Seen {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: Context<'_, S>) {
        if attrs.metadata().name() == "task" {
            let mut fields = Fields(Vec::new());
            attrs.record(&mut fields);
            self.spans.lock().unwrap().push(fields.0);
        }
    }
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let message = fields.0.iter().find(|(k, _)| k == "message").map(|(_, v)| v.clone()).unwrap_or_default();
        if ctx.event_scope(event).is_some_and(|mut scope| scope.any(|span| span.name() == "task")) {
            self.events_in_task.lock().unwrap().push(message);
        }
    }
}

#[task(name = "traced.flaky", max_retries = 1)]
async fn flaky(ctx: TaskContext) -> TaskResult<u32> {
    tracing::info!("inside the task");
    if ctx.retries() == 0 {
        return Err(ctx.retry(Duration::from_millis(10)));
    }
    Err(TaskError::fatal("still broken"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_is_a_span_with_the_tasks_name_id_attempt_and_queue() {
    let seen = Seen::default();
    let subscriber = tracing_subscriber::registry().with(seen.clone());
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this binary");
    let app = App::memory();
    let worker = app.worker().spawn();
    let res = flaky::delay(&app).await.unwrap();
    assert!(res.get(Duration::from_secs(10)).await.is_err());
    worker.shutdown().await.unwrap();

    let spans = seen.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 2, "one span per run: {spans:?}");
    for (attempt, fields) in spans.iter().enumerate() {
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!(get("task"), "traced.flaky", "{fields:?}");
        assert_eq!(get("id"), res.id().as_str(), "{fields:?}");
        assert_eq!(get("attempt"), (attempt + 1).to_string(), "{fields:?}");
        assert_eq!(get("queue"), "default", "{fields:?}");
    }
    let events = seen.events_in_task.lock().unwrap().clone();
    assert_eq!(events.iter().filter(|m| m.as_str() == "inside the task").count(), 2, "{events:?}");
    assert!(events.iter().any(|m| m.contains("task failed")), "the worker's own events are inside too: {events:?}");
}
