//! Reading jobs, leasing them to workers, and every change a worker or a user makes to one.
//! Each function runs in the caller's transaction; changes lock the row (`FOR UPDATE`) or
//! are guarded by the state and lease they expect.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use errands_core::lifecycle::{
    decide_cancel, decide_delete, decide_retry, Cancellation, FailedAttempt,
};
use errands_core::{Job, JobId, JobState, Progress};
use errands_store::{ClaimRequest, CompletedJob, JobFilter, JobPage, MovedJob, StoreError};
use serde_json::Value;
use tokio_postgres::types::{Json, ToSql};

use crate::error::{from_pg, violates};
use crate::notify::Wakeups;
use crate::rows::{attempts, headers_of, job_from_row, jobs_from_rows, JOB_COLUMNS};

pub(crate) async fn get(client: &impl GenericClient, id: JobId) -> Result<Job, StoreError> {
    read(client, id, "").await
}

/// The job, read with `lock` (`""` or `FOR UPDATE`).
pub(crate) async fn read(
    client: &impl GenericClient,
    id: JobId,
    lock: &str,
) -> Result<Job, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 {lock}"
        ))
        .await
        .map_err(from_pg)?;
    let row = client
        .query_opt(&statement, &[&id.0])
        .await
        .map_err(from_pg)?
        .ok_or(StoreError::NotFound(id))?;
    job_from_row(&row)
}

pub(crate) async fn list(
    client: &impl GenericClient,
    filter: &JobFilter,
) -> Result<JobPage, StoreError> {
    let state = filter.state.map(|s| s.as_str());
    let before = filter.before.map(|id| id.0);
    let mut filters: Vec<(&str, &(dyn ToSql + Sync))> = Vec::new();
    if let Some(queue) = &filter.queue {
        filters.push(("queue = ?", queue));
    }
    if let Some(state) = &state {
        filters.push(("state = ?", state));
    }
    if let Some(kind) = &filter.kind {
        filters.push(("kind = ?", kind));
    }
    if let Some(tag) = &filter.tag {
        filters.push(("? = ANY(tags)", tag));
    }
    if let Some(before) = &before {
        filters.push(("id < ?", before));
    }
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs");
    for (n, (clause, _)) in filters.iter().enumerate() {
        sql.push_str(if n == 0 { " WHERE " } else { " AND " });
        sql.push_str(&clause.replace('?', &format!("${}", n + 1)));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", filter.limit + 1));
    let params: Vec<&(dyn ToSql + Sync)> = filters.iter().map(|(_, value)| *value).collect();
    let rows = client.query(&sql, &params).await.map_err(from_pg)?;
    let mut jobs = jobs_from_rows(&rows)?;
    let next = if jobs.len() > filter.limit {
        jobs.truncate(filter.limit);
        jobs.last().map(|job| job.id)
    } else {
        None
    };
    Ok(JobPage { jobs, next })
}

/// Leases ready jobs queue by queue. Rows another node is leasing at the same instant are
/// skipped, not waited for, and the state is checked again under the row lock.
pub(crate) async fn claim(
    client: &impl GenericClient,
    request: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Vec<Job>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "WITH picked AS ( \
                SELECT id FROM jobs WHERE state = 'queued' AND queue = $3 \
                AND NOT EXISTS (SELECT 1 FROM queues WHERE name = $3 AND paused) \
                ORDER BY priority DESC, run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET state = 'running', attempt = attempt + 1, worker_id = $1, \
                node_id = $5, started_at = $2::timestamptz, progress = NULL, \
                deadline = $2::timestamptz + timeout * interval '1 second' \
             FROM picked WHERE jobs.id = picked.id AND jobs.state = 'queued' \
             RETURNING {}",
            JOB_COLUMNS
                .split(", ")
                .map(|c| format!("jobs.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .await
        .map_err(from_pg)?;
    let mut claimed = Vec::new();
    for queue in &request.queues {
        let wanted = request.limit - claimed.len();
        if wanted == 0 {
            break;
        }
        let rows = client
            .query(
                &statement,
                &[
                    &request.worker_id,
                    &now,
                    queue,
                    &(wanted as i64),
                    &request.node_id,
                ],
            )
            .await
            .map_err(from_pg)?;
        let mut jobs = jobs_from_rows(&rows)?;
        // RETURNING gives no order; deliver in dispatch order.
        jobs.sort_by(|a, b| (b.priority, a.run_at, a.id).cmp(&(a.priority, b.run_at, b.id)));
        claimed.append(&mut jobs);
    }
    Ok(claimed)
}

pub(crate) async fn unclaim(
    client: &impl GenericClient,
    worker_id: &str,
    ids: &[JobId],
    wakeups: &mut Wakeups,
) -> Result<Vec<MovedJob>, StoreError> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    let rows = client
        .query(
            "UPDATE jobs SET state = 'queued', attempt = attempt - 1, worker_id = NULL, \
             node_id = NULL, started_at = NULL, deadline = NULL \
             WHERE id = ANY($1) AND state = 'running' AND worker_id = $2 \
             RETURNING id, queue, kind, attempt",
            &[&ids, &worker_id],
        )
        .await
        .map_err(from_pg)?;
    let mut moved = Vec::with_capacity(rows.len());
    for row in rows {
        let job = MovedJob {
            id: JobId(row.get(0)),
            queue: row.get(1),
            kind: row.get(2),
            attempt: attempts(row.get(3))?,
        };
        wakeups.ready(&job.queue);
        moved.push(job);
    }
    Ok(moved)
}

pub(crate) async fn complete(
    client: &impl GenericClient,
    id: JobId,
    worker_id: &str,
    result: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<CompletedJob, StoreError> {
    let statement = client
        .prepare_cached(
            "UPDATE jobs SET state = 'completed', result = $1, finished_at = $2::timestamptz, \
             deadline = NULL, worker_id = NULL, node_id = NULL, \
             expires_at = $2::timestamptz + retention * interval '1 second' \
             WHERE id = $3 AND state = 'running' AND worker_id = $4 \
             RETURNING queue, kind, attempt, started_at, headers",
        )
        .await
        .map_err(from_pg)?;
    let row = client
        .query_opt(&statement, &[&result, &now, &id.0, &worker_id])
        .await
        .map_err(from_pg)?
        .ok_or(StoreError::NotLeased(id))?;
    Ok(CompletedJob {
        id,
        queue: row.get(0),
        kind: row.get(1),
        attempt: attempts(row.get(2))?,
        started_at: row.get(3),
        headers: headers_of(&row, 4),
    })
}

/// Completes every job of `batch` (id and result, ids distinct) that `worker_id` still holds,
/// in one statement; returns each one's outcome in the batch's order (`NotLeased` for a job
/// the worker no longer holds). One statement for a node's whole report, where a statement
/// per job costs a round trip and an executor start each.
pub(crate) async fn complete_many(
    client: &impl GenericClient,
    worker_id: &str,
    batch: &[(JobId, Option<&Value>)],
    now: DateTime<Utc>,
) -> Result<Vec<Result<CompletedJob, StoreError>>, StoreError> {
    let statement = client
        .prepare_cached(
            "UPDATE jobs SET state = 'completed', result = r.result, \
             finished_at = $3::timestamptz, deadline = NULL, worker_id = NULL, node_id = NULL, \
             expires_at = $3::timestamptz + jobs.retention * interval '1 second' \
             FROM unnest($1::uuid[], $2::jsonb[]) AS r(id, result) \
             WHERE jobs.id = r.id AND jobs.state = 'running' AND jobs.worker_id = $4 \
             RETURNING jobs.id, jobs.queue, jobs.kind, jobs.attempt, jobs.started_at, \
             jobs.headers",
        )
        .await
        .map_err(from_pg)?;
    let ids: Vec<uuid::Uuid> = batch.iter().map(|(id, _)| id.0).collect();
    let results: Vec<Option<&Value>> = batch.iter().map(|(_, result)| *result).collect();
    let rows = client
        .query(&statement, &[&ids, &results, &now, &worker_id])
        .await
        .map_err(from_pg)?;
    let mut done = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let id = JobId(row.get(0));
        let job = CompletedJob {
            id,
            queue: row.get(1),
            kind: row.get(2),
            attempt: attempts(row.get(3))?,
            started_at: row.get(4),
            headers: headers_of(&row, 5),
        };
        done.insert(id, job);
    }
    Ok(batch
        .iter()
        .map(|(id, _)| done.remove(id).ok_or(StoreError::NotLeased(*id)))
        .collect())
}

/// Records a failed attempt of a job `worker_id` holds, as `decide` says (see
/// [`decide_failure`](errands_core::lifecycle::decide_failure)).
pub(crate) async fn fail(
    client: &impl GenericClient,
    id: JobId,
    worker_id: &str,
    decide: impl FnOnce(&Job) -> FailedAttempt,
    wakeups: &mut Wakeups,
) -> Result<Job, StoreError> {
    let job = read(client, id, "FOR UPDATE").await?;
    if job.state != JobState::Running || job.worker_id.as_deref() != Some(worker_id) {
        return Err(StoreError::NotLeased(id));
    }
    let failed = decide(&job);
    record_failure(client, &job, failed, wakeups)
        .await?
        .ok_or(StoreError::NotLeased(id))
}

/// Writes the failed attempt `failed` of the running `job` as read; `None` if the job left
/// the lease it was read under.
pub(crate) async fn record_failure(
    client: &impl GenericClient,
    job: &Job,
    failed: FailedAttempt,
    wakeups: &mut Wakeups,
) -> Result<Option<Job>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "UPDATE jobs SET state = $1, run_at = $2, errors = $3::jsonb, \
             worker_id = NULL, node_id = NULL, deadline = NULL, finished_at = $4, expires_at = $5 \
             WHERE id = $6 AND state = 'running' AND worker_id = $7 AND attempt = $8 \
             RETURNING {JOB_COLUMNS}"
        ))
        .await
        .map_err(from_pg)?;
    let row = client
        .query_opt(
            &statement,
            &[
                &failed.state.as_str(),
                &failed.run_at,
                // The capped history replaces the one read (see `capped_history`).
                &Json(&failed.errors),
                &failed.finished_at,
                &failed.expires_at,
                &job.id.0,
                &job.worker_id,
                &i64::from(job.attempt),
            ],
        )
        .await
        .map_err(from_pg)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let after = job_from_row(&row)?;
    wakeups.moved(&after.queue, after.state);
    Ok(Some(after))
}

pub(crate) async fn progress(
    client: &impl GenericClient,
    id: JobId,
    worker_id: &str,
    progress: &Progress,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "UPDATE jobs SET progress = $1 WHERE id = $2 AND state = 'running' AND worker_id = $3",
        )
        .await
        .map_err(from_pg)?;
    let changed = client
        .execute(&statement, &[&Json(progress), &id.0, &worker_id])
        .await
        .map_err(from_pg)?;
    if changed == 0 {
        return Err(StoreError::NotLeased(id));
    }
    Ok(())
}

pub(crate) async fn cancel(
    client: &impl GenericClient,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<(Job, Option<String>), StoreError> {
    let job = read(client, id, "FOR UPDATE").await?;
    let decision = decide_cancel(job.state, job.retention, now)
        .map_err(|refused| StoreError::refused(id, refused))?;
    let Cancellation::Cancel {
        finished_at,
        expires_at,
        abort_worker,
    } = decision
    else {
        return Ok((job, None));
    };
    let holder = if abort_worker {
        job.worker_id.clone()
    } else {
        None
    };
    let row = client
        .query_one(
            &format!(
                "UPDATE jobs SET state = 'cancelled', finished_at = $1, worker_id = NULL, \
                 node_id = NULL, deadline = NULL, expires_at = $2 WHERE id = $3 \
                 RETURNING {JOB_COLUMNS}"
            ),
            &[&finished_at, &expires_at, &id.0],
        )
        .await
        .map_err(from_pg)?;
    Ok((job_from_row(&row)?, holder))
}

pub(crate) async fn retry(
    client: &impl GenericClient,
    id: JobId,
    reset_attempts: bool,
    now: DateTime<Utc>,
    wakeups: &mut Wakeups,
) -> Result<Job, StoreError> {
    let job = read(client, id, "FOR UPDATE").await?;
    let plan = decide_retry(
        job.state,
        job.attempt,
        job.max_attempts,
        job.interruptions,
        reset_attempts,
    )
    .map_err(|refused| StoreError::refused(id, refused))?;
    let retried = client
        .query_one(
            &format!(
                "UPDATE jobs SET state = 'queued', run_at = $1, attempt = $2, max_attempts = $3, \
                 interruptions = $5, finished_at = NULL, expires_at = NULL, result = NULL, \
                 progress = NULL WHERE id = $4 RETURNING {JOB_COLUMNS}"
            ),
            &[
                &now,
                &i64::from(plan.attempt),
                &i64::from(plan.max_attempts),
                &id.0,
                &i64::from(plan.interruptions),
            ],
        )
        .await;
    match retried {
        Ok(row) => {
            wakeups.ready(&job.queue);
            job_from_row(&row)
        }
        Err(error) if violates(&error, "jobs_unique_holder") => Err(StoreError::UniqueKeyHeld {
            id,
            key: job.unique_key.unwrap_or_default(),
        }),
        Err(error) => Err(from_pg(error)),
    }
}

pub(crate) async fn delete(client: &impl GenericClient, id: JobId) -> Result<(), StoreError> {
    let job = read(client, id, "FOR UPDATE").await?;
    decide_delete(job.state).map_err(|refused| StoreError::refused(id, refused))?;
    client
        .execute("DELETE FROM jobs WHERE id = $1", &[&id.0])
        .await
        .map_err(from_pg)?;
    Ok(())
}
