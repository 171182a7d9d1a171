//! Cron schedules. Changes lock the schedule's row; firing takes due rows with
//! `SKIP LOCKED` and enqueues each fire time under its unique key, so two nodes firing at
//! once enqueue each fire time once.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use errands_core::cron::CronSpec;
use errands_core::lifecycle::cron;
use errands_store::{FiredCron, StoreError, StoredCron};
use tokio_postgres::types::Json;
use tokio_postgres::Row;

use crate::enqueue::enqueue;
use crate::error::from_pg;
use crate::notify::Wakeups;

const CRON_COLUMNS: &str = "name, spec, paused, next_fire, last_fire";

fn from_row(row: &Row) -> Result<StoredCron, StoreError> {
    let spec: Json<CronSpec> = row.try_get(1).map_err(from_pg)?;
    Ok(StoredCron {
        name: row.try_get(0).map_err(from_pg)?,
        spec: spec.0,
        paused: row.try_get(2).map_err(from_pg)?,
        next_fire: row.try_get(3).map_err(from_pg)?,
        last_fire: row.try_get(4).map_err(from_pg)?,
    })
}

async fn read(
    client: &impl GenericClient,
    name: &str,
    lock: &str,
) -> Result<Option<StoredCron>, StoreError> {
    client
        .query_opt(
            &format!("SELECT {CRON_COLUMNS} FROM cron WHERE name = $1 {lock}"),
            &[&name],
        )
        .await
        .map_err(from_pg)?
        .map(|row| from_row(&row))
        .transpose()
}

pub(crate) async fn get_cron(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<StoredCron>, StoreError> {
    read(client, name, "").await
}

pub(crate) async fn list_cron(client: &impl GenericClient) -> Result<Vec<StoredCron>, StoreError> {
    let rows = client
        .query(
            &format!("SELECT {CRON_COLUMNS} FROM cron ORDER BY name"),
            &[],
        )
        .await
        .map_err(from_pg)?;
    rows.iter().map(from_row).collect()
}

/// Writes `cron`. With `create`, only if no row exists (a concurrent create makes it miss:
/// the caller's transaction is retried and then finds the row).
async fn write(
    client: &impl GenericClient,
    cron: &StoredCron,
    create: bool,
) -> Result<(), StoreError> {
    let spec = Json(CronSpec {
        paused: None,
        ..cron.spec.clone()
    });
    let sql = if create {
        "INSERT INTO cron (name, spec, paused, next_fire, last_fire) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO NOTHING"
    } else {
        "UPDATE cron SET spec = $2, paused = $3, next_fire = $4, last_fire = $5 WHERE name = $1"
    };
    let written = client
        .execute(
            sql,
            &[
                &cron.name,
                &spec,
                &cron.paused,
                &cron.next_fire,
                &cron.last_fire,
            ],
        )
        .await
        .map_err(from_pg)?;
    if written == 0 {
        return Err(StoreError::Transient(format!(
            "cron schedule {} changed while it was written",
            cron.name
        )));
    }
    Ok(())
}

pub(crate) async fn put_cron(
    client: &impl GenericClient,
    name: &str,
    spec: CronSpec,
    now: DateTime<Utc>,
) -> Result<(StoredCron, bool), StoreError> {
    let schedule = spec
        .parsed()
        .map_err(|e| StoreError::Backend(format!("cron schedule {name}: {e}")))?;
    let existing = read(client, name, "FOR UPDATE").await?;
    let times = cron::redeclare(
        existing.as_ref().map(|e| (&e.spec, e.times())),
        &spec,
        &schedule,
        now,
    );
    let stored = StoredCron::new(
        name,
        CronSpec {
            paused: None,
            ..spec
        },
        times,
    );
    write(client, &stored, existing.is_none()).await?;
    Ok((stored, existing.is_none()))
}

pub(crate) async fn delete_cron(
    client: &impl GenericClient,
    name: &str,
) -> Result<bool, StoreError> {
    let deleted = client
        .execute("DELETE FROM cron WHERE name = $1", &[&name])
        .await
        .map_err(from_pg)?;
    Ok(deleted > 0)
}

pub(crate) async fn set_cron_paused(
    client: &impl GenericClient,
    name: &str,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<Option<StoredCron>, StoreError> {
    let Some(current) = read(client, name, "FOR UPDATE").await? else {
        return Ok(None);
    };
    let schedule = current
        .spec
        .parsed()
        .map_err(|e| StoreError::Backend(format!("cron schedule {name}: {e}")))?;
    let times = cron::set_paused(current.times(), &schedule, paused, now);
    let updated = StoredCron::new(name, current.spec, times);
    write(client, &updated, false).await?;
    Ok(Some(updated))
}

pub(crate) async fn fire_due_cron(
    client: &impl GenericClient,
    now: DateTime<Utc>,
    wakeups: &mut Wakeups,
) -> Result<Vec<FiredCron>, StoreError> {
    let rows = client
        .query(
            "SELECT name, spec::text, next_fire FROM cron \
             WHERE NOT paused AND next_fire IS NOT NULL AND next_fire <= $1 \
             ORDER BY next_fire, name FOR UPDATE SKIP LOCKED",
            &[&now],
        )
        .await
        .map_err(from_pg)?;
    let mut fired = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let spec_text: String = row.get(1);
        let due_at: DateTime<Utc> = row.get(2);
        // One broken row must not stop every other schedule: it is disabled and logged.
        let parsed = serde_json::from_str::<CronSpec>(&spec_text)
            .map_err(|e| e.to_string())
            .and_then(|spec| spec.parsed().map(|s| (spec, s)).map_err(|e| e.to_string()));
        let (spec, schedule) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::error!(%error, cron = %name, "cron schedule cannot be read; disabled");
                client
                    .execute("UPDATE cron SET next_fire = NULL WHERE name = $1", &[&name])
                    .await
                    .map_err(from_pg)?;
                continue;
            }
        };
        let plan = schedule.plan(spec.catch_up, due_at, now);
        let mut last_fire = None;
        if let Some(fire_time) = plan.fire {
            match spec.job_at(&name, fire_time, now) {
                Ok(job) => {
                    let (queue, kind) = (job.queue.clone(), job.kind.clone());
                    let outcome = enqueue(client, &[job], wakeups)
                        .await?
                        .pop()
                        .ok_or_else(|| StoreError::Backend("enqueue returned no outcome".into()))?;
                    fired.push(FiredCron {
                        name: name.clone(),
                        fire_time,
                        queue,
                        kind,
                        job: outcome,
                    });
                    last_fire = Some(fire_time);
                }
                Err(error) => {
                    tracing::error!(%error, cron = %name, "cron schedule's job is invalid; skipped");
                }
            }
        }
        client
            .execute(
                "UPDATE cron SET next_fire = $2, last_fire = coalesce($3, last_fire) WHERE name = $1",
                &[&name, &plan.next, &last_fire],
            )
            .await
            .map_err(from_pg)?;
    }
    Ok(fired)
}
