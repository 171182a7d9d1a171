//! The SQL of node leases and the leader lease. Every function runs inside the caller's
//! transaction.

use chrono::{DateTime, Utc};
use errands_core::lifecycle::ReleaseCause;
use rusqlite::{params, Connection};

use super::ops::{holdings, release_running};
use super::rows::to_ms;
use crate::error::StoreError;
use crate::node::{Heartbeat, Reap};
use crate::store::ReleasedJob;

pub(crate) fn heartbeat(
    conn: &Connection,
    node_id: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<Heartbeat, StoreError> {
    let renewed = conn
        .prepare_cached("UPDATE nodes SET heartbeat_at = ?2, expires_at = ?3 WHERE id = ?1")?
        .execute(params![node_id, to_ms(now), to_ms(expires_at)])?;
    if renewed == 1 {
        return Ok(Heartbeat::Renewed);
    }
    conn.prepare_cached(
        "INSERT INTO nodes (id, started_at, heartbeat_at, expires_at) VALUES (?1, ?2, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, \
         expires_at = excluded.expires_at",
    )?
    .execute(params![node_id, to_ms(now), to_ms(expires_at)])?;
    Ok(Heartbeat::Registered)
}

pub(crate) fn holders(conn: &Connection, node_id: &str) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT DISTINCT worker_id FROM jobs \
         WHERE state = 'running' AND node_id = ?1 AND worker_id IS NOT NULL",
    )?;
    let holders = statement
        .query_map([node_id], |row| row.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(holders)
}

pub(crate) fn remove_node(conn: &Connection, node_id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM nodes WHERE id = ?1")?
        .execute([node_id])?;
    Ok(())
}

pub(crate) fn reap_nodes(
    conn: &Connection,
    reap: Reap<'_>,
    now: DateTime<Utc>,
    dead_retention: f64,
) -> Result<Vec<ReleasedJob>, StoreError> {
    let now_ms = to_ms(now);
    let held = match reap {
        Reap::Expired => holdings(
            conn,
            "SELECT id, node_id FROM jobs WHERE state = 'running' AND NOT EXISTS \
             (SELECT 1 FROM nodes WHERE nodes.id = jobs.node_id AND nodes.expires_at > ?1)",
            [now_ms],
        )?,
        Reap::AllBut(keep) => holdings(
            conn,
            "SELECT id, node_id FROM jobs WHERE state = 'running' \
             AND (node_id IS NULL OR node_id <> ?1)",
            [keep],
        )?,
    };
    let released = release_running(
        conn,
        held,
        |_, holding| ReleaseCause::NodeLost {
            node_id: holding.node().to_owned(),
        },
        now,
        dead_retention,
    )?;
    match reap {
        Reap::Expired => conn
            .prepare_cached("DELETE FROM nodes WHERE expires_at <= ?1")?
            .execute([now_ms])?,
        Reap::AllBut(keep) => conn
            .prepare_cached("DELETE FROM nodes WHERE id <> ?1")?
            .execute([keep])?,
    };
    Ok(released)
}

pub(crate) fn try_lead(
    conn: &Connection,
    role: &str,
    node_id: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let taken = conn
        .prepare_cached(
            "INSERT INTO leaders (role, node_id, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (role) DO UPDATE SET node_id = excluded.node_id, \
             expires_at = excluded.expires_at \
             WHERE leaders.node_id = excluded.node_id OR leaders.expires_at <= ?4",
        )?
        .execute(params![role, node_id, to_ms(expires_at), to_ms(now)])?;
    Ok(taken == 1)
}
