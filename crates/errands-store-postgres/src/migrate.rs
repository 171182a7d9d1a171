//! Versioned migrations of the `errands` schema.
//!
//! Each migration runs once, in order, inside one transaction that holds an exclusive lock on
//! `errands.schema_migrations`: nodes starting together migrate one after the other, and the
//! lock is transaction-scoped, so this works behind a transaction-pooling connection pooler
//! (a session advisory lock, as general-purpose migrators take, would not).

use deadpool_postgres::{Client, GenericClient};
use errands_store::StoreError;
use tokio_postgres::error::SqlState;

use crate::error::from_pg;

/// One migration: its version, name and SQL.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, oldest first. Migrations are never edited once released, only added.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "schema",
        sql: include_str!("../migrations/0001_schema.sql"),
    },
    Migration {
        version: 2,
        name: "enqueue_function",
        sql: include_str!("../migrations/0002_enqueue_function.sql"),
    },
    Migration {
        version: 3,
        name: "workers",
        sql: include_str!("../migrations/0003_workers.sql"),
    },
    Migration {
        version: 4,
        name: "throughput",
        sql: include_str!("../migrations/0004_throughput.sql"),
    },
    Migration {
        version: 5,
        name: "headers",
        sql: include_str!("../migrations/0005_headers.sql"),
    },
    Migration {
        version: 6,
        name: "claim_index",
        sql: include_str!("../migrations/0006_claim_index.sql"),
    },
    Migration {
        version: 7,
        name: "interruptions",
        sql: include_str!("../migrations/0007_interruptions.sql"),
    },
];

/// The schema version this build of errands needs.
pub fn current_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const BOOTSTRAP: &str = "CREATE SCHEMA IF NOT EXISTS errands; \
    CREATE TABLE IF NOT EXISTS errands.schema_migrations (\
        version bigint PRIMARY KEY, name text NOT NULL, \
        applied_at timestamptz NOT NULL DEFAULT now())";

/// Applies every migration the database lacks. Returns the versions applied.
pub(crate) async fn migrate(client: &mut Client) -> Result<Vec<i64>, StoreError> {
    if let Err(error) = client.batch_execute(BOOTSTRAP).await {
        // Two nodes creating the schema at once: one loses with a unique violation on the
        // catalog, and the schema exists now.
        if error.code() != Some(&SqlState::UNIQUE_VIOLATION) {
            return Err(from_pg(error));
        }
        client.batch_execute(BOOTSTRAP).await.map_err(from_pg)?;
    }
    let tx = client.transaction().await.map_err(from_pg)?;
    tx.batch_execute("LOCK TABLE errands.schema_migrations IN EXCLUSIVE MODE")
        .await
        .map_err(from_pg)?;
    let applied = applied_versions(&tx).await?;
    let mut done = Vec::new();
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        tx.batch_execute(migration.sql).await.map_err(|error| {
            StoreError::Backend(format!(
                "migration {} ({}) failed: {}",
                migration.version,
                migration.name,
                from_pg(error)
            ))
        })?;
        tx.execute(
            "INSERT INTO errands.schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(from_pg)?;
        done.push(migration.version);
    }
    tx.commit().await.map_err(from_pg)?;
    Ok(done)
}

/// The versions this build knows and the database has not applied.
pub(crate) async fn pending(client: &impl GenericClient) -> Result<Vec<i64>, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('errands.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(from_pg)?
        .get(0);
    let applied = if exists {
        applied_versions(client).await?
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect())
}

async fn applied_versions(client: &impl GenericClient) -> Result<Vec<i64>, StoreError> {
    let rows = client
        .query("SELECT version FROM errands.schema_migrations", &[])
        .await
        .map_err(from_pg)?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
