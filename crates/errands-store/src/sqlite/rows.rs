//! Converting between rows and jobs.

use chrono::{DateTime, Utc};
use errands_core::{Job, JobId, JobState};
use rusqlite::Row;

use crate::error::StoreError;

/// Every job column, in the order [`job_from_row`] reads them.
pub(crate) const JOB_COLUMNS: &str = "id, queue, kind, args, state, priority, attempt, \
    max_attempts, backoff, timeout, unique_key, unique_for, retention, tags, progress, result, \
    errors, worker_id, created_at, run_at, started_at, finished_at, deadline, headers, \
    interruptions";

/// Unix milliseconds of a time, as stored.
pub(crate) fn to_ms(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

/// A stored time.
pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Backend(format!("stored time {ms} is out of range")))
}

fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(from_ms).transpose()
}

fn opt_json<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>, StoreError> {
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

/// Parses a stored id.
pub(crate) fn parse_id(text: &str) -> Result<JobId, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Backend(format!("stored id {text:?} is not a UUID")))
}

/// Parses a stored state.
pub(crate) fn parse_state(text: &str) -> Result<JobState, StoreError> {
    text.parse()
        .map_err(|e: errands_core::state::UnknownState| StoreError::Backend(e.to_string()))
}

/// Reads a row selected with [`JOB_COLUMNS`].
pub(crate) fn job_from_row(row: &Row<'_>) -> Result<Job, StoreError> {
    let id: String = row.get(0)?;
    let args: String = row.get(3)?;
    let state: String = row.get(4)?;
    let backoff: String = row.get(8)?;
    Ok(Job {
        id: parse_id(&id)?,
        queue: row.get(1)?,
        kind: row.get(2)?,
        args: serde_json::from_str(&args)?,
        state: parse_state(&state)?,
        priority: row.get(5)?,
        attempt: row.get(6)?,
        max_attempts: row.get(7)?,
        backoff: serde_json::from_str(&backoff)?,
        timeout: row.get(9)?,
        unique_key: row.get(10)?,
        unique_for: row.get(11)?,
        retention: row.get(12)?,
        tags: opt_json(row.get(13)?)?.unwrap_or_default(),
        progress: opt_json(row.get(14)?)?,
        result: opt_json(row.get(15)?)?,
        errors: opt_json(row.get(16)?)?.unwrap_or_default(),
        worker_id: row.get(17)?,
        created_at: from_ms(row.get(18)?)?,
        run_at: from_ms(row.get(19)?)?,
        started_at: opt_time(row.get(20)?)?,
        finished_at: opt_time(row.get(21)?)?,
        deadline: opt_time(row.get(22)?)?,
        headers: opt_json(row.get(23)?)?.unwrap_or_default(),
        interruptions: row.get(24)?,
    })
}
