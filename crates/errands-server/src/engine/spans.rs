//! The server's own OpenTelemetry spans for a job: its enqueue, its wait in the queue until a
//! worker got it (dispatch), and the end of each attempt as the server saw it (completion).
//!
//! They join the trace whose W3C context the job's headers carry (the producer's), and the
//! enqueue span puts its own context in the headers, so dispatch, completion and the worker's
//! job span are its children. A job enqueued without trace context starts a trace here. The
//! spans go to the global tracer provider, which the binary points at an OTLP endpoint; when
//! tracing is off none of this runs and headers are left as the client sent them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use errands_core::{Job, JobId, JobState, NewJob};
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The instrumentation scope the server's spans are reported under.
const SCOPE: &str = "errands-server";

/// Starts and ends the server's spans, when tracing is on.
pub(crate) struct Spans {
    tracer: Option<BoxedTracer>,
}

/// The enqueue spans of one request, ended with [`Spans::enqueued`].
pub(crate) struct EnqueueSpans(Vec<Context>);

/// How an attempt ended, for the completion span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttemptOutcome {
    /// The job completed.
    Completed,
    /// The attempt failed and the job will run again.
    Retry,
    /// The attempt failed and the job is dead.
    Dead,
}

impl AttemptOutcome {
    /// How a failed attempt ended, from the job's state after it.
    pub(crate) fn after_failure(state: JobState) -> Self {
        if state == JobState::Dead {
            AttemptOutcome::Dead
        } else {
            AttemptOutcome::Retry
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
        }
    }
}

impl Spans {
    /// Spans on the global tracer provider when `enabled`, none otherwise.
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            tracer: enabled.then(|| global::tracer(SCOPE)),
        }
    }

    /// Starts an enqueue span for each job, as a child of the trace context in its headers,
    /// and replaces that context with the span's own.
    pub(crate) fn enqueue(&self, jobs: &mut [NewJob], now: DateTime<Utc>) -> EnqueueSpans {
        let Some(tracer) = &self.tracer else {
            return EnqueueSpans(Vec::new());
        };
        let contexts = jobs
            .iter_mut()
            .map(|job| {
                let parent = extract(&job.headers);
                let span = tracer
                    .span_builder(format!("enqueue {}", job.kind))
                    .with_kind(SpanKind::Producer)
                    .with_start_time(SystemTime::from(now))
                    .with_attributes(job_attributes(&job.queue, &job.kind, job.id))
                    .start_with_context(tracer, &parent);
                let context = parent.with_span(span);
                inject(&context, &mut job.headers);
                context
            })
            .collect();
        EnqueueSpans(contexts)
    }

    /// Ends the enqueue spans once the store answered: with an error status if it failed.
    pub(crate) fn enqueued(&self, spans: EnqueueSpans, error: Option<&str>) {
        for context in spans.0 {
            let span = context.span();
            if let Some(error) = error {
                span.set_status(Status::error(error.to_owned()));
            }
            span.end();
        }
    }

    /// Records the job's wait from when it was due until a worker received it.
    pub(crate) fn dispatched(&self, job: &Job, now: DateTime<Utc>) {
        let Some(tracer) = &self.tracer else {
            return;
        };
        let mut attributes = job_attributes(&job.queue, &job.kind, job.id);
        attributes.push(KeyValue::new("errands.attempt", i64::from(job.attempt)));
        if let Some(worker) = &job.worker_id {
            attributes.push(KeyValue::new("errands.worker_id", worker.clone()));
        }
        let due = job.run_at.min(now);
        let span = tracer
            .span_builder(format!("dispatch {}", job.kind))
            .with_kind(SpanKind::Internal)
            .with_start_time(SystemTime::from(due))
            .with_attributes(attributes)
            .start_with_context(tracer, &extract(&job.headers));
        Context::new()
            .with_span(span)
            .span()
            .end_with_timestamp(SystemTime::from(now));
    }

    /// Records one attempt, from its start until the server stored how it ended.
    pub(crate) fn attempt_ended(&self, attempt: Attempt<'_>, now: DateTime<Utc>) {
        let Some(tracer) = &self.tracer else {
            return;
        };
        let mut attributes = job_attributes(attempt.queue, attempt.kind, attempt.id);
        attributes.push(KeyValue::new("errands.attempt", i64::from(attempt.number)));
        attributes.push(KeyValue::new("errands.outcome", attempt.outcome.as_str()));
        let started = attempt.started_at.unwrap_or(now).min(now);
        let span = tracer
            .span_builder(format!("complete {}", attempt.kind))
            .with_kind(SpanKind::Internal)
            .with_start_time(SystemTime::from(started))
            .with_attributes(attributes)
            .start_with_context(tracer, &extract(attempt.headers));
        let context = Context::new().with_span(span);
        if attempt.outcome != AttemptOutcome::Completed {
            context
                .span()
                .set_status(Status::error(attempt.outcome.as_str()));
        }
        context.span().end_with_timestamp(SystemTime::from(now));
    }
}

/// What the completion span of an attempt shows.
pub(crate) struct Attempt<'a> {
    /// The job's id.
    pub id: JobId,
    /// Its queue.
    pub queue: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// The attempt's number.
    pub number: u32,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// The job's headers, holding its trace context.
    pub headers: &'a BTreeMap<String, String>,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

fn job_attributes(queue: &str, kind: &str, id: JobId) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "errands"),
        KeyValue::new("messaging.destination.name", queue.to_owned()),
        KeyValue::new("errands.queue", queue.to_owned()),
        KeyValue::new("errands.kind", kind.to_owned()),
        KeyValue::new("errands.job_id", id.to_string()),
    ]
}

fn extract(headers: &BTreeMap<String, String>) -> Context {
    TraceContextPropagator::new().extract(&HeadersRef(headers))
}

fn inject(context: &Context, headers: &mut BTreeMap<String, String>) {
    TraceContextPropagator::new().inject_context(context, &mut HeadersMut(headers));
}

struct HeadersRef<'a>(&'a BTreeMap<String, String>);

impl Extractor for HeadersRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut BTreeMap<String, String>);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}
