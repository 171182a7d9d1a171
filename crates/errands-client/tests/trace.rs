//! One trace from the producer's span through the server's spans to the job's span on the
//! worker: the client injects W3C trace context at enqueue, the server records enqueue,
//! dispatch and completion under it, and the worker runs the job in a child span.

use std::sync::Arc;
use std::time::Duration;

use errands_client::{Client, EnqueueOptions, HandlerError, Job, JobContext, Worker};
use errands_core::SystemClock;
use errands_server::{RunningServer, ServerConfig};
use errands_store::SqliteStore;
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(20);

type Headers = std::collections::BTreeMap<String, String>;

#[derive(Serialize, Deserialize)]
struct Ping;

impl Job for Ping {
    const KIND: &'static str = "ping";
    type Output = ();
}

/// Hands the job's headers to the test.
async fn ping(ctx: JobContext, _job: Ping) -> Result<(), HandlerError> {
    let seen = ctx
        .state::<mpsc::UnboundedSender<Headers>>()
        .ok_or_else(|| HandlerError::new("NoState", "no sender"))?;
    let _ = seen.send(ctx.headers.clone());
    Ok(())
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// The finished span named `name`, waiting for it to end (the worker's span ends after the
/// job's report is sent).
async fn finished(exporter: &InMemorySpanExporter, name: &str) -> SpanData {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let spans = exporter.get_finished_spans().expect("spans");
        if let Some(span) = spans.into_iter().find(|s| s.name == name) {
            return span;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no span named {name:?} ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// One thread: the subscriber set for this test sees the worker's tasks too.
#[tokio::test(flavor = "current_thread")]
async fn producer_server_and_job_spans_share_one_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = ServerConfig {
        traces: true,
        ..ServerConfig::default()
    };
    let store = Arc::new(SqliteStore::temporary().unwrap());
    let server = RunningServer::start(store, Arc::new(SystemClock), config)
        .await
        .unwrap();
    let client = Client::new(server.url(), None).unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Headers>();
    let worker = Worker::builder(client.clone())
        .state(seen_tx)
        .handle(ping)
        .build();
    let stop = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());

    let options = EnqueueOptions::new().header("x-tenant", "42");
    let handle = client
        .enqueue_with(&Ping, options)
        .instrument(tracing::info_span!("producer"))
        .await
        .unwrap();
    client.result(&handle, WAIT).await.unwrap();
    let headers = seen.recv().await.expect("the job ran");
    assert_eq!(headers["x-tenant"], "42");
    assert!(headers.contains_key("traceparent"), "{headers:?}");

    let producer = finished(&exporter, "producer").await;
    let enqueue = finished(&exporter, "enqueue ping").await;
    let dispatch = finished(&exporter, "dispatch ping").await;
    let complete = finished(&exporter, "complete ping").await;
    let job = finished(&exporter, "process ping").await;
    let trace: TraceId = producer.span_context.trace_id();
    for span in [&enqueue, &dispatch, &complete, &job] {
        assert_eq!(span.span_context.trace_id(), trace, "{}", span.name);
    }
    assert_eq!(enqueue.parent_span_id, producer.span_context.span_id());
    let enqueue_id: SpanId = enqueue.span_context.span_id();
    for span in [&dispatch, &complete, &job] {
        assert_eq!(span.parent_span_id, enqueue_id, "{}", span.name);
    }
    assert_eq!(enqueue.span_kind, SpanKind::Producer);
    assert_eq!(job.span_kind, SpanKind::Consumer);
    assert_eq!(attribute(&job, "errands.queue"), Some(&"default".into()));
    assert_eq!(attribute(&job, "errands.kind"), Some(&"ping".into()));
    assert_eq!(attribute(&job, "errands.attempt"), Some(&Value::I64(1)));
    assert_eq!(
        attribute(&job, "errands.outcome"),
        Some(&"completed".into())
    );
    assert_eq!(
        attribute(&complete, "errands.outcome"),
        Some(&"completed".into())
    );

    stop.shutdown();
    running.await.unwrap().unwrap();
    drop(server);
}
