//! The server taking running jobs away from their workers: a lost connection, a timeout, a
//! node whose lease expired. Each job found is failed under the lease it was found with, so
//! two nodes sweeping at once record one failure.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use errands_core::lifecycle::{decide_failure, ReleaseCause};
use errands_core::Job;
use errands_store::{ReleasedJob, StoreError};
use tokio_postgres::types::ToSql;

use crate::error::from_pg;
use crate::jobs::record_failure;
use crate::notify::Wakeups;
use crate::rows::{job_from_row, J_COLUMNS};

/// Most jobs one sweep releases; the next pass takes the rest.
pub(crate) const SWEEP_BATCH: i64 = 1_000;

/// Running jobs `sql` selects (with [`J_COLUMNS`] from `jobs j`), each with the node that
/// held it.
pub(crate) async fn running(
    client: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<(Job, Option<String>)>, StoreError> {
    let rows = client.query(sql, params).await.map_err(from_pg)?;
    rows.iter()
        .map(|row| Ok((job_from_row(row)?, row.try_get("node_id").map_err(from_pg)?)))
        .collect()
}

/// Fails each of `jobs` with the cause `cause_of` gives it.
pub(crate) async fn release(
    client: &impl GenericClient,
    jobs: Vec<(Job, Option<String>)>,
    cause_of: impl Fn(&Job, Option<&str>) -> ReleaseCause,
    now: DateTime<Utc>,
    dead_retention: f64,
    wakeups: &mut Wakeups,
) -> Result<Vec<ReleasedJob>, StoreError> {
    let mut released = Vec::with_capacity(jobs.len());
    for (job, node) in jobs {
        let cause = cause_of(&job, node.as_deref());
        let error = cause.error(job.attempt, now);
        let worker_id = job.worker_id.clone().unwrap_or_default();
        let decided = decide_failure(
            &job,
            error,
            cause.failure_cause(),
            now,
            dead_retention,
            &mut rand::rng(),
        );
        let failed = record_failure(client, &job, decided, wakeups).await?;
        if let Some(after) = failed {
            released.push(ReleasedJob {
                id: after.id,
                worker_id,
                queue: after.queue,
                kind: after.kind,
                state: after.state,
                attempt: after.attempt,
            });
        }
    }
    Ok(released)
}

pub(crate) async fn release_worker(
    client: &impl GenericClient,
    worker_id: &str,
    now: DateTime<Utc>,
    dead_retention: f64,
    wakeups: &mut Wakeups,
) -> Result<Vec<ReleasedJob>, StoreError> {
    // Waits for rows a report holds, rather than skipping them: a skipped job whose report
    // then rolled back would stay running under a worker that is gone.
    let held = running(
        client,
        &format!(
            "SELECT {J_COLUMNS}, j.node_id FROM jobs j \
             WHERE j.state = 'running' AND j.worker_id = $1 FOR UPDATE"
        ),
        &[&worker_id],
    )
    .await?;
    let cause = ReleaseCause::WorkerLost {
        worker_id: worker_id.to_owned(),
    };
    release(
        client,
        held,
        |_, _| cause.clone(),
        now,
        dead_retention,
        wakeups,
    )
    .await
}

pub(crate) async fn expire_deadlines(
    client: &impl GenericClient,
    now: DateTime<Utc>,
    dead_retention: f64,
    wakeups: &mut Wakeups,
) -> Result<Vec<ReleasedJob>, StoreError> {
    let held = running(
        client,
        &format!(
            "SELECT {J_COLUMNS}, j.node_id FROM jobs j \
             WHERE j.state = 'running' AND j.deadline <= $1 \
             ORDER BY j.deadline LIMIT $2 FOR UPDATE SKIP LOCKED"
        ),
        &[&now, &SWEEP_BATCH],
    )
    .await?;
    release(
        client,
        held,
        |_, _| ReleaseCause::Timeout,
        now,
        dead_retention,
        wakeups,
    )
    .await
}
