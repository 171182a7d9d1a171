//! Applying a worker's reports inside a transaction: runs of completions in one statement,
//! failures and progress one by one, in the order the worker sent them.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use errands_core::lifecycle::decide_failure;
use errands_core::{Job, JobId};
use errands_store::{Report, Reported, StoreError};
use serde_json::Value;

use crate::jobs;
use crate::notify::Wakeups;

/// Applies one report inside the caller's transaction.
async fn apply_in(
    tx: &impl GenericClient,
    worker_id: &str,
    report: &Report,
    now: DateTime<Utc>,
    retention: f64,
    wakeups: &mut Wakeups,
) -> Result<Reported, StoreError> {
    match report {
        Report::Complete { id, result } => jobs::complete(tx, *id, worker_id, result.as_ref(), now)
            .await
            .map(Reported::Completed),
        Report::Fail { id, error, cause } => {
            let decide = |job: &Job| {
                decide_failure(job, error.clone(), *cause, now, retention, &mut rand::rng())
            };
            jobs::fail(tx, *id, worker_id, decide, wakeups)
                .await
                .map(|job| Reported::Failed(Box::new(job)))
        }
        Report::Progress { id, progress } => jobs::progress(tx, *id, worker_id, progress)
            .await
            .map(|()| Reported::Progressed),
        Report::Interrupted { id } => {
            crate::interrupt::interrupt(tx, *id, worker_id, now, retention, wakeups).await
        }
    }
}

/// Applies a worker's reports in order inside the caller's transaction: each run of
/// completions of distinct jobs in one statement ([`jobs::complete_many`]), the other reports
/// one by one. A report refused (not leased) is its own outcome; a database error has aborted
/// the transaction, and the whole batch is retried or fails.
pub(crate) async fn apply_all(
    tx: &impl GenericClient,
    worker_id: &str,
    batch: &[Report],
    now: DateTime<Utc>,
    retention: f64,
    wakeups: &mut Wakeups,
) -> Result<Vec<Result<Reported, StoreError>>, StoreError> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut run: Vec<(JobId, Option<&Value>)> = Vec::new();
    for report in batch {
        if let Report::Complete { id, result } = report {
            if !run.iter().any(|(held, _)| held == id) {
                run.push((*id, result.as_ref()));
                continue;
            }
        }
        complete_run(tx, worker_id, &mut run, now, &mut outcomes).await?;
        if let Report::Complete { id, result } = report {
            run.push((*id, result.as_ref()));
            continue;
        }
        let outcome = apply_in(tx, worker_id, report, now, retention, wakeups).await;
        if let Err(error @ (StoreError::Backend(_) | StoreError::Transient(_))) = outcome {
            return Err(error);
        }
        outcomes.push(outcome);
    }
    complete_run(tx, worker_id, &mut run, now, &mut outcomes).await?;
    Ok(outcomes)
}

/// Writes the completions gathered in `run` (if any), appends their outcomes, empties it.
async fn complete_run(
    tx: &impl GenericClient,
    worker_id: &str,
    run: &mut Vec<(JobId, Option<&Value>)>,
    now: DateTime<Utc>,
    outcomes: &mut Vec<Result<Reported, StoreError>>,
) -> Result<(), StoreError> {
    if run.is_empty() {
        return Ok(());
    }
    let done = jobs::complete_many(tx, worker_id, run, now).await?;
    outcomes.extend(done.into_iter().map(|o| o.map(Reported::Completed)));
    run.clear();
    Ok(())
}
