//! The job counters and histograms labelled by queue and kind, kept by the engine rather than
//! by the global `metrics` recorder, so that their number is bounded and the series of a queue
//! that is gone can be dropped (the recorder can do neither without resetting live ones).
//!
//! At most `max` distinct (queue, kind) pairs get series of their own; jobs of any other pair
//! are counted under `queue="_other", kind="_other"`, so totals stay right. Each scrape drops
//! the series of queues the store no longer lists, which frees their slots; a queue that comes
//! back starts its counters from zero, a reset Prometheus' `rate` and `increase` allow for.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

use metrics_exporter_prometheus::formatting::{
    sanitize_label_value, write_help_line, write_type_line,
};

use super::telemetry::{MetricKind, METRICS, SECONDS_BUCKETS};

/// The queue and kind label of jobs beyond the series bound.
pub const OTHER: &str = "_other";

/// How many (queue, kind) pairs get series of their own unless configured otherwise.
pub const DEFAULT_MAX_SERIES: usize = 1000;

/// The counters kept for each (queue, kind) pair, in the order they are rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobCounter {
    /// `errands_jobs_enqueued_total`.
    Enqueued,
    /// `errands_jobs_started_total`.
    Started,
    /// `errands_jobs_completed_total`.
    Completed,
    /// `errands_jobs_failed_total`.
    Failed,
    /// `errands_jobs_retried_total`.
    Retried,
    /// `errands_jobs_dead_total`.
    Dead,
}

/// Every counter with its metric name, in rendering order.
const COUNTERS: [(JobCounter, &str); 6] = [
    (JobCounter::Enqueued, "errands_jobs_enqueued_total"),
    (JobCounter::Started, "errands_jobs_started_total"),
    (JobCounter::Completed, "errands_jobs_completed_total"),
    (JobCounter::Failed, "errands_jobs_failed_total"),
    (JobCounter::Retried, "errands_jobs_retried_total"),
    (JobCounter::Dead, "errands_jobs_dead_total"),
];

const WAIT_SECONDS: &str = "errands_job_wait_seconds";
const RUN_SECONDS: &str = "errands_job_run_seconds";

/// Observations in the [`SECONDS_BUCKETS`] buckets (not cumulative), with their sum.
#[derive(Clone, Debug, Default)]
struct Histogram {
    buckets: [u64; SECONDS_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn record(&mut self, value: f64) {
        if let Some(bucket) = SECONDS_BUCKETS.iter().position(|bound| value <= *bound) {
            self.buckets[bucket] += 1;
        }
        self.count += 1;
        self.sum += value;
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines of series `labels` (rendered).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        if self.count == 0 {
            return;
        }
        let mut cumulative = 0;
        for (bound, n) in SECONDS_BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// The series of one (queue, kind) pair.
#[derive(Clone, Debug, Default)]
struct KindSeries {
    counts: [u64; COUNTERS.len()],
    run: Histogram,
}

/// The series of one queue: its wait histogram and its kinds' series.
#[derive(Clone, Debug, Default)]
struct QueueSeries {
    wait: Histogram,
    kinds: BTreeMap<String, KindSeries>,
    /// The scrape epoch when it was last recorded to, so a scrape keeps series recorded while
    /// it read the queue list.
    seen: u64,
}

impl QueueSeries {
    fn other() -> Self {
        let mut series = Self::default();
        series.kinds.insert(OTHER.to_owned(), KindSeries::default());
        series
    }
}

#[derive(Debug)]
struct Inner {
    queues: BTreeMap<String, QueueSeries>,
    /// Jobs beyond the bound, under `queue="_other", kind="_other"`.
    other: QueueSeries,
    /// How many (queue, kind) pairs `queues` holds.
    pairs: usize,
    epoch: u64,
}

/// The bounded job series of one engine. See the module documentation.
#[derive(Debug)]
pub struct JobSeries {
    max: usize,
    inner: Mutex<Inner>,
}

impl JobSeries {
    /// Series for at most `max` (queue, kind) pairs, besides `_other`.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            inner: Mutex::new(Inner {
                queues: BTreeMap::new(),
                other: QueueSeries::other(),
                pairs: 0,
                epoch: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the series of (`queue`, `kind`), given a slot if one is free, else on
    /// `_other`'s.
    fn with(&self, queue: &str, kind: &str, f: impl FnOnce(&mut Histogram, &mut KindSeries)) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let known = inner
            .queues
            .get(queue)
            .is_some_and(|series| series.kinds.contains_key(kind));
        if !known && inner.pairs < self.max {
            inner.pairs += 1;
            let series = inner.queues.entry(queue.to_owned()).or_default();
            series.kinds.insert(kind.to_owned(), KindSeries::default());
        }
        let epoch = inner.epoch;
        let (series, kind) = match inner.queues.get_mut(queue) {
            Some(series) if series.kinds.contains_key(kind) => (series, kind),
            _ => (&mut inner.other, OTHER),
        };
        series.seen = epoch;
        if let Some(kind_series) = series.kinds.get_mut(kind) {
            f(&mut series.wait, kind_series);
        }
    }

    /// Adds `n` to `counter` of (`queue`, `kind`).
    pub fn count(&self, queue: &str, kind: &str, counter: JobCounter, n: u64) {
        self.with(queue, kind, |_, series| {
            series.counts[counter as usize] += n;
        });
    }

    /// Records a job's wait from due to started, in seconds.
    pub fn wait(&self, queue: &str, kind: &str, seconds: f64) {
        self.with(queue, kind, |wait, _| wait.record(seconds));
    }

    /// Records an attempt's run time, in seconds.
    pub fn run(&self, queue: &str, kind: &str, seconds: f64) {
        self.with(queue, kind, |_, series| series.run.record(seconds));
    }

    /// Starts a sweep: call before reading the queue list, and pass the mark to
    /// [`JobSeries::drop_gone`] with it.
    pub fn mark(&self) -> u64 {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.epoch
    }

    /// Drops the series of every queue not in `live`, unless it was recorded to since `mark`
    /// (its queue may be newer than the list), and frees their slots.
    pub fn drop_gone(&self, live: &HashSet<&str>, mark: u64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut freed = 0;
        inner.queues.retain(|queue, series| {
            let keep = live.contains(queue.as_str()) || series.seen >= mark;
            if !keep {
                freed += series.kinds.len();
            }
            keep
        });
        inner.pairs -= freed;
    }

    /// How many (queue, kind) pairs have series of their own.
    pub fn pairs(&self) -> usize {
        self.lock().pairs
    }

    /// Appends the series in Prometheus' text format, each family with its `# HELP` and
    /// `# TYPE` lines from [`METRICS`]; families without a series are left out.
    pub fn render(&self, out: &mut String) {
        let (queues, other) = {
            let inner = self.lock();
            (inner.queues.clone(), inner.other.clone())
        };
        let other_used = other
            .kinds
            .values()
            .any(|series| series.counts.iter().any(|n| *n > 0) || series.run.count > 0)
            || other.wait.count > 0;
        let all: Vec<(&str, &QueueSeries)> = queues
            .iter()
            .map(|(name, series)| (name.as_str(), series))
            .chain(other_used.then_some((OTHER, &other)))
            .collect();
        for (index, (counter, name)) in COUNTERS.iter().enumerate() {
            debug_assert_eq!(*counter as usize, index);
            render_family(out, name, &all, |out, queue, series| {
                for (kind, kind_series) in &series.kinds {
                    let labels = labels(queue, Some(kind));
                    let _ = writeln!(out, "{name}{{{labels}}} {}", kind_series.counts[index]);
                }
            });
        }
        render_family(out, WAIT_SECONDS, &all, |out, queue, series| {
            series.wait.render(out, WAIT_SECONDS, &labels(queue, None));
        });
        render_family(out, RUN_SECONDS, &all, |out, queue, series| {
            for (kind, kind_series) in &series.kinds {
                kind_series
                    .run
                    .render(out, RUN_SECONDS, &labels(queue, Some(kind)));
            }
        });
    }
}

/// Writes one family: its `# HELP` and `# TYPE` lines, then each queue's lines by `lines`.
fn render_family(
    out: &mut String,
    name: &str,
    queues: &[(&str, &QueueSeries)],
    mut lines: impl FnMut(&mut String, &str, &QueueSeries),
) {
    if queues.is_empty() {
        return;
    }
    if let Some((_, kind, help)) = METRICS.iter().find(|(metric, _, _)| *metric == name) {
        write_help_line(out, name, None, None, help);
        write_type_line(out, name, None, None, MetricKind::as_str(*kind));
    }
    for (queue, series) in queues {
        lines(out, queue, series);
    }
    out.push('\n');
}

/// `queue="…"` and, given one, `,kind="…"`, escaped.
fn labels(queue: &str, kind: Option<&str>) -> String {
    let queue = sanitize_label_value(queue);
    match kind {
        Some(kind) => format!("queue=\"{queue}\",kind=\"{}\"", sanitize_label_value(kind)),
        None => format!("queue=\"{queue}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample whose name and labels are exactly `series`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    }

    fn rendered(series: &JobSeries) -> String {
        let mut text = String::new();
        series.render(&mut text);
        text
    }

    #[test]
    fn pairs_beyond_the_bound_are_counted_under_other() {
        let series = JobSeries::new(2);
        for kind in ["a", "b", "c", "d"] {
            series.count("q", kind, JobCounter::Enqueued, 3);
            series.run("q", kind, 0.2);
        }
        let text = rendered(&series);
        let enqueued =
            |labels: &str| sample(&text, &format!("errands_jobs_enqueued_total{{{labels}}}"));
        assert_eq!(enqueued("queue=\"q\",kind=\"a\""), Some(3.0));
        assert_eq!(enqueued("queue=\"q\",kind=\"b\""), Some(3.0));
        assert_eq!(enqueued("queue=\"q\",kind=\"c\""), None);
        assert_eq!(enqueued("queue=\"_other\",kind=\"_other\""), Some(6.0));
        assert_eq!(
            sample(
                &text,
                "errands_job_run_seconds_count{queue=\"_other\",kind=\"_other\"}"
            ),
            Some(2.0)
        );
        assert_eq!(series.pairs(), 2);
    }

    #[test]
    fn gone_queues_are_dropped_and_free_their_slots() {
        let series = JobSeries::new(1);
        series.count("old", "k", JobCounter::Completed, 1);
        let mark = series.mark();
        series.drop_gone(&HashSet::new(), mark);
        assert_eq!(series.pairs(), 0);
        assert_eq!(rendered(&series), "");
        series.count("new", "k", JobCounter::Completed, 1);
        let text = rendered(&series);
        assert_eq!(
            sample(
                &text,
                "errands_jobs_completed_total{queue=\"new\",kind=\"k\"}"
            ),
            Some(1.0)
        );
        assert!(!text.contains("_other"), "{text}");
    }

    #[test]
    fn live_quiet_queues_and_queues_recorded_during_a_sweep_are_kept() {
        let series = JobSeries::new(10);
        series.count("quiet", "k", JobCounter::Enqueued, 5);
        let mark = series.mark();
        // Recorded after the mark: its queue may be missing from a list read before it.
        series.count("fresh", "k", JobCounter::Enqueued, 1);
        series.drop_gone(&HashSet::from(["quiet"]), mark);
        let text = rendered(&series);
        assert_eq!(
            sample(
                &text,
                "errands_jobs_enqueued_total{queue=\"quiet\",kind=\"k\"}"
            ),
            Some(5.0)
        );
        assert_eq!(
            sample(
                &text,
                "errands_jobs_enqueued_total{queue=\"fresh\",kind=\"k\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let series = JobSeries::new(10);
        series.wait("a\"b", "k", 0.003);
        series.wait("a\"b", "k", 7200.0);
        let text = rendered(&series);
        let labels = "queue=\"a\\\"b\"";
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("errands_job_wait_seconds_bucket{{{labels},le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.001"), Some(0.0));
        assert_eq!(bucket("0.005"), Some(1.0));
        assert_eq!(bucket("3600"), Some(1.0));
        assert_eq!(bucket("+Inf"), Some(2.0));
        assert_eq!(
            sample(&text, &format!("errands_job_wait_seconds_sum{{{labels}}}")),
            Some(7200.003)
        );
    }
}
