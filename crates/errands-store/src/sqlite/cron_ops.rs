//! The SQL of the cron schedule operations. Every function runs inside the caller's
//! transaction; fire-time arithmetic is `errands_core::cron`'s.

use chrono::{DateTime, Utc};
use errands_core::cron::CronSpec;
use errands_core::lifecycle::cron;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::ops;
use super::rows::{from_ms, to_ms};
use crate::error::StoreError;
use crate::store::{FiredCron, StoredCron};

const CRON_COLUMNS: &str = "name, spec, paused, next_fire, last_fire";

/// A row as read, before its spec is parsed.
struct RawCron {
    name: String,
    spec: String,
    paused: bool,
    next_fire: Option<i64>,
    last_fire: Option<i64>,
}

fn raw_from_row(row: &Row<'_>) -> rusqlite::Result<RawCron> {
    Ok(RawCron {
        name: row.get(0)?,
        spec: row.get(1)?,
        paused: row.get(2)?,
        next_fire: row.get(3)?,
        last_fire: row.get(4)?,
    })
}

impl RawCron {
    fn parse(self) -> Result<StoredCron, StoreError> {
        Ok(StoredCron {
            spec: serde_json::from_str(&self.spec)?,
            name: self.name,
            paused: self.paused,
            next_fire: self.next_fire.map(from_ms).transpose()?,
            last_fire: self.last_fire.map(from_ms).transpose()?,
        })
    }
}

pub(crate) fn get_cron(conn: &Connection, name: &str) -> Result<Option<StoredCron>, StoreError> {
    conn.prepare_cached(&format!("SELECT {CRON_COLUMNS} FROM cron WHERE name = ?1"))?
        .query_row([name], raw_from_row)
        .optional()?
        .map(RawCron::parse)
        .transpose()
}

pub(crate) fn list_cron(conn: &Connection) -> Result<Vec<StoredCron>, StoreError> {
    let mut statement =
        conn.prepare_cached(&format!("SELECT {CRON_COLUMNS} FROM cron ORDER BY name"))?;
    let rows = statement.query_map([], raw_from_row)?;
    let mut crons = Vec::new();
    for row in rows {
        crons.push(row?.parse()?);
    }
    Ok(crons)
}

fn write_row(conn: &Connection, cron: &StoredCron) -> Result<(), StoreError> {
    let spec = CronSpec {
        paused: None,
        ..cron.spec.clone()
    };
    conn.prepare_cached(
        "INSERT INTO cron (name, spec, paused, next_fire, last_fire) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, paused = excluded.paused, \
         next_fire = excluded.next_fire, last_fire = excluded.last_fire",
    )?
    .execute(params![
        cron.name,
        serde_json::to_string(&spec)?,
        cron.paused,
        cron.next_fire.map(to_ms),
        cron.last_fire.map(to_ms),
    ])?;
    Ok(())
}

pub(crate) fn put_cron(
    conn: &Connection,
    name: &str,
    spec: CronSpec,
    now: DateTime<Utc>,
) -> Result<(StoredCron, bool), StoreError> {
    let schedule = spec
        .parsed()
        .map_err(|e| StoreError::Backend(format!("cron schedule {name}: {e}")))?;
    let existing = get_cron(conn, name)?;
    let times = cron::redeclare(
        existing.as_ref().map(|e| (&e.spec, e.times())),
        &spec,
        &schedule,
        now,
    );
    let cron = StoredCron::new(
        name,
        CronSpec {
            paused: None,
            ..spec
        },
        times,
    );
    write_row(conn, &cron)?;
    Ok((cron, existing.is_none()))
}

pub(crate) fn delete_cron(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM cron WHERE name = ?1")?
        .execute([name])?;
    Ok(deleted > 0)
}

pub(crate) fn set_cron_paused(
    conn: &Connection,
    name: &str,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<Option<StoredCron>, StoreError> {
    let Some(cron) = get_cron(conn, name)? else {
        return Ok(None);
    };
    let schedule = cron
        .spec
        .parsed()
        .map_err(|e| StoreError::Backend(format!("cron schedule {name}: {e}")))?;
    let times = cron::set_paused(cron.times(), &schedule, paused, now);
    let cron = StoredCron::new(name, cron.spec, times);
    write_row(conn, &cron)?;
    Ok(Some(cron))
}

pub(crate) fn fire_due_cron(
    conn: &Connection,
    now: DateTime<Utc>,
) -> Result<Vec<FiredCron>, StoreError> {
    let due = {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {CRON_COLUMNS} FROM cron WHERE paused = 0 AND next_fire IS NOT NULL \
             AND next_fire <= ?1 ORDER BY next_fire, name"
        ))?;
        let rows = statement.query_map([to_ms(now)], raw_from_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let mut fired = Vec::new();
    for raw in due {
        let name = raw.name.clone();
        // One broken row must not stop every other schedule: it is disabled and logged.
        let parsed = raw.parse().and_then(|cron| {
            let schedule = cron
                .spec
                .parsed()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            Ok((cron, schedule))
        });
        let (mut cron, schedule) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::error!(%error, cron = %name, "cron schedule cannot be read; disabled");
                conn.prepare_cached("UPDATE cron SET next_fire = NULL WHERE name = ?1")?
                    .execute([&name])?;
                continue;
            }
        };
        let Some(due_at) = cron.next_fire else {
            continue;
        };
        let plan = schedule.plan(cron.spec.catch_up, due_at, now);
        if let Some(fire_time) = plan.fire {
            match cron.spec.job_at(&name, fire_time, now) {
                Ok(job) => {
                    let (queue, kind) = (job.queue.clone(), job.kind.clone());
                    let outcome = ops::enqueue(conn, &[job])?
                        .pop()
                        .ok_or_else(|| StoreError::Backend("enqueue returned no outcome".into()))?;
                    fired.push(FiredCron {
                        name: name.clone(),
                        fire_time,
                        queue,
                        kind,
                        job: outcome,
                    });
                    cron.last_fire = Some(fire_time);
                }
                Err(error) => {
                    tracing::error!(%error, cron = %name, "cron schedule's job is invalid; skipped");
                }
            }
        }
        cron.next_fire = plan.next;
        write_row(conn, &cron)?;
    }
    Ok(fired)
}
