//! An attempt interrupted by its worker shutting down (see
//! [`Store::interrupt`](errands_store::Store::interrupt)), in the caller's transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use errands_core::lifecycle::{decide_interruption, Interruption};
use errands_core::{Job, JobId, JobState};
use errands_store::{Reported, StoreError};

use crate::error::from_pg;
use crate::jobs;
use crate::notify::Wakeups;
use crate::rows::{job_from_row, JOB_COLUMNS};

/// Applies the interruption of the attempt `worker_id` runs of job `id`, as
/// [`decide_interruption`] decides it, with the job's row locked.
pub(crate) async fn interrupt(
    client: &impl GenericClient,
    id: JobId,
    worker_id: &str,
    now: DateTime<Utc>,
    dead_retention: f64,
    wakeups: &mut Wakeups,
) -> Result<Reported, StoreError> {
    let job = jobs::read(client, id, "FOR UPDATE").await?;
    if job.state != JobState::Running || job.worker_id.as_deref() != Some(worker_id) {
        return Err(StoreError::NotLeased(id));
    }
    let decided = decide_interruption(&job, now, dead_retention, &mut rand::rng());
    let written = match decided {
        Interruption::Requeue {
            attempt,
            interruptions,
            run_at,
        } => requeue(client, &job, attempt, interruptions, run_at, wakeups)
            .await?
            .map(|job| Reported::Requeued(Box::new(job))),
        Interruption::Fail(failed) => jobs::record_failure(client, &job, failed, wakeups)
            .await?
            .map(|job| Reported::Failed(Box::new(job))),
    };
    written.ok_or(StoreError::NotLeased(id))
}

/// Puts the running `job` as read back in its queue with `attempt` and `interruptions`;
/// `None` if it is no longer under the lease read.
async fn requeue(
    client: &impl GenericClient,
    job: &Job,
    attempt: u32,
    interruptions: u32,
    run_at: DateTime<Utc>,
    wakeups: &mut Wakeups,
) -> Result<Option<Job>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "UPDATE jobs SET state = 'queued', attempt = $1, interruptions = $2, run_at = $3, \
             worker_id = NULL, node_id = NULL, started_at = NULL, deadline = NULL \
             WHERE id = $4 AND state = 'running' AND worker_id = $5 AND attempt = $6 \
             RETURNING {JOB_COLUMNS}"
        ))
        .await
        .map_err(from_pg)?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &i64::from(attempt),
        &i64::from(interruptions),
        &run_at,
        &job.id.0,
        &job.worker_id,
        &i64::from(job.attempt),
    ];
    let Some(row) = client
        .query_opt(&statement, &params)
        .await
        .map_err(from_pg)?
    else {
        return Ok(None);
    };
    let after = job_from_row(&row)?;
    wakeups.ready(&after.queue);
    Ok(Some(after))
}
