//! The SQL of each store operation. Every function runs inside the caller's transaction.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use errands_core::lifecycle::{
    decide_cancel, decide_delete, decide_failure, decide_retry, Cancellation, FailedAttempt,
    FailureCause, ReleaseCause, UniqueRule,
};
use errands_core::{AttemptError, Backoff, Job, JobId, JobState, NewJob, Progress};
use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension, Statement};
use serde_json::Value;
use uuid::Uuid;

use super::rows::{from_ms, job_from_row, parse_id, parse_state, to_ms, JOB_COLUMNS};
use crate::error::StoreError;
use crate::store::{
    ClaimRequest, CompletedJob, Enqueued, JobFilter, JobPage, MovedJob, QueueInfo, ReleasedJob,
};

/// Most expired jobs deleted in one purge step, so a purge never holds the writer for long.
pub(crate) const PURGE_CHUNK: i64 = 10_000;

/// Rows per multi-row `INSERT`. A statement run once per row opens a cursor on the table and
/// on each index and seeks from the root every time; one run for many rows keeps its cursors
/// on the last page, where time-ordered ids and run times append. 16 took the fewest
/// instructions per job (8 and 32 slightly more, 64 a tenth more).
const INSERT_ROWS: usize = 16;

/// The columns an enqueue sets, in the order [`bind_job`] binds them.
const INSERT_COLUMNS: &str = "INSERT INTO jobs (id, queue, kind, args, state, priority, \
    max_attempts, backoff, timeout, unique_key, unique_for, retention, tags, headers, created_at, \
    run_at) VALUES ";
const COLUMN_COUNT: usize = 16;

pub(crate) fn enqueue(conn: &Connection, jobs: &[NewJob]) -> Result<Vec<Enqueued>, StoreError> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut rest = jobs;
    while !rest.is_empty() {
        // A job without a unique key can match no other job, so a run of them is inserted
        // without lookups, in bulk. A keyed job goes alone: it may match one just before it.
        let plain = rest
            .iter()
            .take_while(|job| job.unique_key.is_none())
            .count();
        let (run, tail) = rest.split_at(plain);
        insert(conn, run)?;
        outcomes.extend(run.iter().map(created));
        let Some((keyed, tail)) = tail.split_first() else {
            break;
        };
        outcomes.push(enqueue_keyed(conn, keyed)?);
        rest = tail;
    }
    Ok(outcomes)
}

fn created(job: &NewJob) -> Enqueued {
    Enqueued {
        id: job.id,
        state: job.state,
        created: true,
    }
}

fn enqueue_keyed(conn: &Connection, job: &NewJob) -> Result<Enqueued, StoreError> {
    if let Some(existing) = find_unique(conn, job)? {
        return Ok(existing);
    }
    // The unique index over unfinished jobs makes a second holder of the key impossible, even
    // from another store instance on the same file.
    let mut statement = conn.prepare_cached(&format!(
        "{}{} ON CONFLICT (unique_key) WHERE {UNIQUE_HOLDER} DO NOTHING",
        INSERT_COLUMNS,
        insert_row()
    ))?;
    bind_job(&mut statement, 0, job)?;
    let inserted = statement.raw_execute()?;
    if inserted == 1 {
        return Ok(created(job));
    }
    find_unique(conn, job)?.ok_or_else(|| {
        StoreError::Transient("a unique key's holder finished while it was looked up".into())
    })
}

/// The predicate of the unique index over jobs that hold their key.
pub(crate) const UNIQUE_HOLDER: &str =
    "unique_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running')";

/// Inserts `jobs` in order: [`INSERT_ROWS`] at a time, then the rest one by one.
fn insert(conn: &Connection, jobs: &[NewJob]) -> Result<(), StoreError> {
    let mut chunks = jobs.chunks_exact(INSERT_ROWS);
    if chunks.len() > 0 {
        let mut statement = conn.prepare_cached(&insert_sql(INSERT_ROWS))?;
        for chunk in &mut chunks {
            for (row, job) in chunk.iter().enumerate() {
                bind_job(&mut statement, row * COLUMN_COUNT, job)?;
            }
            statement.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut statement = conn.prepare_cached(&insert_sql(1))?;
        for job in rest {
            bind_job(&mut statement, 0, job)?;
            statement.raw_execute()?;
        }
    }
    Ok(())
}

/// An `INSERT` of `rows` jobs.
fn insert_sql(rows: usize) -> String {
    format!("{INSERT_COLUMNS}{}", vec![insert_row(); rows].join(", "))
}

/// The parameters of one row of [`INSERT_COLUMNS`].
fn insert_row() -> String {
    format!("({})", vec!["?"; COLUMN_COUNT].join(", "))
}

/// Binds `job` to the parameters after the first `before`, in [`INSERT_COLUMNS`] order.
fn bind_job(statement: &mut Statement<'_>, before: usize, job: &NewJob) -> Result<(), StoreError> {
    let mut id = Uuid::encode_buffer();
    let id: &str = job.id.0.hyphenated().encode_lower(&mut id);
    let backoff = backoff_json(&job.backoff)?;
    let tags = if job.tags.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&job.tags)?)
    };
    let headers = if job.headers.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&job.headers)?)
    };
    let values: [&dyn ToSql; COLUMN_COUNT] = [
        &id,
        &job.queue,
        &job.kind,
        &job.args,
        &job.state.as_str(),
        &job.priority,
        &job.max_attempts,
        &backoff,
        &job.timeout,
        &job.unique_key,
        &job.unique_for,
        &job.retention,
        &tags,
        &headers,
        &to_ms(job.created_at),
        &to_ms(job.run_at),
    ];
    for (column, value) in values.into_iter().enumerate() {
        statement.raw_bind_parameter(before + column + 1, value)?;
    }
    Ok(())
}

/// The stored JSON of [`Backoff::default()`] (a test checks it), the policy of nearly every
/// job: writing it once instead of serialising it per job.
const DEFAULT_BACKOFF_JSON: &str =
    r#"{"type":"exponential","base":1.0,"cap":3600.0,"jitter":true}"#;

/// The stored JSON of a backoff policy.
fn backoff_json(backoff: &Backoff) -> Result<Cow<'static, str>, StoreError> {
    if *backoff == Backoff::default() {
        Ok(Cow::Borrowed(DEFAULT_BACKOFF_JSON))
    } else {
        Ok(Cow::Owned(serde_json::to_string(backoff)?))
    }
}

/// The job a unique key already names, per [`UniqueRule`]: one that is unfinished, or
/// created inside the window.
fn find_unique(conn: &Connection, job: &NewJob) -> Result<Option<Enqueued>, StoreError> {
    let Some(key) = &job.unique_key else {
        return Ok(None);
    };
    let rule = UniqueRule::new(job.created_at, job.unique_for);
    let window_start = rule.window_start.map_or(i64::MAX, to_ms);
    let found = conn
        .prepare_cached(
            "SELECT id, state, created_at FROM jobs WHERE unique_key = ?1 \
             AND (state IN ('scheduled', 'queued', 'running') OR created_at > ?2) \
             ORDER BY created_at DESC LIMIT 1",
        )?
        .query_row(params![key, window_start], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    let Some((id, state, created_at)) = found else {
        return Ok(None);
    };
    let state = parse_state(&state)?;
    if !rule.blocks(state, from_ms(created_at)?) {
        return Ok(None);
    }
    Ok(Some(Enqueued {
        id: parse_id(&id)?,
        state,
        created: false,
    }))
}

pub(crate) fn get(conn: &Connection, id: JobId) -> Result<Job, StoreError> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([id.to_string()], |row| Ok(job_from_row(row)))
        .optional()?
        .ok_or(StoreError::NotFound(id))?
}

pub(crate) fn list(conn: &Connection, filter: &JobFilter) -> Result<JobPage, StoreError> {
    let mut clauses = Vec::new();
    let mut values: Vec<Box<dyn ToSql>> = Vec::new();
    let mut bind = |clause: &str, value: Box<dyn ToSql>| {
        values.push(value);
        clauses.push(clause.replace('?', &format!("?{}", values.len())));
    };
    if let Some(queue) = &filter.queue {
        bind("queue = ?", Box::new(queue.clone()));
    }
    if let Some(state) = filter.state {
        bind("state = ?", Box::new(state.as_str()));
    }
    if let Some(kind) = &filter.kind {
        bind("kind = ?", Box::new(kind.clone()));
    }
    if let Some(tag) = &filter.tag {
        bind(
            "EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE value = ?)",
            Box::new(tag.clone()),
        );
    }
    if let Some(before) = filter.before {
        bind("id < ?", Box::new(before.to_string()));
    }
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", filter.limit + 1));
    let mut statement = conn.prepare(&sql)?;
    let params: Vec<&dyn ToSql> = values.iter().map(|v| v.as_ref()).collect();
    let mut jobs = statement
        .query_map(params.as_slice(), |row| Ok(job_from_row(row)))?
        .map(|row| row?)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if jobs.len() > filter.limit {
        jobs.truncate(filter.limit);
        jobs.last().map(|job| job.id)
    } else {
        None
    };
    Ok(JobPage { jobs, next })
}

pub(crate) fn claim(
    conn: &Connection,
    request: &ClaimRequest,
    now: DateTime<Utc>,
) -> Result<Vec<Job>, StoreError> {
    let mut claimed = Vec::new();
    let now_ms = to_ms(now);
    // `LIMIT (?4 + 0)`, not `LIMIT ?4`: with a bare parameter SQLite (built with STAT4)
    // re-prepares the statement on every execution, which was a quarter of the writer's time.
    let mut statement = conn.prepare_cached(&format!(
        "UPDATE jobs SET state = 'running', attempt = attempt + 1, worker_id = ?1, node_id = ?5, \
         started_at = ?2, progress = NULL, \
         deadline = CASE WHEN timeout IS NULL THEN NULL ELSE ?2 + CAST(timeout * 1000 AS INTEGER) END \
         WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND queue = ?3 \
                      AND NOT EXISTS (SELECT 1 FROM queues WHERE name = ?3 AND paused = 1) \
                      ORDER BY priority DESC, run_at, id LIMIT (?4 + 0)) \
         AND state = 'queued' \
         RETURNING {JOB_COLUMNS}"
    ))?;
    for queue in &request.queues {
        let wanted = request.limit - claimed.len();
        if wanted == 0 {
            break;
        }
        let mut jobs = statement
            .query_map(
                params![
                    request.worker_id,
                    now_ms,
                    queue,
                    wanted as i64,
                    request.node_id
                ],
                |row| Ok(job_from_row(row)),
            )?
            .map(|row| row?)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING gives no order; deliver in dispatch order.
        jobs.sort_by(|a, b| (b.priority, a.run_at, a.id).cmp(&(a.priority, b.run_at, b.id)));
        claimed.append(&mut jobs);
    }
    Ok(claimed)
}

pub(crate) fn unclaim(
    conn: &Connection,
    worker_id: &str,
    ids: &[JobId],
) -> Result<Vec<MovedJob>, StoreError> {
    let mut statement = conn.prepare_cached(
        "UPDATE jobs SET state = 'queued', attempt = attempt - 1, worker_id = NULL, \
         node_id = NULL, started_at = NULL, deadline = NULL \
         WHERE id = ?1 AND state = 'running' AND worker_id = ?2 \
         RETURNING queue, kind, attempt",
    )?;
    let mut moved = Vec::with_capacity(ids.len());
    for &id in ids {
        let row = statement
            .query_row(params![id.to_string(), worker_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?;
        if let Some((queue, kind, attempt)) = row {
            moved.push(MovedJob {
                id,
                queue,
                kind,
                attempt,
            });
        }
    }
    Ok(moved)
}

/// The job if `worker_id` holds it, else why not.
pub(crate) fn leased(conn: &Connection, id: JobId, worker_id: &str) -> Result<Job, StoreError> {
    let job = get(conn, id)?;
    if job.state == JobState::Running && job.worker_id.as_deref() == Some(worker_id) {
        Ok(job)
    } else {
        Err(StoreError::NotLeased(id))
    }
}

pub(crate) fn complete(
    conn: &Connection,
    id: JobId,
    worker_id: &str,
    result: Option<Value>,
    now: DateTime<Utc>,
) -> Result<CompletedJob, StoreError> {
    // One statement and nothing after it that can fail: it runs without a savepoint
    // (writer::statement_op). So the result is encoded first, and the columns read back are
    // ones the schema guarantees the types of.
    let result = result.map(|r| serde_json::to_string(&r)).transpose()?;
    let now_ms = to_ms(now);
    let (queue, kind, attempt, started_at, headers) = conn
        .prepare_cached(
            "UPDATE jobs SET state = 'completed', result = ?1, finished_at = ?2, deadline = NULL, \
             worker_id = NULL, node_id = NULL, expires_at = ?2 + CAST(retention * 1000 AS INTEGER) \
             WHERE id = ?3 AND state = 'running' AND worker_id = ?4 \
             RETURNING queue, kind, attempt, started_at, headers",
        )?
        .query_row(params![result, now_ms, id.to_string(), worker_id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, Option<String>>(4)?,
            ))
        })
        .optional()?
        .ok_or(StoreError::NotLeased(id))?;
    Ok(CompletedJob {
        id,
        queue,
        kind,
        attempt,
        started_at: started_at.and_then(DateTime::from_timestamp_millis),
        // The job is completed whatever its headers hold: unreadable ones (only a hand-edited
        // row has them) lose the trace link, not the completion.
        headers: headers
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
    })
}

pub(crate) fn fail(
    conn: &Connection,
    id: JobId,
    worker_id: &str,
    error: AttemptError,
    cause: FailureCause,
    now: DateTime<Utc>,
    dead_retention: f64,
) -> Result<Job, StoreError> {
    let job = leased(conn, id, worker_id)?;
    record_failure(conn, &job, error, cause, now, dead_retention)?.ok_or(StoreError::NotLeased(id))
}

/// Records a failed attempt of the running `job` as read, and moves it on per its retry
/// policy; `None` if the job is no longer under the lease read (someone else moved it).
fn record_failure(
    conn: &Connection,
    job: &Job,
    error: AttemptError,
    cause: FailureCause,
    now: DateTime<Utc>,
    dead_retention: f64,
) -> Result<Option<Job>, StoreError> {
    let failed = decide_failure(job, error, cause, now, dead_retention, &mut rand::rng());
    write_failure(conn, job, &failed)
}

/// Writes the failed attempt `failed` of the running `job` as read; `None` if the job is no
/// longer under the lease read.
pub(crate) fn write_failure(
    conn: &Connection,
    job: &Job,
    failed: &FailedAttempt,
) -> Result<Option<Job>, StoreError> {
    // The history is capped (see `capped_history`), so rewriting it whole stays cheap.
    conn.prepare_cached(&format!(
        "UPDATE jobs SET state = ?1, run_at = ?2, errors = ?3, worker_id = NULL, node_id = NULL, \
         deadline = NULL, finished_at = ?4, expires_at = ?5 \
         WHERE id = ?6 AND state = 'running' AND worker_id = ?7 AND attempt = ?8 \
         RETURNING {JOB_COLUMNS}"
    ))?
    .query_row(
        params![
            failed.state.as_str(),
            to_ms(failed.run_at),
            serde_json::to_string(&failed.errors)?,
            failed.finished_at.map(to_ms),
            failed.expires_at.map(to_ms),
            job.id.to_string(),
            job.worker_id,
            job.attempt,
        ],
        |row| Ok(job_from_row(row)),
    )
    .optional()?
    .transpose()
}

pub(crate) fn progress(
    conn: &Connection,
    id: JobId,
    worker_id: &str,
    progress: &Progress,
) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE jobs SET progress = ?1 WHERE id = ?2 AND state = 'running' AND worker_id = ?3",
        )?
        .execute(params![
            serde_json::to_string(progress)?,
            id.to_string(),
            worker_id
        ])?;
    if changed == 0 {
        return Err(StoreError::NotLeased(id));
    }
    Ok(())
}

pub(crate) fn cancel(
    conn: &Connection,
    id: JobId,
    now: DateTime<Utc>,
) -> Result<(Job, Option<String>), StoreError> {
    let job = get(conn, id)?;
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
    let cancelled = conn
        .prepare_cached(&format!(
            "UPDATE jobs SET state = 'cancelled', finished_at = ?1, worker_id = NULL, \
             node_id = NULL, deadline = NULL, expires_at = ?2 \
             WHERE id = ?3 AND state = ?4 AND attempt = ?5 RETURNING {JOB_COLUMNS}"
        ))?
        .query_row(
            params![
                to_ms(finished_at),
                to_ms(expires_at),
                id.to_string(),
                job.state.as_str(),
                job.attempt
            ],
            |row| Ok(job_from_row(row)),
        )
        .optional()?
        .transpose()?;
    let job = cancelled.ok_or_else(|| moved_meanwhile(id))?;
    Ok((job, holder))
}

/// A guarded write missed: the job changed between the read and the write (only possible
/// when another store instance shares the file). The caller may try again.
fn moved_meanwhile(id: JobId) -> StoreError {
    StoreError::Transient(format!("job {id} changed while it was being updated"))
}

pub(crate) fn retry(
    conn: &Connection,
    id: JobId,
    reset_attempts: bool,
    now: DateTime<Utc>,
) -> Result<Job, StoreError> {
    let job = get(conn, id)?;
    let plan = decide_retry(
        job.state,
        job.attempt,
        job.max_attempts,
        job.interruptions,
        reset_attempts,
    )
    .map_err(|refused| StoreError::refused(id, refused))?;
    let retried = conn
        .prepare_cached(&format!(
            "UPDATE jobs SET state = 'queued', run_at = ?1, attempt = ?2, max_attempts = ?3, \
             interruptions = ?6, finished_at = NULL, expires_at = NULL, result = NULL, \
             progress = NULL WHERE id = ?4 AND state = ?5 RETURNING {JOB_COLUMNS}"
        ))?
        .query_row(
            params![
                to_ms(now),
                plan.attempt,
                plan.max_attempts,
                id.to_string(),
                job.state.as_str(),
                plan.interruptions
            ],
            |row| Ok(job_from_row(row)),
        )
        .optional();
    match retried {
        Ok(Some(job)) => job,
        Ok(None) => Err(moved_meanwhile(id)),
        Err(error) if is_unique_violation(&error) => Err(StoreError::UniqueKeyHeld {
            id,
            key: job.unique_key.unwrap_or_default(),
        }),
        Err(error) => Err(error.into()),
    }
}

fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ConstraintViolation)
    )
}

pub(crate) fn delete(conn: &Connection, id: JobId) -> Result<(), StoreError> {
    let job = get(conn, id)?;
    decide_delete(job.state).map_err(|refused| StoreError::refused(id, refused))?;
    let deleted = conn
        .prepare_cached("DELETE FROM jobs WHERE id = ?1 AND state = ?2")?
        .execute(params![id.to_string(), job.state.as_str()])?;
    if deleted == 0 {
        return Err(moved_meanwhile(id));
    }
    Ok(())
}

/// A running job as a sweep found it: the lease it is under.
pub(crate) struct Holding {
    id: JobId,
    node_id: Option<String>,
}

/// Fails each running job in `holdings` with the cause `cause_of` gives it. A job that left
/// the lease it was found under (completed, cancelled, released by another sweep) is skipped,
/// so two sweeps racing record one failure.
pub(crate) fn release_running(
    conn: &Connection,
    holdings: Vec<Holding>,
    cause_of: impl Fn(&Job, &Holding) -> ReleaseCause,
    now: DateTime<Utc>,
    dead_retention: f64,
) -> Result<Vec<ReleasedJob>, StoreError> {
    let mut released = Vec::with_capacity(holdings.len());
    for holding in holdings {
        let job = match get(conn, holding.id) {
            Ok(job) if job.state == JobState::Running => job,
            Ok(_) | Err(StoreError::NotFound(_)) => continue,
            Err(error) => return Err(error),
        };
        let cause = cause_of(&job, &holding);
        let error = cause.error(job.attempt, now);
        let worker_id = job.worker_id.clone().unwrap_or_default();
        let Some(after) = record_failure(
            conn,
            &job,
            error,
            cause.failure_cause(),
            now,
            dead_retention,
        )?
        else {
            continue;
        };
        released.push(ReleasedJob {
            id: after.id,
            worker_id,
            queue: after.queue,
            kind: after.kind,
            state: after.state,
            attempt: after.attempt,
        });
    }
    Ok(released)
}

/// Running jobs a query selects as `id, node_id`.
pub(crate) fn holdings(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Holding>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(params, |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
    })?;
    let mut found = Vec::new();
    for row in rows {
        let (id, node_id) = row?;
        found.push(Holding {
            id: parse_id(&id)?,
            node_id,
        });
    }
    Ok(found)
}

pub(crate) fn release_worker(
    conn: &Connection,
    worker_id: &str,
    now: DateTime<Utc>,
    dead_retention: f64,
) -> Result<Vec<ReleasedJob>, StoreError> {
    let held = holdings(
        conn,
        "SELECT id, node_id FROM jobs WHERE state = 'running' AND worker_id = ?1",
        [worker_id],
    )?;
    let cause = ReleaseCause::WorkerLost {
        worker_id: worker_id.to_owned(),
    };
    release_running(conn, held, |_, _| cause.clone(), now, dead_retention)
}

pub(crate) fn expire_deadlines(
    conn: &Connection,
    now: DateTime<Utc>,
    dead_retention: f64,
) -> Result<Vec<ReleasedJob>, StoreError> {
    let held = holdings(
        conn,
        "SELECT id, node_id FROM jobs WHERE state = 'running' AND deadline IS NOT NULL \
         AND deadline <= ?1",
        [to_ms(now)],
    )?;
    release_running(
        conn,
        held,
        |_, _| ReleaseCause::Timeout,
        now,
        dead_retention,
    )
}

impl Holding {
    /// The node whose lease covered the job, as the error names it.
    pub(crate) fn node(&self) -> &str {
        self.node_id.as_deref().unwrap_or("unknown")
    }
}

pub(crate) fn promote_due(
    conn: &Connection,
    now: DateTime<Utc>,
) -> Result<Vec<MovedJob>, StoreError> {
    let mut statement = conn.prepare_cached(
        "UPDATE jobs SET state = 'queued' WHERE state = 'scheduled' AND run_at <= ?1 \
         RETURNING id, queue, kind, attempt",
    )?;
    let rows = statement.query_map([to_ms(now)], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
        ))
    })?;
    let mut moved = Vec::new();
    for row in rows {
        let (id, queue, kind, attempt) = row?;
        moved.push(MovedJob {
            id: parse_id(&id)?,
            queue,
            kind,
            attempt,
        });
    }
    Ok(moved)
}

pub(crate) fn purge_expired(conn: &Connection, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM jobs WHERE id IN \
             (SELECT id FROM jobs WHERE expires_at <= ?1 LIMIT (?2 + 0))",
        )?
        .execute(params![to_ms(now), PURGE_CHUNK])?;
    Ok(deleted as u64)
}

pub(crate) fn next_wakeup(conn: &Connection) -> Result<Option<DateTime<Utc>>, StoreError> {
    let times: [Option<i64>; 4] = conn.query_row(
        "SELECT (SELECT min(run_at) FROM jobs WHERE state = 'scheduled'), \
                (SELECT min(deadline) FROM jobs WHERE state = 'running' AND deadline IS NOT NULL), \
                (SELECT min(expires_at) FROM jobs WHERE expires_at IS NOT NULL), \
                (SELECT min(next_fire) FROM cron WHERE paused = 0 AND next_fire IS NOT NULL)",
        [],
        |row| Ok([row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?]),
    )?;
    times.into_iter().flatten().min().map(from_ms).transpose()
}

pub(crate) fn queues(conn: &Connection, now: DateTime<Utc>) -> Result<Vec<QueueInfo>, StoreError> {
    let mut infos: BTreeMap<String, QueueInfo> = BTreeMap::new();
    let mut counts =
        conn.prepare_cached("SELECT queue, state, count(*) FROM jobs GROUP BY queue, state")?;
    let rows = counts.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (queue, state, n) = row?;
        queue_entry(&mut infos, queue)
            .counts
            .add(parse_state(&state)?, n as u64);
    }
    for name in paused_queues(conn)? {
        queue_entry(&mut infos, name).paused = true;
    }
    for info in infos.values_mut() {
        if info.counts.queued == 0 {
            continue;
        }
        if let Some(run_at) = oldest_ready(conn, &info.name)? {
            let age = now - from_ms(run_at)?;
            info.oldest_ready_age =
                Some(age.max(Duration::zero()).num_milliseconds() as f64 / 1000.0);
        }
    }
    Ok(infos.into_values().collect())
}

/// Most priority levels [`oldest_ready`] visits before it reads the whole queue instead.
const OLDEST_READY_LEVELS: usize = 64;

/// The earliest `run_at` of a queue's ready jobs. `jobs_ready` orders them by priority, then
/// `run_at`, so the first entry below a priority is the oldest job of the next level down:
/// one seek per level finds the oldest overall, where `min(run_at)` would read every ready
/// job. (A second index on `(queue, run_at)` would answer it directly, but every enqueue and
/// claim paid for keeping it.) A queue with very many levels is read once instead.
fn oldest_ready(conn: &Connection, queue: &str) -> Result<Option<i64>, StoreError> {
    let mut next_level = conn.prepare_cached(
        "SELECT priority, run_at FROM jobs WHERE state = 'queued' AND queue = ?1 \
         AND priority < ?2 ORDER BY priority DESC, run_at, id LIMIT 1",
    )?;
    let mut below = i64::from(i32::MAX) + 1;
    let mut oldest: Option<i64> = None;
    for _ in 0..OLDEST_READY_LEVELS {
        let level: Option<(i64, i64)> = next_level
            .query_row(params![queue, below], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((priority, run_at)) = level else {
            return Ok(oldest);
        };
        oldest = Some(oldest.map_or(run_at, |o| o.min(run_at)));
        below = priority;
    }
    Ok(conn
        .prepare_cached("SELECT min(run_at) FROM jobs WHERE state = 'queued' AND queue = ?1")?
        .query_row([queue], |row| row.get(0))?)
}

fn queue_entry(infos: &mut BTreeMap<String, QueueInfo>, name: String) -> &mut QueueInfo {
    infos.entry(name.clone()).or_insert_with(|| QueueInfo {
        name,
        paused: false,
        counts: Default::default(),
        oldest_ready_age: None,
        throughput: Vec::new(),
    })
}

pub(crate) fn set_paused(conn: &Connection, queue: &str, paused: bool) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO queues (name, paused) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
    )?
    .execute(params![queue, paused])?;
    Ok(())
}

pub(crate) fn paused_queues(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut statement =
        conn.prepare_cached("SELECT name FROM queues WHERE paused = 1 ORDER BY name")?;
    let names = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use errands_core::{EnqueueRequest, Limits};
    use serde_json::json;

    use super::*;

    fn t0() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn store() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        conn
    }

    fn new_job(request: EnqueueRequest, now: DateTime<Utc>) -> NewJob {
        request.validate(&Limits::default(), now).unwrap()
    }

    #[test]
    fn default_backoff_json_is_what_serde_writes() {
        assert_eq!(
            serde_json::to_string(&Backoff::default()).unwrap(),
            DEFAULT_BACKOFF_JSON
        );
    }

    #[test]
    fn insert_sql_has_a_parameter_per_column_and_row() {
        let sql = insert_sql(3);
        assert_eq!(sql.matches('?').count(), 3 * COLUMN_COUNT);
        assert_eq!(sql.matches('(').count(), 4);
    }

    /// Bulk and single inserts, keyed jobs between them: every field reads back as given, and
    /// a key repeated later in the batch names the job of its first use.
    #[test]
    fn a_mixed_batch_stores_every_field() {
        let conn = store();
        let jobs: Vec<NewJob> = (0..40)
            .map(|i| {
                let mut request = EnqueueRequest {
                    queue: Some(format!("q{}", i % 3)),
                    args: json!({"n": i, "text": "é\"x"}),
                    priority: Some(i - 20),
                    tags: vec![format!("t{i}")],
                    timeout: (i % 2 == 0).then_some(1.5),
                    ..EnqueueRequest::new("k")
                };
                if i == 7 || i == 33 {
                    request.unique_key = Some("same".into());
                    request.unique_for = Some(60.0);
                }
                if i == 18 {
                    request.backoff = Some(Backoff::Fixed { delay: -0.0 });
                    request.delay = Some(30.0);
                }
                new_job(request, t0())
            })
            .collect();
        let outcomes = enqueue(&conn, &jobs).unwrap();
        assert_eq!(outcomes.len(), jobs.len());
        for (i, (job, outcome)) in jobs.iter().zip(&outcomes).enumerate() {
            if i == 33 {
                assert_eq!((outcome.id, outcome.created), (jobs[7].id, false));
                assert!(matches!(get(&conn, job.id), Err(StoreError::NotFound(_))));
                continue;
            }
            assert_eq!(
                (outcome.id, outcome.state, outcome.created),
                (job.id, job.state, true)
            );
            let stored = get(&conn, job.id).unwrap();
            let args: Value = serde_json::from_str(&job.args).unwrap();
            assert_eq!(
                (&stored.queue, &stored.kind, &stored.args, stored.state),
                (&job.queue, &job.kind, &args, job.state)
            );
            assert_eq!(
                (
                    stored.priority,
                    stored.max_attempts,
                    &stored.backoff,
                    stored.timeout
                ),
                (job.priority, job.max_attempts, &job.backoff, job.timeout)
            );
            assert_eq!(
                (
                    &stored.unique_key,
                    stored.unique_for,
                    stored.retention,
                    &stored.tags
                ),
                (&job.unique_key, job.unique_for, job.retention, &job.tags)
            );
            assert_eq!(
                (stored.created_at, stored.run_at),
                (job.created_at, job.run_at)
            );
        }
        let backoff: String = conn
            .query_row(
                "SELECT backoff FROM jobs WHERE id = ?1",
                [jobs[18].id.to_string()],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(backoff, serde_json::to_string(&jobs[18].backoff).unwrap());
    }

    fn queued_at(conn: &Connection, priority: i32, seconds: i64) {
        let job = new_job(
            EnqueueRequest {
                priority: Some(priority),
                ..EnqueueRequest::new("a")
            },
            t0() + Duration::seconds(seconds),
        );
        enqueue(conn, &[job]).unwrap();
    }

    #[test]
    fn oldest_ready_looks_at_every_priority() {
        let conn = store();
        assert_eq!(oldest_ready(&conn, "default").unwrap(), None);
        queued_at(&conn, 5, 30);
        queued_at(&conn, 5, 10);
        queued_at(&conn, -3, 20);
        queued_at(&conn, 0, 40);
        queued_at(&conn, i32::MIN, 7);
        queued_at(&conn, i32::MAX, 8);
        let expected = to_ms(t0() + Duration::seconds(7));
        assert_eq!(oldest_ready(&conn, "default").unwrap(), Some(expected));
        assert_eq!(oldest_ready(&conn, "other").unwrap(), None);
    }

    #[test]
    fn oldest_ready_past_the_level_limit() {
        let conn = store();
        let levels = OLDEST_READY_LEVELS as i32 + 5;
        for priority in 0..levels {
            queued_at(&conn, priority, 100 - i64::from(priority));
        }
        let oldest = to_ms(t0() + Duration::seconds(100 - i64::from(levels - 1)));
        assert_eq!(oldest_ready(&conn, "default").unwrap(), Some(oldest));
    }
}
