//! Promotion of due jobs, purging of expired ones, and what the server reads about queues.
//! Sweeps take batches with `SKIP LOCKED`, so sweeps on two nodes at once split the work.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use errands_core::JobId;
use errands_store::{MovedJob, QueueInfo, StoreError};

use crate::error::from_pg;
use crate::notify::Wakeups;
use crate::rows::{attempts, parse_state};

/// Most jobs one promotion moves; the next pass (due at once) takes the rest.
const PROMOTE_BATCH: i64 = 10_000;
/// Most expired jobs one purge step deletes.
const PURGE_BATCH: i64 = 10_000;

pub(crate) async fn promote_due(
    client: &impl GenericClient,
    now: DateTime<Utc>,
    wakeups: &mut Wakeups,
) -> Result<Vec<MovedJob>, StoreError> {
    let rows = client
        .query(
            "WITH due AS (SELECT id FROM jobs WHERE state = 'scheduled' AND run_at <= $1 \
                          ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET state = 'queued' FROM due \
             WHERE jobs.id = due.id AND jobs.state = 'scheduled' \
             RETURNING jobs.id, jobs.queue, jobs.kind, jobs.attempt",
            &[&now, &PROMOTE_BATCH],
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

pub(crate) async fn purge_expired(
    client: &impl GenericClient,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    client
        .execute(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE expires_at <= $1 \
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
            &[&now, &PURGE_BATCH],
        )
        .await
        .map_err(from_pg)
}

pub(crate) async fn next_wakeup(
    client: &impl GenericClient,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = client
        .query_one(
            "SELECT least( \
                (SELECT min(run_at) FROM jobs WHERE state = 'scheduled'), \
                (SELECT min(deadline) FROM jobs WHERE state = 'running' AND deadline IS NOT NULL), \
                (SELECT min(expires_at) FROM jobs WHERE expires_at IS NOT NULL), \
                (SELECT min(next_fire) FROM cron WHERE NOT paused AND next_fire IS NOT NULL))",
            &[],
        )
        .await
        .map_err(from_pg)?;
    Ok(row.get(0))
}

pub(crate) async fn queues(
    client: &impl GenericClient,
    now: DateTime<Utc>,
) -> Result<Vec<QueueInfo>, StoreError> {
    let mut infos: BTreeMap<String, QueueInfo> = BTreeMap::new();
    let counts = client
        .query(
            "SELECT queue, state, count(*) FROM jobs GROUP BY queue, state",
            &[],
        )
        .await
        .map_err(from_pg)?;
    for row in counts {
        let n: i64 = row.get(2);
        entry(&mut infos, row.get(0))
            .counts
            .add(parse_state(row.get(1))?, n as u64);
    }
    for name in paused_queues(client).await? {
        entry(&mut infos, name).paused = true;
    }
    let oldest = client
        .query(
            "SELECT queue, min(run_at) FROM jobs WHERE state = 'queued' GROUP BY queue",
            &[],
        )
        .await
        .map_err(from_pg)?;
    for row in oldest {
        let run_at: DateTime<Utc> = row.get(1);
        let age = (now - run_at).max(Duration::zero());
        entry(&mut infos, row.get(0)).oldest_ready_age =
            Some(age.num_milliseconds() as f64 / 1000.0);
    }
    Ok(infos.into_values().collect())
}

fn entry(infos: &mut BTreeMap<String, QueueInfo>, name: String) -> &mut QueueInfo {
    infos.entry(name.clone()).or_insert_with(|| QueueInfo {
        name,
        paused: false,
        counts: Default::default(),
        oldest_ready_age: None,
        throughput: Vec::new(),
    })
}

pub(crate) async fn set_paused(
    client: &impl GenericClient,
    queue: &str,
    paused: bool,
    wakeups: &mut Wakeups,
) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO queues (name, paused) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
            &[&queue, &paused],
        )
        .await
        .map_err(from_pg)?;
    if !paused {
        wakeups.ready(queue);
    }
    Ok(())
}

pub(crate) async fn paused_queues(client: &impl GenericClient) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query("SELECT name FROM queues WHERE paused ORDER BY name", &[])
        .await
        .map_err(from_pg)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
