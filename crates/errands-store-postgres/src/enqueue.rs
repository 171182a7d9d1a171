//! Storing new jobs: plain jobs in bulk, keyed jobs one at a time under the unique-key rule.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use errands_core::lifecycle::UniqueRule;
use errands_core::{Backoff, NewJob};
use errands_store::{Enqueued, StoreError};
use uuid::Uuid;

use crate::error::from_pg;
use crate::notify::Wakeups;
use crate::rows::parse_state;

/// Rows per bulk `INSERT`: bounded so one statement's arrays stay a few megabytes.
const INSERT_ROWS: usize = 5_000;

/// An `INSERT` of the rows given as parallel arrays, one per column.
const INSERT: &str = "INSERT INTO jobs (id, queue, kind, args, state, priority, max_attempts, \
    backoff, timeout, unique_key, unique_for, retention, tags, headers, created_at, run_at) \
    SELECT id, queue, kind, args::jsonb, state, priority, max_attempts, backoff::jsonb, timeout, \
    unique_key, unique_for, retention, \
    CASE WHEN tags IS NULL THEN '{}'::text[] \
         ELSE ARRAY(SELECT jsonb_array_elements_text(tags::jsonb)) END, \
    headers::jsonb, created_at, run_at \
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], \
                $7::int8[], $8::text[], $9::float8[], $10::text[], $11::float8[], $12::float8[], \
                $13::text[], $14::text[], $15::timestamptz[], $16::timestamptz[]) \
    AS t(id, queue, kind, args, state, priority, max_attempts, backoff, timeout, unique_key, \
         unique_for, retention, tags, headers, created_at, run_at)";

/// The predicate of the unique index over jobs that hold their key.
const UNIQUE_HOLDER: &str =
    "unique_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running')";

/// Stores `jobs` in the caller's transaction, in order, and notes the wake-ups to send.
pub(crate) async fn enqueue(
    client: &impl GenericClient,
    jobs: &[NewJob],
    wakeups: &mut Wakeups,
) -> Result<Vec<Enqueued>, StoreError> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut rest = jobs;
    while !rest.is_empty() {
        // A job without a unique key matches no other job: a run of them goes in bulk. A keyed
        // job goes alone, as it may match one just before it.
        let plain = rest.iter().take_while(|j| j.unique_key.is_none()).count();
        let (run, tail) = rest.split_at(plain);
        for chunk in run.chunks(INSERT_ROWS) {
            insert(client, chunk, "").await.map_err(from_pg)?;
        }
        outcomes.extend(run.iter().map(created));
        let Some((keyed, tail)) = tail.split_first() else {
            break;
        };
        outcomes.push(enqueue_keyed(client, keyed).await?);
        rest = tail;
    }
    for (job, outcome) in jobs.iter().zip(&outcomes) {
        if outcome.created {
            wakeups.moved(&job.queue, job.state);
        }
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

/// Tries a keyed job: the job its key names if there is one, else the new job. The unique
/// index makes a second unfinished holder impossible: of two nodes inserting one key at once,
/// one inserts and the other finds its job.
async fn enqueue_keyed(client: &impl GenericClient, job: &NewJob) -> Result<Enqueued, StoreError> {
    let suffix = format!(" ON CONFLICT (unique_key) WHERE {UNIQUE_HOLDER} DO NOTHING");
    for _ in 0..5 {
        if let Some(existing) = find_unique(client, job).await? {
            return Ok(existing);
        }
        let inserted = insert(client, std::slice::from_ref(job), &suffix)
            .await
            .map_err(from_pg)?;
        if inserted == 1 {
            return Ok(created(job));
        }
        // The holder that blocked the insert may have finished before we looked it up.
    }
    Err(StoreError::Transient(
        "a unique key's holder kept changing while it was looked up".into(),
    ))
}

/// Inserts `jobs` with one statement, `suffix` appended. Returns the rows inserted.
async fn insert(
    client: &impl GenericClient,
    jobs: &[NewJob],
    suffix: &str,
) -> Result<u64, tokio_postgres::Error> {
    let columns = Columns::of(jobs);
    let statement = client.prepare_cached(&format!("{INSERT}{suffix}")).await?;
    client
        .execute(
            &statement,
            &[
                &columns.id,
                &columns.queue,
                &columns.kind,
                &columns.args,
                &columns.state,
                &columns.priority,
                &columns.max_attempts,
                &columns.backoff,
                &columns.timeout,
                &columns.unique_key,
                &columns.unique_for,
                &columns.retention,
                &columns.tags,
                &columns.headers,
                &columns.created_at,
                &columns.run_at,
            ],
        )
        .await
}

/// The columns of a batch of jobs, as arrays.
#[derive(Default)]
struct Columns<'a> {
    id: Vec<Uuid>,
    queue: Vec<&'a str>,
    kind: Vec<&'a str>,
    args: Vec<&'a str>,
    state: Vec<&'static str>,
    priority: Vec<i32>,
    max_attempts: Vec<i64>,
    backoff: Vec<String>,
    timeout: Vec<Option<f64>>,
    unique_key: Vec<Option<&'a str>>,
    unique_for: Vec<Option<f64>>,
    retention: Vec<f64>,
    tags: Vec<Option<String>>,
    headers: Vec<Option<String>>,
    created_at: Vec<DateTime<Utc>>,
    run_at: Vec<DateTime<Utc>>,
}

/// The stored JSON of [`Backoff::default()`], the policy of nearly every job.
const DEFAULT_BACKOFF_JSON: &str =
    r#"{"type":"exponential","base":1.0,"cap":3600.0,"jitter":true}"#;

impl<'a> Columns<'a> {
    fn of(jobs: &'a [NewJob]) -> Self {
        let mut c = Columns::default();
        for job in jobs {
            c.id.push(job.id.0);
            c.queue.push(&job.queue);
            c.kind.push(&job.kind);
            c.args.push(&job.args);
            c.state.push(job.state.as_str());
            c.priority.push(job.priority);
            c.max_attempts.push(i64::from(job.max_attempts));
            c.backoff.push(backoff_json(&job.backoff));
            c.timeout.push(job.timeout);
            c.unique_key.push(job.unique_key.as_deref());
            c.unique_for.push(job.unique_for);
            c.retention.push(job.retention);
            c.tags.push(
                (!job.tags.is_empty())
                    .then(|| serde_json::Value::from(job.tags.clone()).to_string()),
            );
            c.headers.push(
                (!job.headers.is_empty()).then(|| serde_json::json!(job.headers).to_string()),
            );
            c.created_at.push(job.created_at);
            c.run_at.push(job.run_at);
        }
        c
    }
}

fn backoff_json(backoff: &Backoff) -> String {
    if *backoff == Backoff::default() {
        DEFAULT_BACKOFF_JSON.to_owned()
    } else {
        // Serialising a plain enum of numbers cannot fail.
        serde_json::to_string(backoff).unwrap_or_else(|_| DEFAULT_BACKOFF_JSON.to_owned())
    }
}

/// The job a unique key already names, per [`UniqueRule`]: one that is unfinished, or created
/// inside the window.
async fn find_unique(
    client: &impl GenericClient,
    job: &NewJob,
) -> Result<Option<Enqueued>, StoreError> {
    let Some(key) = &job.unique_key else {
        return Ok(None);
    };
    let rule = UniqueRule::new(job.created_at, job.unique_for);
    let statement = client
        .prepare_cached(
            "SELECT id, state, created_at FROM jobs WHERE unique_key = $1 \
             AND (state IN ('scheduled', 'queued', 'running') \
                  OR ($2::timestamptz IS NOT NULL AND created_at > $2)) \
             ORDER BY created_at DESC LIMIT 1",
        )
        .await
        .map_err(from_pg)?;
    let Some(row) = client
        .query_opt(&statement, &[key, &rule.window_start])
        .await
        .map_err(from_pg)?
    else {
        return Ok(None);
    };
    let state = parse_state(row.get::<_, &str>(1))?;
    if !rule.blocks(state, row.get(2)) {
        return Ok(None);
    }
    Ok(Some(Enqueued {
        id: errands_core::JobId(row.get(0)),
        state,
        created: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backoff_json_is_what_serde_writes() {
        assert_eq!(
            serde_json::to_string(&Backoff::default()).unwrap(),
            DEFAULT_BACKOFF_JSON
        );
    }
}
