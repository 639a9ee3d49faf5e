//! Trace context across the queue (feature `opentelemetry`): the producer's context
//! goes into the message's headers, and the worker's span of the run continues it, so
//! one trace spans the web request that sent a task and the task's run.
//!
//! The context is read from and given to `tracing` spans through
//! `tracing-opentelemetry` (the bridge a service with a `tracing` subscriber and an
//! OpenTelemetry exporter already has), in the format of the globally set propagator
//! (`opentelemetry::global::set_text_map_propagator`, W3C `traceparent` as a rule).
//! Without the feature, or with no context at the producer, nothing is added: the
//! headers stay empty and cost nothing on the wire.

use std::collections::BTreeMap;

/// A message's headers: text keys and values (`traceparent`, `tracestate`, …).
pub(crate) type Headers = BTreeMap<String, String>;

/// Writes the current span's trace context into `headers`.
#[cfg(feature = "opentelemetry")]
pub(crate) fn inject(headers: &mut Headers) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.inject_context(&cx, &mut Writer(headers)));
}

/// Writes the current span's trace context into `headers` (feature `opentelemetry`).
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn inject(_headers: &mut Headers) {}

/// Makes the context in `headers`, if any, the parent of `span` (a run's span).
#[cfg(feature = "opentelemetry")]
pub(crate) fn continue_in(span: &tracing::Span, headers: &Headers) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if headers.is_empty() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&Reader(headers)));
    // Refused only when the span is not recorded by an OpenTelemetry layer.
    let _ = span.set_parent(cx);
}

/// Makes the context in `headers`, if any, the parent of `span` (feature `opentelemetry`).
#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn continue_in(_span: &tracing::Span, _headers: &Headers) {}

#[cfg(feature = "opentelemetry")]
struct Writer<'a>(&'a mut Headers);

#[cfg(feature = "opentelemetry")]
impl opentelemetry::propagation::Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

#[cfg(feature = "opentelemetry")]
struct Reader<'a>(&'a Headers);

#[cfg(feature = "opentelemetry")]
impl opentelemetry::propagation::Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}
