//! Feature `opentelemetry`: one trace spans the request that sent a task and the task's
//! run, through the message headers, as a service with `tracing-opentelemetry` and an
//! exporter sees it (here an in-memory exporter). Its own test binary: it sets the
//! global propagator and a global subscriber.
#![cfg(feature = "opentelemetry")]

use std::time::Duration;

use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use task_core::{App, TaskResult, task};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[task(name = "otel.double")]
async fn double(x: i64) -> TaskResult<i64> {
    tracing::info!("doubling");
    Ok(x * 2)
}

#[task(name = "otel.fails")]
async fn fails() -> TaskResult<()> {
    Err(task_core::TaskError::fatal("no"))
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_run_continues_the_trace_of_the_request_that_sent_it() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let app = App::memory();
    let worker = app.worker().concurrency(2).spawn();
    let request = tracing::info_span!("POST /reports");
    let (sent, retried) = async {
        let sent = double::delay(&app, 21).await.unwrap();
        let failing = fails::delay(&app).await.unwrap();
        (sent, failing)
    }
    .instrument(request)
    .await;
    // Outside any span: its run starts a trace of its own.
    let alone = double::delay(&app, 1).await.unwrap();
    assert_eq!(sent.get(Duration::from_secs(10)).await.unwrap(), 42);
    assert!(retried.get(Duration::from_secs(10)).await.is_err());
    assert_eq!(alone.get(Duration::from_secs(10)).await.unwrap(), 2);
    worker.shutdown().await.unwrap();
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let request = named(&spans, "POST /reports");
    assert_eq!(request.len(), 1, "{spans:#?}");
    let request = request[0];
    let runs = named(&spans, "task");
    assert_eq!(runs.len(), 3, "{runs:#?}");
    let in_request: Vec<_> =
        runs.iter().filter(|run| run.span_context.trace_id() == request.span_context.trace_id()).collect();
    assert_eq!(in_request.len(), 2, "the two tasks sent in the request are in its trace: {runs:#?}");
    for run in &in_request {
        assert_eq!(run.parent_span_id, request.span_context.span_id(), "a child of the request's span");
        assert!(run.parent_span_is_remote, "its parent came through the message");
    }
    let alone = runs.iter().find(|run| run.span_context.trace_id() != request.span_context.trace_id()).unwrap();
    assert_eq!(alone.parent_span_id, SpanId::INVALID, "a task sent outside any span roots its own trace");
}
