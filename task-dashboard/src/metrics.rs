//! `/metrics` in the Prometheus text format (the `prometheus` crate), computed on each
//! scrape from the broker and the result backend's counters: nothing is held in this
//! process, so a restart of the dashboard loses no count.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::proto::{Bucket, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use task_core::TaskStats;

use crate::Dashboard;
use crate::api::{queues_data, workers_data};

pub(crate) async fn metrics(State(dash): State<Dashboard>) -> Response {
    match render(&dash).await {
        Ok(text) => ([(header::CONTENT_TYPE, TextEncoder::new().format_type().to_owned())], text).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("# cannot read the broker: {e}\n")).into_response(),
    }
}

async fn render(dash: &Dashboard) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let registry = Registry::new();
    let online = IntGauge::new("celerity_workers_online", "Workers with a live heartbeat")?;
    let queue =
        GaugeVec::new(Opts::new("celerity_queue_messages", "Messages per queue and state"), &["queue", "state"])?;
    let tasks = GaugeVec::new(
        Opts::new("celerity_worker_tasks", "Tasks a live worker has finished, by outcome (since it started)"),
        &["worker", "outcome"],
    )?;
    let heartbeat = GaugeVec::new(
        Opts::new("celerity_worker_heartbeat_age_seconds", "Time since each worker's heartbeat"),
        &["worker"],
    )?;
    let concurrency =
        GaugeVec::new(Opts::new("celerity_worker_concurrency", "Tasks each worker runs at once"), &["worker"])?;
    let fetch = GaugeVec::new(
        Opts::new("celerity_worker_last_fetch_age_seconds", "Time since each worker's last successful fetch"),
        &["worker"],
    )?;
    let saturated = GaugeVec::new(
        Opts::new(
            "celerity_worker_saturated",
            "1 while a worker does not fetch because every slot is taken: its last fetch ages, and that is fine",
        ),
        &["worker"],
    )?;
    for collector in
        [queue.clone(), tasks.clone(), heartbeat.clone(), concurrency.clone(), fetch.clone(), saturated.clone()]
    {
        registry.register(Box::new(collector))?;
    }
    registry.register(Box::new(online.clone()))?;

    let workers = workers_data(dash).await.map_err(|e| e.1)?;
    let workers = workers.as_array().cloned().unwrap_or_default();
    online.set(i64::try_from(workers.len()).unwrap_or(i64::MAX));
    for w in &workers {
        let id = w["id"].as_str().unwrap_or("");
        for outcome in ["succeeded", "failed"] {
            tasks.with_label_values(&[id, outcome]).set(w[outcome].as_f64().unwrap_or(0.0));
        }
        heartbeat.with_label_values(&[id]).set(w["heartbeat_age_ms"].as_f64().unwrap_or(0.0) / 1000.0);
        concurrency.with_label_values(&[id]).set(w["concurrency"].as_f64().unwrap_or(0.0));
        fetch.with_label_values(&[id]).set(w["last_fetch_age_ms"].as_f64().unwrap_or(0.0) / 1000.0);
        saturated.with_label_values(&[id]).set(if w["saturated"] == true { 1.0 } else { 0.0 });
    }
    for q in queues_data(dash).await.map_err(|e| e.1)?.as_array().cloned().unwrap_or_default() {
        let name = q["queue"].as_str().unwrap_or("");
        for state in ["ready", "scheduled", "in_flight", "dead"] {
            queue.with_label_values(&[name, state]).set(q[state].as_f64().unwrap_or(0.0));
        }
    }
    let mut families = registry.gather();
    if let Some(history) = dash.app.backend().history() {
        families.extend(task_families(&history.task_stats().await?)?);
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8(out)?)
}

/// `celerity_tasks_total{task,state}` and `celerity_task_runtime_seconds{task}`, from
/// the counters the result backend keeps with every state write.
fn task_families(stats: &TaskStats) -> Result<Vec<MetricFamily>, prometheus::Error> {
    let registry = Registry::new();
    let tasks = IntCounterVec::new(
        Opts::new("celerity_tasks_total", "Times tasks of each name entered each state"),
        &["task", "state"],
    )?;
    registry.register(Box::new(tasks.clone()))?;
    for c in &stats.counts {
        tasks.with_label_values(&[c.task.as_str(), c.state.as_str()]).inc_by(c.count);
    }
    let mut families = registry.gather();
    // A histogram whose buckets were counted elsewhere: built as a family directly.
    let mut runtime = MetricFamily::default();
    runtime.set_name("celerity_task_runtime_seconds".into());
    runtime.set_help("How long tasks of each name ran (successes and final failures)".into());
    runtime.set_field_type(MetricType::HISTOGRAM);
    for h in &stats.runtimes {
        let mut label = LabelPair::default();
        label.set_name("task".into());
        label.set_value(h.task.clone());
        let mut histogram = Histogram::default();
        histogram.set_sample_count(h.count);
        histogram.set_sample_sum(h.sum_secs);
        histogram.set_bucket(
            h.buckets
                .iter()
                .map(|(le, n)| {
                    let mut bucket = Bucket::default();
                    bucket.set_upper_bound(*le);
                    bucket.set_cumulative_count(*n);
                    bucket
                })
                .collect(),
        );
        let mut metric = Metric::from_label(vec![label]);
        metric.set_histogram(histogram);
        runtime.mut_metric().push(metric);
    }
    if !runtime.get_metric().is_empty() {
        families.push(runtime);
    }
    Ok(families)
}
