//! Converting between rows and jobs.

use std::collections::BTreeMap;

use errands_core::{AttemptError, Backoff, Job, JobId, JobState, Progress};
use serde_json::Value;
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use crate::error::{corrupt, from_pg};
use errands_store::StoreError;

/// Every job column, in the order [`job_from_row`] reads them.
pub(crate) const JOB_COLUMNS: &str = "id, queue, kind, args, state, priority, attempt, \
    max_attempts, backoff, timeout, unique_key, unique_for, retention, tags, progress, result, \
    errors, worker_id, created_at, run_at, started_at, finished_at, deadline, headers, \
    interruptions";

/// The same columns qualified by the table alias `j`, for joins.
pub(crate) const J_COLUMNS: &str = "j.id, j.queue, j.kind, j.args, j.state, j.priority, \
    j.attempt, j.max_attempts, j.backoff, j.timeout, j.unique_key, j.unique_for, j.retention, \
    j.tags, j.progress, j.result, j.errors, j.worker_id, j.created_at, j.run_at, j.started_at, \
    j.finished_at, j.deadline, j.headers, j.interruptions";

/// Parses a stored state.
pub(crate) fn parse_state(text: &str) -> Result<JobState, StoreError> {
    text.parse().map_err(corrupt)
}

/// A stored count as an attempt number.
pub(crate) fn attempts(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(corrupt)
}

/// Reads a row selected with [`JOB_COLUMNS`].
pub(crate) fn job_from_row(row: &Row) -> Result<Job, StoreError> {
    let state: String = row.try_get(4).map_err(from_pg)?;
    let backoff: Json<Backoff> = row.try_get(8).map_err(from_pg)?;
    let progress: Option<Json<Progress>> = row.try_get(14).map_err(from_pg)?;
    let errors: Json<Vec<AttemptError>> = row.try_get(16).map_err(from_pg)?;
    Ok(Job {
        id: JobId(row.try_get(0).map_err(from_pg)?),
        queue: row.try_get(1).map_err(from_pg)?,
        kind: row.try_get(2).map_err(from_pg)?,
        args: row.try_get::<_, Value>(3).map_err(from_pg)?,
        state: parse_state(&state)?,
        priority: row.try_get(5).map_err(from_pg)?,
        attempt: attempts(row.try_get(6).map_err(from_pg)?)?,
        max_attempts: attempts(row.try_get(7).map_err(from_pg)?)?,
        backoff: backoff.0,
        timeout: row.try_get(9).map_err(from_pg)?,
        unique_key: row.try_get(10).map_err(from_pg)?,
        unique_for: row.try_get(11).map_err(from_pg)?,
        retention: row.try_get(12).map_err(from_pg)?,
        tags: row.try_get(13).map_err(from_pg)?,
        progress: progress.map(|p| p.0),
        result: row.try_get(15).map_err(from_pg)?,
        errors: errors.0,
        worker_id: row.try_get(17).map_err(from_pg)?,
        created_at: row.try_get(18).map_err(from_pg)?,
        run_at: row.try_get(19).map_err(from_pg)?,
        started_at: row.try_get(20).map_err(from_pg)?,
        finished_at: row.try_get(21).map_err(from_pg)?,
        deadline: row.try_get(22).map_err(from_pg)?,
        headers: headers_of(row, 23),
        interruptions: attempts(row.try_get(24).map_err(from_pg)?)?,
    })
}

/// The headers in column `index` (jsonb, NULL when the job has none). Unreadable ones, which
/// only a hand-edited row holds, read as none: they carry trace links, not the job's work.
pub(crate) fn headers_of(row: &Row, index: usize) -> BTreeMap<String, String> {
    row.try_get::<_, Option<Json<BTreeMap<String, String>>>>(index)
        .ok()
        .flatten()
        .map(|headers| headers.0)
        .unwrap_or_default()
}

/// Reads every row selected with [`JOB_COLUMNS`].
pub(crate) fn jobs_from_rows(rows: &[Row]) -> Result<Vec<Job>, StoreError> {
    rows.iter().map(job_from_row).collect()
}
