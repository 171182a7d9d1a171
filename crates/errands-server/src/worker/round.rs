//! One round of store writes for a worker connection: the reports that arrived since the last
//! round, and a claim for the slots they freed, sent together so they share a group commit.
//! The connection keeps reading frames and sending held jobs while a round is in flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use errands_core::{Job, JobId};

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
        let applied = async {
            if reports.is_empty() {
                Vec::new()
            } else {
                engine.apply_reports(&worker_id, reports).await
            }
        };
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

/// One job report from the worker, ready to be written.
pub(crate) type ReportWrite = crate::engine::WorkerReport;
