//! Node leases and the leader lease.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use errands_core::lifecycle::ReleaseCause;
use errands_store::{Heartbeat, Reap, RecordedWorker, ReleasedJob, StoreError};
use tokio_postgres::types::Json;

use crate::error::from_pg;
use crate::notify::Wakeups;
use crate::release::{release, running, SWEEP_BATCH};
use crate::rows::J_COLUMNS;

pub(crate) async fn holders(
    client: &impl GenericClient,
    node_id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            "SELECT DISTINCT worker_id FROM jobs \
             WHERE state = 'running' AND node_id = $1 AND worker_id IS NOT NULL",
            &[&node_id],
        )
        .await
        .map_err(from_pg)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

pub(crate) async fn heartbeat(
    client: &impl GenericClient,
    node_id: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<Heartbeat, StoreError> {
    let renewed = client
        .execute(
            "UPDATE nodes SET heartbeat_at = $2, expires_at = $3 WHERE id = $1",
            &[&node_id, &now, &expires_at],
        )
        .await
        .map_err(from_pg)?;
    if renewed == 1 {
        return Ok(Heartbeat::Renewed);
    }
    client
        .execute(
            "INSERT INTO nodes (id, started_at, heartbeat_at, expires_at) VALUES ($1, $2, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, \
             expires_at = excluded.expires_at",
            &[&node_id, &now, &expires_at],
        )
        .await
        .map_err(from_pg)?;
    Ok(Heartbeat::Registered)
}

pub(crate) async fn remove_node(
    client: &impl GenericClient,
    node_id: &str,
) -> Result<(), StoreError> {
    client
        .execute("DELETE FROM nodes WHERE id = $1", &[&node_id])
        .await
        .map_err(from_pg)?;
    client
        .execute("DELETE FROM workers WHERE node_id = $1", &[&node_id])
        .await
        .map_err(from_pg)?;
    Ok(())
}

/// Replaces the worker rows of `node_id` with `workers`.
pub(crate) async fn record_workers(
    client: &impl GenericClient,
    node_id: &str,
    workers: &[RecordedWorker],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let ids: Vec<&str> = workers.iter().map(|w| w.id.as_str()).collect();
    let infos: Vec<Json<&serde_json::Value>> = workers.iter().map(|w| Json(&w.info)).collect();
    client
        .execute(
            "DELETE FROM workers WHERE node_id = $1 AND id <> ALL($2)",
            &[&node_id, &ids],
        )
        .await
        .map_err(from_pg)?;
    client
        .execute(
            "INSERT INTO workers (id, node_id, info, updated_at) \
             SELECT id, $1, info, $4 FROM unnest($2::text[], $3::jsonb[]) AS w(id, info) \
             ON CONFLICT (id) DO UPDATE SET node_id = excluded.node_id, info = excluded.info, \
             updated_at = excluded.updated_at",
            &[&node_id, &ids, &infos, &now],
        )
        .await
        .map_err(from_pg)?;
    Ok(())
}

/// Every worker row.
pub(crate) async fn recorded_workers(
    client: &impl GenericClient,
) -> Result<Vec<RecordedWorker>, StoreError> {
    let rows = client
        .query("SELECT id, node_id, info FROM workers ORDER BY id", &[])
        .await
        .map_err(from_pg)?;
    Ok(rows
        .iter()
        .map(|row| RecordedWorker {
            id: row.get(0),
            node_id: row.get(1),
            info: row.get(2),
        })
        .collect())
}

/// Forgets the nodes `reap` names, then releases the running jobs of nodes that are not
/// known. Deleting first takes the node rows' locks: a node renewing at the same instant
/// waits, finds its row gone and learns it was reaped ([`Heartbeat::Registered`]).
pub(crate) async fn reap_nodes(
    client: &impl GenericClient,
    reap: Reap<'_>,
    now: DateTime<Utc>,
    dead_retention: f64,
    wakeups: &mut Wakeups,
) -> Result<Vec<ReleasedJob>, StoreError> {
    let keep = match reap {
        Reap::Expired => None,
        Reap::AllBut(keep) => Some(keep),
    };
    match reap {
        Reap::Expired => client
            .execute("DELETE FROM nodes WHERE expires_at <= $1", &[&now])
            .await
            .map_err(from_pg)?,
        Reap::AllBut(keep) => client
            .execute("DELETE FROM nodes WHERE id <> $1", &[&keep])
            .await
            .map_err(from_pg)?,
    };
    client
        .execute(
            "DELETE FROM workers WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = workers.node_id)",
            &[],
        )
        .await
        .map_err(from_pg)?;
    let held = running(
        client,
        &format!(
            "SELECT {J_COLUMNS}, j.node_id FROM jobs j WHERE j.state = 'running' \
             AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = j.node_id) \
             AND ($2::text IS NULL OR j.node_id IS DISTINCT FROM $2) \
             LIMIT $1 FOR UPDATE OF j SKIP LOCKED"
        ),
        &[&SWEEP_BATCH, &keep],
    )
    .await?;
    release(
        client,
        held,
        |_, node| ReleaseCause::NodeLost {
            node_id: node.unwrap_or("unknown").to_owned(),
        },
        now,
        dead_retention,
        wakeups,
    )
    .await
}

pub(crate) async fn try_lead(
    client: &impl GenericClient,
    role: &str,
    node_id: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let taken = client
        .execute(
            "INSERT INTO leaders (role, node_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (role) DO UPDATE SET node_id = excluded.node_id, \
             expires_at = excluded.expires_at \
             WHERE leaders.node_id = excluded.node_id OR leaders.expires_at <= $4",
            &[&role, &node_id, &expires_at, &now],
        )
        .await
        .map_err(from_pg)?;
    Ok(taken == 1)
}
