//! The PostgreSQL side of a run: a fresh database per scenario (`errands_bench_<random>`),
//! created on the server `--postgres` names and dropped afterwards, and what the bench reads
//! from PostgreSQL itself: transaction and WAL counters around a phase, the server's settings,
//! and the dead tuples left in `errands.jobs`.
//!
//! The bench's own connections go to the `postgres` database, never to the benchmark's, so
//! the CPU of the benchmark database's backends (see [`crate::cpu`]) is the errands servers'
//! alone. Only the dead-tuple reading connects to the benchmark database, after the servers
//! have stopped.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::time::{sleep, Instant};
use tokio_postgres::{Client, NoTls};

/// The prefix of every database the bench creates; [`crate::cpu`] tells their backends by it.
pub const DATABASE_PREFIX: &str = "errands_bench_";

/// Longest wait for a dropped database's server backends to exit.
const BACKENDS_GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `url` and drives the connection on a task of its own.
pub async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("  a bench connection to PostgreSQL failed: {error}");
        }
    });
    Ok(client)
}

/// A name no other run uses: the prefix and 16 random hex digits.
fn fresh_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("{DATABASE_PREFIX}{:016x}", hasher.finish())
}

/// A database created for one scenario, dropped (`WITH (FORCE)`) by [`Database::drop_now`], or
/// when dropped if that was never reached (a scenario that failed half-way).
pub struct Database {
    name: String,
    server: String,
    dropped: bool,
}

impl Database {
    /// Creates an empty database on the PostgreSQL server at `server`
    /// (`postgres://user@host:port`, no database name).
    pub async fn create(server: &str) -> Result<Self> {
        let name = fresh_name();
        let admin = connect(&admin_url(server)).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            name,
            server: server.to_owned(),
            dropped: false,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL `errands serve --db` gets.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    /// The exact counters now (read from the `postgres` database).
    pub async fn counters(&self) -> Result<Counters> {
        let admin = connect(&admin_url(&self.server)).await?;
        Counters::read(&admin).await
    }

    /// Process ids of the client backends connected to this database now.
    pub async fn backend_pids(&self) -> Result<Vec<u32>> {
        let admin = connect(&admin_url(&self.server)).await?;
        let rows = admin
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE datname = $1 AND backend_type = 'client backend'",
                &[&self.name],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.get::<_, i32>(0).max(0) as u32)
            .collect())
    }

    /// The URL of the `postgres` database on this database's server, for the bench's own
    /// connections.
    pub fn admin_url(&self) -> String {
        admin_url(&self.server)
    }

    /// Waits until no client backend is connected to this database any more: after the servers
    /// are killed their backends notice the closed sockets and exit, flushing their statistics
    /// as they go, which is what makes `pg_stat_user_tables` complete.
    pub async fn wait_backends_gone(&self) -> Result<()> {
        let admin = connect(&admin_url(&self.server)).await?;
        let deadline = Instant::now() + BACKENDS_GONE_TIMEOUT;
        loop {
            let row = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = $1 AND backend_type = 'client backend'",
                    &[&self.name],
                )
                .await?;
            let left: i64 = row.get(0);
            if left == 0 {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{left} backends still connected to {} after {BACKENDS_GONE_TIMEOUT:?}",
                self.name
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// The statistics of `errands.jobs`, read in this database once its server backends are
    /// gone (see [`Database::wait_backends_gone`]), and the exact count from `pgstattuple` when
    /// that extension can be created.
    pub async fn jobs_table(&self) -> Result<JobsTable> {
        let client = connect(&self.url()).await?;
        // PostgreSQL 15 and later: flushes this backend's own pending statistics (it has
        // none; the servers' backends flushed theirs when they exited).
        let flush: Option<String> = client
            .query_one("SELECT to_regproc('pg_stat_force_next_flush')::text", &[])
            .await?
            .get(0);
        let flushed = flush.is_some();
        if flushed {
            client
                .batch_execute("SELECT pg_stat_force_next_flush()")
                .await?;
        }
        let row = client
            .query_one(
                "SELECT n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, \
                        autovacuum_count + vacuum_count, \
                        pg_total_relation_size(relid) \
                 FROM pg_stat_user_tables WHERE schemaname = 'errands' AND relname = 'jobs'",
                &[],
            )
            .await
            .context("reading pg_stat_user_tables for errands.jobs")?;
        let count = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        let commits: i64 = client
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .context("reading pg_stat_database")?
            .get(0);
        // An exact count, by scanning the table, where the contrib module is installed.
        let exact = match client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
            .await
        {
            Ok(()) => {
                let row = client
                    .query_one(
                        "SELECT dead_tuple_count FROM pgstattuple('errands.jobs')",
                        &[],
                    )
                    .await?;
                Some(row.get::<_, i64>(0).max(0) as u64)
            }
            Err(_) => None,
        };
        Ok(JobsTable {
            live: count(0),
            dead: count(1),
            updated: count(2),
            hot_updated: count(3),
            vacuums: count(4),
            bytes: count(5),
            flushed,
            exact_dead: exact,
            commits: commits.max(0) as u64,
        })
    }

    /// Drops the database, closing whatever is still connected to it.
    pub async fn drop_now(mut self) -> Result<()> {
        self.dropped = true;
        drop_database(&self.server, &self.name).await
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (server, name) = (self.server.clone(), self.name.clone());
        // Dropping may happen while the runtime unwinds a failed scenario: on a thread of its
        // own, with a runtime of its own.
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_database(&server, &name))
        })
        .join();
        if !matches!(outcome, Ok(Ok(()))) {
            eprintln!("  could not drop database {}: {outcome:?}", self.name);
        }
    }
}

/// `DROP DATABASE … WITH (FORCE)`.
async fn drop_database(server: &str, name: &str) -> Result<()> {
    let admin = connect(&admin_url(server)).await?;
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    tokio::time::timeout(Duration::from_secs(30), admin.batch_execute(&sql))
        .await
        .with_context(|| format!("{sql} timed out"))?
        .with_context(|| sql.clone())?;
    Ok(())
}

/// The URL of the `postgres` database on `server`.
fn admin_url(server: &str) -> String {
    format!("{server}/postgres")
}

/// Counters that are exact at any instant (unlike `pg_stat_wal` or `pg_stat_database`, which
/// backends update at most once a second, or ten seconds after they go idle).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Counters {
    /// The next transaction id to be given out: every transaction that writes takes one.
    pub next_xid: u64,
    /// The WAL insert position, in bytes.
    pub wal_bytes: u64,
}

impl Counters {
    /// Reads them on `client`.
    async fn read(client: &Client) -> Result<Self> {
        let row = client
            .query_one(
                "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, \
                        pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
                &[],
            )
            .await
            .context("reading the transaction and WAL counters")?;
        Ok(Self {
            next_xid: row.get::<_, i64>(0).max(0) as u64,
            wal_bytes: row.get::<_, i64>(1).max(0) as u64,
        })
    }

    /// What was added since `before`.
    pub fn since(self, before: Counters) -> Counters {
        Counters {
            next_xid: self.next_xid.saturating_sub(before.next_xid),
            wal_bytes: self.wal_bytes.saturating_sub(before.wal_bytes),
        }
    }
}

/// `errands.jobs` as `pg_stat_user_tables` (and `pgstattuple`) see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JobsTable {
    /// `n_live_tup`.
    pub live: u64,
    /// `n_dead_tup`.
    pub dead: u64,
    /// `n_tup_upd`: row updates since the table was created.
    pub updated: u64,
    /// `n_tup_hot_upd`: of those, heap-only (no index entry written).
    pub hot_updated: u64,
    /// Vacuums of the table, automatic or not.
    pub vacuums: u64,
    /// The table with its indexes and TOAST, in bytes.
    pub bytes: u64,
    /// Whether `pg_stat_force_next_flush()` existed and was called before reading.
    pub flushed: bool,
    /// `pgstattuple`'s `dead_tuple_count`, when the extension could be created.
    pub exact_dead: Option<u64>,
    /// Transactions committed in the database since it was created (`pg_stat_database`).
    pub commits: u64,
}

impl std::fmt::Display for JobsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::report::thousands;
        write!(
            f,
            "errands.jobs after the servers stopped{}: {} live, {} dead tuples{}, {} row \
             updates of which {} HOT, {} vacuums meanwhile, {:.1} MB with indexes; {} \
             transactions committed in the database",
            if self.flushed {
                " (statistics flushed)"
            } else {
                ""
            },
            thousands(self.live),
            thousands(self.dead),
            self.exact_dead
                .map(|n| format!(" ({} by pgstattuple)", thousands(n)))
                .unwrap_or_default(),
            thousands(self.updated),
            thousands(self.hot_updated),
            self.vacuums,
            self.bytes as f64 / 1e6,
            thousands(self.commits),
        )
    }
}

/// The PostgreSQL server's version and the settings that bear on the figures, e.g.
/// `PostgreSQL 15.20; synchronous_commit on, fsync on, …`.
pub async fn describe(server: &str) -> Result<String> {
    let admin = connect(&admin_url(server)).await?;
    let version: String = admin.query_one("SHOW server_version", &[]).await?.get(0);
    let mut parts = vec![format!("PostgreSQL {version}")];
    for setting in [
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "commit_delay",
        "shared_buffers",
        "max_connections",
        "autovacuum",
        "shared_preload_libraries",
    ] {
        let value: String = admin
            .query_one(&format!("SHOW {setting}"), &[])
            .await?
            .get(0);
        let value = if value.is_empty() {
            "(none)".to_owned()
        } else {
            value
        };
        parts.push(format!("{setting} {value}"));
    }
    let statements: Option<String> = admin
        .query_opt(
            "SELECT installed_version FROM pg_available_extensions \
             WHERE name = 'pg_stat_statements'",
            &[],
        )
        .await?
        .and_then(|row| row.get(0));
    parts.push(match statements {
        Some(version) => format!("pg_stat_statements {version} installed"),
        None => "pg_stat_statements not installed".to_owned(),
    });
    Ok(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_names_differ_and_are_plain_identifiers() {
        let (a, b) = (fresh_name(), fresh_name());
        assert_ne!(a, b);
        assert!(a.starts_with(DATABASE_PREFIX));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }
}
