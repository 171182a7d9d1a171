//! Completions per queue and minute, recorded by each node and read by every node.

use deadpool_postgres::GenericClient;
use errands_store::{MinuteCount, StoreError};

use crate::error::from_pg;

/// Replaces `node_id`'s counts. Two recordings of one node may overlap (the lease loop and
/// the leader's own renewal before it reaps): the later one's counts win, never a conflict.
pub(crate) async fn record(
    client: &impl GenericClient,
    node_id: &str,
    counts: &[MinuteCount],
    since_minute: i64,
) -> Result<(), StoreError> {
    client
        .execute(
            "DELETE FROM throughput WHERE node_id = $1 OR minute < $2",
            &[&node_id, &since_minute],
        )
        .await
        .map_err(from_pg)?;
    let queues: Vec<&str> = counts.iter().map(|c| c.queue.as_str()).collect();
    let minutes: Vec<i64> = counts.iter().map(|c| c.minute).collect();
    let numbers: Vec<i64> = counts
        .iter()
        .map(|c| i64::try_from(c.count).unwrap_or(i64::MAX))
        .collect();
    client
        .execute(
            "INSERT INTO throughput (node_id, queue, minute, count) \
             SELECT $1, queue, minute, count \
             FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS c(queue, minute, count) \
             WHERE minute >= $5 \
             ON CONFLICT (node_id, queue, minute) DO UPDATE SET count = excluded.count",
            &[&node_id, &queues, &minutes, &numbers, &since_minute],
        )
        .await
        .map_err(from_pg)?;
    Ok(())
}

pub(crate) async fn recorded(
    client: &impl GenericClient,
    since_minute: i64,
) -> Result<Vec<MinuteCount>, StoreError> {
    let rows = client
        .query(
            "SELECT node_id, queue, minute, count FROM throughput WHERE minute >= $1 \
             ORDER BY queue, minute, node_id",
            &[&since_minute],
        )
        .await
        .map_err(from_pg)?;
    Ok(rows
        .iter()
        .map(|row| MinuteCount {
            node_id: row.get(0),
            queue: row.get(1),
            minute: row.get(2),
            count: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
        })
        .collect())
}
