//! One round of store writes for a worker connection: the reports that arrived since the last
//! round, and a claim for the slots they freed, sent together so they share a group commit.
//! The connection keeps reading frames and sending held jobs while a round is in flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use errands_core::{Job, JobId};
use errands_store::StoreError;

use crate::engine::Engine;
use crate::error::EngineError;

/// A round in flight.
pub(crate) type InFlight = Pin<Box<dyn Future<Output = Round> + Send>>;

/// What a round's writes came to.
pub(crate) struct Round {
    /// Each report's outcome, by job.
    pub outcomes: Vec<(JobId, Result<(), EngineError>)>,
    /// The jobs claimed, if the round claimed.
    pub claimed: Option<Claimed>,
}

/// A claim's outcome and how many jobs it asked for.
pub(crate) struct Claimed {
    pub jobs: Result<Vec<Job>, EngineError>,
    pub wanted: usize,
}

/// A claim to make in a round: the queues in the order to try, and how many jobs.
pub(crate) struct ClaimOrder {
    pub queues: Vec<String>,
    pub wanted: usize,
}

/// Starts a round: applies `reports` in order and makes `claim`, concurrently, so on SQLite
/// all of it lands in one group commit.
pub(crate) fn start(
    engine: Arc<Engine>,
    worker_id: String,
    reports: Vec<ReportWrite>,
    claim: Option<ClaimOrder>,
) -> InFlight {
    Box::pin(async move {
        let applied = apply_until_written(&engine, &worker_id, reports);
        let claimed = async {
            let claim = claim?;
            let jobs = engine.claim(&worker_id, claim.queues, claim.wanted).await;
            Some(Claimed {
                jobs,
                wanted: claim.wanted,
            })
        };
        let (outcomes, claimed) = tokio::join!(applied, claimed);
        Round { outcomes, claimed }
    })
}

/// The first wait before writing again reports the store failed on for now.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between such attempts.
const LONGEST_RETRY: Duration = Duration::from_secs(2);

/// Applies `reports` in order, writing again (after a growing wait) those the store failed
/// on in a way that passes, until each is written or refused, or the server closes. A report
/// dropped on such a failure would leave its job `running` under a worker that finished it;
/// meanwhile the connection keeps reading and pinging, and later reports wait their turn.
async fn apply_until_written(
    engine: &Engine,
    worker_id: &str,
    mut reports: Vec<ReportWrite>,
) -> Vec<(JobId, Result<(), EngineError>)> {
    let mut settled = Vec::with_capacity(reports.len());
    let mut wait = FIRST_RETRY;
    while !reports.is_empty() {
        let outcomes = engine.apply_reports(worker_id, reports.clone()).await;
        let mut again = Vec::new();
        for (report, (id, outcome)) in reports.into_iter().zip(outcomes) {
            match outcome {
                Err(EngineError::Store(StoreError::Transient(error))) if !engine.is_closing() => {
                    tracing::warn!(worker_id, job_id = %id, error, "report not written yet; trying again");
                    again.push(report);
                }
                outcome => settled.push((id, outcome)),
            }
        }
        reports = again;
        if !reports.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = engine.closed() => {}
            }
            wait = (wait * 2).min(LONGEST_RETRY);
        }
    }
    settled
}

/// One job report from the worker, ready to be written.
pub(crate) type ReportWrite = crate::engine::WorkerReport;
