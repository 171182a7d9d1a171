//! Prometheus metrics: counters and histograms recorded as jobs move (those labelled by queue
//! and kind in the engine's bounded [`JobSeries`], the others through the `metrics` facade),
//! gauges computed when scraped. Names follow Prometheus conventions (`errands_` prefix, base
//! units, `_total` counters); [`METRICS`] describes every one (the `# HELP` lines) and
//! docs/metrics.md lists them.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use errands_core::{Job, JobId, JobState};
use errands_store::{CompletedJob, QueueInfo};
use metrics::{describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use super::series::{JobCounter, JobSeries};

/// Buckets for durations in seconds: 1 ms to 1 hour.
pub(crate) const SECONDS_BUCKETS: [f64; 18] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// What a metric measures, for Prometheus' `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// A value that goes up and down, set when scraped or as things change.
    Gauge,
    /// Observations in buckets, with their count and sum.
    Histogram,
}

impl MetricKind {
    /// The name Prometheus' text format gives the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Every metric the server records, whichever crate records it, with its `# HELP` text: one
/// table, so a metric cannot be exported undescribed, and the tests compare it with the
/// exposition and with docs/metrics.md.
pub const METRICS: &[(&str, MetricKind, &str)] = &[
    (
        "errands_jobs_enqueued_total",
        MetricKind::Counter,
        "Jobs stored (unique-key hits not counted).",
    ),
    (
        "errands_jobs_started_total",
        MetricKind::Counter,
        "Attempts started: jobs sent to a worker.",
    ),
    (
        "errands_jobs_completed_total",
        MetricKind::Counter,
        "Jobs completed.",
    ),
    (
        "errands_jobs_failed_total",
        MetricKind::Counter,
        "Failed attempts, including timeouts and lost workers.",
    ),
    (
        "errands_jobs_retried_total",
        MetricKind::Counter,
        "Failed attempts that will be retried.",
    ),
    (
        "errands_jobs_dead_total",
        MetricKind::Counter,
        "Jobs that went to dead.",
    ),
    (
        "errands_job_wait_seconds",
        MetricKind::Histogram,
        "Seconds from a job's due time (run_at) to its start.",
    ),
    (
        "errands_job_run_seconds",
        MetricKind::Histogram,
        "Seconds from an attempt's start to its completion or failure.",
    ),
    (
        "errands_queue_jobs",
        MetricKind::Gauge,
        "Jobs in a queue, by state.",
    ),
    (
        "errands_queue_oldest_ready_age_seconds",
        MetricKind::Gauge,
        "Age in seconds of a queue's oldest ready job (0 when none).",
    ),
    (
        "errands_queue_paused",
        MetricKind::Gauge,
        "1 when the queue is paused, else 0.",
    ),
    (
        "errands_workers_connected",
        MetricKind::Gauge,
        "Workers connected to this node.",
    ),
    (
        "errands_workers_capacity",
        MetricKind::Gauge,
        "Total capacity (concurrent jobs) of the workers connected to this node.",
    ),
    (
        "errands_store_commit_seconds",
        MetricKind::Histogram,
        "Seconds one store commit (a group of writes) took; on SQLite, without the fsync.",
    ),
    (
        "errands_store_fsync_seconds",
        MetricKind::Histogram,
        "Seconds one fsync of the SQLite write-ahead log took (--sync full).",
    ),
    (
        "errands_worker_outbound_bytes",
        MetricKind::Gauge,
        "Bytes waiting to be written to this node's worker sockets.",
    ),
    (
        "errands_event_subscribers",
        MetricKind::Gauge,
        "Open /v1/events subscriptions on this node.",
    ),
    (
        "errands_event_buffered_bytes",
        MetricKind::Gauge,
        "Bytes of events waiting for their subscribers on this node.",
    ),
    (
        "errands_event_subscribers_cut_off_total",
        MetricKind::Counter,
        "Event subscribers cut off for falling behind a buffer bound.",
    ),
    (
        "errands_notices_dropped_total",
        MetricKind::Counter,
        "Notices to the other nodes dropped because their outbox was full.",
    ),
];

/// Gives the installed recorder every metric's `# HELP` text.
fn describe_all() {
    for &(name, kind, help) in METRICS {
        match kind {
            MetricKind::Counter => describe_counter!(name, help),
            MetricKind::Gauge => describe_gauge!(name, help),
            MetricKind::Histogram => describe_histogram!(name, help),
        }
    }
}

/// Every gauge is set by [`snapshot`] just before each scrape is rendered, so one left unset
/// this long describes a queue that no longer exists: the exporter drops it from the output.
const STALE_GAUGE: Duration = Duration::from_secs(2);

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder =
            || PrometheusBuilder::new().idle_timeout(MetricKindMask::GAUGE, Some(STALE_GAUGE));
        let recorder = builder()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .map(|builder| builder.build_recorder())
            .unwrap_or_else(|_| builder().build_recorder());
        let handle = recorder.handle();
        // Another recorder may be installed already (an embedding application's); then ours
        // only renders what it sees, which is nothing, rather than failing the server.
        let _ = metrics::set_global_recorder(recorder);
        describe_all();
        handle
    })
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0)
}

/// `count` jobs of one queue and kind were stored.
pub fn enqueued(series: &JobSeries, queue: &str, kind: &str, count: u64) {
    series.count(queue, kind, JobCounter::Enqueued, count);
}

/// A job was leased to a worker.
pub fn started(series: &JobSeries, job: &Job) {
    series.count(&job.queue, &job.kind, JobCounter::Started, 1);
    if let Some(started) = job.started_at {
        series.wait(&job.queue, &job.kind, seconds_between(job.run_at, started));
    }
}

/// A job's worker completed it.
pub fn completed(series: &JobSeries, job: &CompletedJob, now: DateTime<Utc>) {
    attempt_ran(series, &job.queue, &job.kind, job.started_at, now);
    series.count(&job.queue, &job.kind, JobCounter::Completed, 1);
}

/// A job's worker reported a failed attempt; the job was then retried or buried.
pub fn attempt_failed(series: &JobSeries, job: &Job, now: DateTime<Utc>) {
    attempt_ran(series, &job.queue, &job.kind, job.started_at, now);
    let ended = AttemptEnd {
        id: job.id,
        queue: &job.queue,
        kind: &job.kind,
        attempt: job.attempt,
        state: job.state,
    };
    failed(series, ended, "the worker reported a failure");
}

/// Records how long an attempt that ended at `now` ran.
fn attempt_ran(
    series: &JobSeries,
    queue: &str,
    kind: &str,
    started_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    if let Some(started) = started_at {
        series.run(queue, kind, seconds_between(started, now));
    }
}

/// The job whose attempt ended without completing, and what it is now.
#[derive(Clone, Copy, Debug)]
pub struct AttemptEnd<'a> {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// The attempt that ended.
    pub attempt: u32,
    /// Its state now: ready or scheduled again (retried), or dead.
    pub state: JobState,
}

/// An attempt failed (`how` says in what way: a failure its worker reported, a timeout, a
/// lost worker): counted, and logged with the job's fields (`job_id`, `queue`, `kind`,
/// `attempt`, the names every job log line uses).
pub fn failed(series: &JobSeries, job: AttemptEnd<'_>, how: &str) {
    series.count(job.queue, job.kind, JobCounter::Failed, 1);
    let AttemptEnd {
        id,
        queue,
        kind,
        attempt,
        state,
    } = job;
    if state == JobState::Dead {
        series.count(queue, kind, JobCounter::Dead, 1);
        tracing::warn!(job_id = %id, queue, kind, attempt, how, "job is dead");
    } else {
        series.count(queue, kind, JobCounter::Retried, 1);
        tracing::info!(job_id = %id, queue, kind, attempt, how, state = state.as_str(),
            "attempt failed; the job will be retried");
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The metrics docs/metrics.md lists, as (name, type) from its table's rows.
    fn documented() -> BTreeSet<(String, String)> {
        let page = include_str!("../../../../docs/metrics.md");
        page.lines()
            .filter_map(|line| {
                let mut cells = line.strip_prefix("| `")?.split('|');
                let name = cells.next()?.trim().trim_end_matches('`');
                let kind = cells.next()?.trim();
                Some((name.to_owned(), kind.to_owned()))
            })
            .collect()
    }

    #[test]
    fn the_docs_list_every_metric_with_its_type() {
        let described: BTreeSet<(String, String)> = METRICS
            .iter()
            .map(|(name, kind, _)| (name.to_string(), kind.as_str().to_owned()))
            .collect();
        assert_eq!(described, documented());
    }

    #[test]
    fn every_metric_has_help_text() {
        for (name, _, help) in METRICS {
            assert!(name.starts_with("errands_"), "{name}");
            assert!(help.len() > 10 && help.ends_with('.'), "{name}: {help:?}");
        }
        let names: BTreeSet<&str> = METRICS.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(names.len(), METRICS.len(), "a metric is described twice");
    }
}
