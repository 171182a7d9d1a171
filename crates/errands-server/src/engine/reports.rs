//! Workers' reports (complete, fail, progress, interrupted): written to the store together, in
//! the order the worker sent them, then counted and published one by one.

use errands_core::event::Change;
use errands_core::lifecycle::FailureCause;
use errands_core::protocol::WorkerMessage;
use errands_core::{AttemptError, JobId, JobState, Progress, ValidationError};
use errands_store::{Report, Reported};

use super::spans::{Attempt, AttemptOutcome};
use super::{telemetry, Engine};
use crate::error::EngineError;

/// Longest progress `message`, in bytes: a status line, not a payload (that is `data`).
pub const MAX_PROGRESS_MESSAGE_BYTES: usize = 4 << 10;

/// One report from a worker on a job it holds.
#[derive(Clone)]
pub struct WorkerReport {
    /// The job.
    pub id: JobId,
    /// The job's queue and kind, for a progress report's event.
    pub labels: Option<(String, String)>,
    /// What the worker said.
    pub report: WorkerMessage,
}

/// A report turned into a store write, and what publishing it needs afterwards.
enum Prepared {
    Write(Report, Option<(String, String)>),
    Refused(EngineError),
    Nothing,
}

impl Engine {
    /// Applies a worker's reports in order and returns each one's outcome.
    pub async fn apply_reports(
        &self,
        worker_id: &str,
        reports: Vec<WorkerReport>,
    ) -> Vec<(JobId, Result<(), EngineError>)> {
        let now = self.now();
        let ids: Vec<JobId> = reports.iter().map(|r| r.id).collect();
        let max_data = self.worker_limits.max_progress_data_bytes;
        let prepared: Vec<Prepared> = reports
            .into_iter()
            .map(|r| prepare(r, now, max_data))
            .collect();
        let (writes, labels): (Vec<Report>, Vec<Option<(String, String)>>) = prepared
            .iter()
            .filter_map(|p| match p {
                Prepared::Write(report, labels) => Some((report.clone(), labels.clone())),
                _ => None,
            })
            .unzip();
        let mut written = self
            .store
            .report(worker_id, writes.clone(), now)
            .await
            .into_iter()
            .zip(writes.into_iter().zip(labels));
        let mut outcomes = Vec::with_capacity(ids.len());
        for (id, prepared) in ids.into_iter().zip(prepared) {
            let outcome = match prepared {
                Prepared::Write(..) => match written.next() {
                    Some((Ok(reported), (report, labels))) => {
                        self.after_report(reported, report, labels, now);
                        Ok(())
                    }
                    Some((Err(error), _)) => Err(error.into()),
                    None => Err(EngineError::Store(errands_store::StoreError::Backend(
                        "the store returned fewer outcomes than reports".into(),
                    ))),
                },
                Prepared::Refused(error) => Err(error),
                Prepared::Nothing => Ok(()),
            };
            outcomes.push((id, outcome));
        }
        outcomes
    }

    /// Counts and publishes what a report did.
    fn after_report(
        &self,
        reported: Reported,
        report: Report,
        labels: Option<(String, String)>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        match reported {
            Reported::Completed(job) => {
                tracing::debug!(job_id = %job.id, queue = %job.queue, kind = %job.kind,
                    attempt = job.attempt, "job completed");
                telemetry::completed(&self.series, &job, now);
                let attempt = Attempt {
                    id: job.id,
                    queue: &job.queue,
                    kind: &job.kind,
                    number: job.attempt,
                    started_at: job.started_at,
                    headers: &job.headers,
                    outcome: AttemptOutcome::Completed,
                };
                self.spans.attempt_ended(attempt, now);
                self.throughput.record(&job.queue, now);
                self.publish_state(
                    job.id,
                    &job.queue,
                    &job.kind,
                    JobState::Completed,
                    job.attempt,
                );
            }
            Reported::Failed(job) => {
                telemetry::attempt_failed(&self.series, &job, now);
                let attempt = Attempt {
                    id: job.id,
                    queue: &job.queue,
                    kind: &job.kind,
                    number: job.attempt,
                    started_at: job.started_at,
                    headers: &job.headers,
                    outcome: AttemptOutcome::after_failure(job.state),
                };
                self.spans.attempt_ended(attempt, now);
                self.publish_job(&job);
                self.wake_after_failure(&job.queue, job.state);
            }
            Reported::Requeued(job) => {
                tracing::info!(job_id = %job.id, queue = %job.queue, kind = %job.kind,
                    "job interrupted by its worker's shutdown; queued again, attempt not used");
                self.publish_job(&job);
                self.wake_after_failure(&job.queue, job.state);
            }
            Reported::Progressed => {
                if let (Report::Progress { id, progress }, Some((queue, kind))) = (report, labels) {
                    self.publish_change(id, &queue, &kind, Change::Progress { progress });
                }
            }
        }
    }
}

/// Checks a report and turns it into the store write it asks for. Progress `data` over
/// `max_data` bytes is refused.
fn prepare(report: WorkerReport, now: chrono::DateTime<chrono::Utc>, max_data: usize) -> Prepared {
    match report.report {
        WorkerMessage::Complete { id, result } => {
            Prepared::Write(Report::Complete { id, result }, None)
        }
        WorkerMessage::Fail {
            id,
            error,
            retry,
            retry_after,
        } => {
            // The store stamps the attempt number; the worker's report does not carry it.
            let error = AttemptError {
                attempt: 0,
                kind: error.kind,
                message: error.message,
                traceback: error.traceback,
                at: now,
            };
            let cause = FailureCause::Reported { retry, retry_after };
            Prepared::Write(Report::Fail { id, error, cause }, None)
        }
        WorkerMessage::Progress { id, progress } => match check_progress(&progress, max_data) {
            Ok(()) => Prepared::Write(Report::Progress { id, progress }, report.labels),
            Err(error) => Prepared::Refused(error.into()),
        },
        WorkerMessage::Interrupted { id } => Prepared::Write(Report::Interrupted { id }, None),
        WorkerMessage::Hello(_) | WorkerMessage::Capacity { .. } => Prepared::Nothing,
    }
}

/// Progress is stored on the job and fanned out to every event subscriber, so its size is
/// bounded here, where it enters.
fn check_progress(progress: &Progress, max_data: usize) -> Result<(), ValidationError> {
    if let Some(percent) = progress.percent {
        if !(0.0..=100.0).contains(&percent) {
            return Err(ValidationError::new(
                "percent",
                format!("percent must be between 0 and 100, got {percent}"),
            ));
        }
    }
    let message = progress.message.as_deref().map_or(0, str::len);
    if message > MAX_PROGRESS_MESSAGE_BYTES {
        return Err(ValidationError::new(
            "message",
            format!("progress message is {message} bytes; at most {MAX_PROGRESS_MESSAGE_BYTES} are allowed"),
        ));
    }
    let data = progress
        .data
        .as_ref()
        .map_or(Ok(0), json_len)
        .unwrap_or(usize::MAX);
    if data > max_data {
        return Err(ValidationError::new(
            "data",
            format!("progress data is {data} bytes of JSON; at most {max_data} are allowed"),
        ));
    }
    Ok(())
}

/// The length of `value` as compact JSON, counted without building the text.
fn json_len(value: &serde_json::Value) -> Result<usize, serde_json::Error> {
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, value)?;
    Ok(counter.0)
}

/// A writer that only counts.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
