//! The SQL of an interrupted attempt (see [`Store::interrupt`](crate::Store::interrupt)).

use chrono::{DateTime, Utc};
use errands_core::lifecycle::{decide_interruption, Interruption};
use errands_core::{Job, JobId};
use rusqlite::{params, Connection, OptionalExtension};

use super::ops::{leased, write_failure};
use super::rows::{job_from_row, to_ms, JOB_COLUMNS};
use crate::error::StoreError;
use crate::store::Reported;

/// Applies the interruption of the attempt `worker_id` runs of job `id`, as
/// [`decide_interruption`] decides it.
pub(crate) fn interrupt(
    conn: &Connection,
    id: JobId,
    worker_id: &str,
    now: DateTime<Utc>,
    dead_retention: f64,
) -> Result<Reported, StoreError> {
    let job = leased(conn, id, worker_id)?;
    let written = match decide_interruption(&job, now, dead_retention, &mut rand::rng()) {
        Interruption::Requeue {
            attempt,
            interruptions,
            run_at,
        } => requeue(conn, &job, attempt, interruptions, run_at)?.map(Reported::Requeued),
        Interruption::Fail(failed) => {
            write_failure(conn, &job, &failed)?.map(|job| Reported::Failed(Box::new(job)))
        }
    };
    written.ok_or(StoreError::NotLeased(id))
}

/// Puts the running `job` as read back in its queue with `attempt` and `interruptions`;
/// `None` if it is no longer under the lease read.
fn requeue(
    conn: &Connection,
    job: &Job,
    attempt: u32,
    interruptions: u32,
    run_at: DateTime<Utc>,
) -> Result<Option<Box<Job>>, StoreError> {
    conn.prepare_cached(&format!(
        "UPDATE jobs SET state = 'queued', attempt = ?1, interruptions = ?2, run_at = ?3, \
         worker_id = NULL, node_id = NULL, started_at = NULL, deadline = NULL \
         WHERE id = ?4 AND state = 'running' AND worker_id = ?5 AND attempt = ?6 \
         RETURNING {JOB_COLUMNS}"
    ))?
    .query_row(
        params![
            attempt,
            interruptions,
            to_ms(run_at),
            job.id.to_string(),
            job.worker_id,
            job.attempt
        ],
        |row| Ok(job_from_row(row)),
    )
    .optional()?
    .transpose()
    .map(|job| job.map(Box::new))
}
