//! Prometheus metrics: counters and histograms recorded as jobs move, gauges computed when
//! scraped. Names follow Prometheus conventions (`errands_` prefix, base units, `_total`
//! counters); docs/metrics.md lists them.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use errands_core::{Job, JobState};
use errands_store::{CompletedJob, QueueInfo};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for durations in seconds: 1 ms to 1 hour.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .map(|builder| builder.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Another recorder may be installed already (an embedding application's); then ours
        // only renders what it sees, which is nothing, rather than failing the server.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0)
}

/// `count` jobs of one queue and kind were stored.
pub fn enqueued(queue: &str, kind: &str, count: u64) {
    counter!("errands_jobs_enqueued_total", "queue" => queue.to_owned(), "kind" => kind.to_owned())
        .increment(count);
}

/// A job was leased to a worker.
pub fn started(job: &Job) {
    let labels = [("queue", job.queue.clone()), ("kind", job.kind.clone())];
    counter!("errands_jobs_started_total", &labels).increment(1);
    if let Some(started) = job.started_at {
        histogram!("errands_job_wait_seconds", "queue" => job.queue.clone())
            .record(seconds_between(job.run_at, started));
    }
}

/// A job's worker completed it.
pub fn completed(job: &CompletedJob, now: DateTime<Utc>) {
    let labels = attempt_ran(&job.queue, &job.kind, job.started_at, now);
    counter!("errands_jobs_completed_total", &labels).increment(1);
}

/// A job's worker reported a failed attempt; the job was then retried or buried.
pub fn attempt_failed(job: &Job, now: DateTime<Utc>) {
    attempt_ran(&job.queue, &job.kind, job.started_at, now);
    failed(&job.queue, &job.kind, job.state);
}

/// Records how long an attempt that ended at `now` ran; returns the job's labels.
fn attempt_ran(
    queue: &str,
    kind: &str,
    started_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> [(&'static str, String); 2] {
    let labels = [("queue", queue.to_owned()), ("kind", kind.to_owned())];
    if let Some(started) = started_at {
        histogram!("errands_job_run_seconds", &labels).record(seconds_between(started, now));
    }
    labels
}

/// An attempt failed; the job is now `state`.
pub fn failed(queue: &str, kind: &str, state: JobState) {
    let labels = [("queue", queue.to_owned()), ("kind", kind.to_owned())];
    counter!("errands_jobs_failed_total", &labels).increment(1);
    if state == JobState::Dead {
        counter!("errands_jobs_dead_total", &labels).increment(1);
    } else {
        counter!("errands_jobs_retried_total", &labels).increment(1);
    }
}

/// Sets the gauges that describe the present: queue depths, ages and workers.
pub fn snapshot(queues: &[QueueInfo], workers: usize, capacity: u64) {
    for queue in queues {
        let counts = &queue.counts;
        for (state, n) in [
            ("scheduled", counts.scheduled),
            ("queued", counts.queued),
            ("running", counts.running),
            ("completed", counts.completed),
            ("dead", counts.dead),
            ("cancelled", counts.cancelled),
        ] {
            gauge!("errands_queue_jobs", "queue" => queue.name.clone(), "state" => state)
                .set(n as f64);
        }
        gauge!("errands_queue_oldest_ready_age_seconds", "queue" => queue.name.clone())
            .set(queue.oldest_ready_age.unwrap_or(0.0));
        gauge!("errands_queue_paused", "queue" => queue.name.clone()).set(if queue.paused {
            1.0
        } else {
            0.0
        });
    }
    gauge!("errands_workers_connected").set(workers as f64);
    gauge!("errands_workers_capacity").set(capacity as f64);
}
