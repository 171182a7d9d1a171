//! W3C trace context across the queue: the current span's context goes into a job's headers
//! at enqueue, and the worker runs the job in a span that continues that trace.
//!
//! Spans are `tracing` spans; they reach OpenTelemetry through a `tracing-opentelemetry` layer
//! in the application's subscriber. Without such a layer nothing is injected and the job span
//! is an ordinary `tracing` span.

use std::collections::BTreeMap;

use errands_core::protocol::JobDelivery;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header that carries the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";

/// Adds the current span's trace context to `headers` (`traceparent`, and `tracestate` when
/// there is one), unless the caller already set a `traceparent` of their own.
pub(crate) fn inject_current(headers: &mut BTreeMap<String, String>) {
    if headers.contains_key(TRACEPARENT) {
        return;
    }
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeadersMut(headers));
}

/// The span a worker runs `job` in: a consumer span whose parent is the trace context in the
/// job's headers, with the job's queue, kind and attempt. Its `errands.outcome` is recorded
/// when the job ends (see [`record_outcome`]).
pub(crate) fn job_span(job: &JobDelivery) -> tracing::Span {
    let span = tracing::info_span!(
        "errands.job",
        otel.name = %format!("process {}", job.kind),
        otel.kind = "consumer",
        messaging.system = "errands",
        messaging.operation.type = "process",
        messaging.destination.name = %job.queue,
        errands.job_id = %job.id,
        errands.queue = %job.queue,
        errands.kind = %job.kind,
        errands.attempt = i64::from(job.attempt),
        errands.outcome = tracing::field::Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeadersRef(&job.headers));
    // Fails only when no OpenTelemetry layer records the span: then there is no trace to join.
    let _ = span.set_parent(parent);
    span
}

/// Records how the job ended on its span: `completed`, `failed`, `panicked` or `cancelled`.
pub(crate) fn record_outcome(span: &tracing::Span, outcome: &'static str) {
    span.record("errands.outcome", outcome);
}

/// A job's headers to write trace context into.
struct HeadersMut<'a>(&'a mut BTreeMap<String, String>);

/// A job's headers to read trace context from.
struct HeadersRef<'a>(&'a BTreeMap<String, String>);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for HeadersRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}
