//! The embedded SQLite store: one file, WAL, a group-committing writer thread and a small
//! pool of read connections.

mod cron_ops;
mod interrupt_ops;
mod node_ops;
mod ops;
mod rows;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errands_core::cron::CronSpec;
use errands_core::lifecycle::FailureCause;
use errands_core::{AttemptError, Job, JobId, NewJob, Progress};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::StoreError;
use crate::node::{Heartbeat, Reap};
use crate::store::{
    ClaimRequest, CompletedJob, Enqueued, FiredCron, JobFilter, JobPage, MovedJob, QueueInfo,
    ReleasedJob, Report, Reported, Store, StoredCron,
};
use writer::Op;

/// How hard a commit pushes data to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// An acknowledged API write is fsynced before the reply.
    #[default]
    Full,
    /// Commits reach the OS before the reply: safe against a crash of the server process,
    /// not against power loss.
    Normal,
}

impl FromStr for SyncMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(SyncMode::Full),
            "normal" => Ok(SyncMode::Normal),
            other => Err(format!(
                "unknown sync mode {other:?} (expected full or normal)"
            )),
        }
    }
}

/// Options for opening a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Durability of commits.
    pub sync: SyncMode,
    /// Seconds a dead job is kept before it is purged.
    pub dead_retention: f64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            sync: SyncMode::Full,
            dead_retention: 30.0 * 86_400.0,
        }
    }
}

/// A [`Store`] in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Op>>,
    readers: Mutex<Vec<Connection>>,
    dead_retention: f64,
    /// Keeps a temporary store's directory alive as long as the store.
    _temp_dir: Option<tempfile::TempDir>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        Self::open_inner(path.as_ref().to_path_buf(), options, None)
    }

    /// A throwaway store in a temporary directory, removed when the store is dropped.
    pub fn temporary() -> Result<Self, StoreError> {
        let dir = tempfile::tempdir().map_err(|e| {
            StoreError::Backend(format!("cannot create a temporary directory: {e}"))
        })?;
        let path = dir.path().join("errands.db");
        let options = SqliteOptions {
            sync: SyncMode::Normal,
            ..SqliteOptions::default()
        };
        Self::open_inner(path, options, Some(dir))
    }

    fn open_inner(
        path: PathBuf,
        options: SqliteOptions,
        temp_dir: Option<tempfile::TempDir>,
    ) -> Result<Self, StoreError> {
        let mut conn = Connection::open(&path)?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        let wal = (options.sync == SyncMode::Full).then(|| wal_path(&path));
        let writer = writer::spawn(conn, wal)
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                dead_retention: options.dead_retention,
                _temp_dir: temp_dir,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in the next group commit and returns its result once the commit is done.
    async fn write<T, F>(&self, durable: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (op, reply) = writer::op(durable, f);
        self.submit(op, reply).await
    }

    /// Like [`Self::write`], not durable, for a worker report whose only write is one statement
    /// and which cannot fail after it (see [`writer::statement_op`]).
    async fn write_statement<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (op, reply) = writer::statement_op(f);
        self.submit(op, reply).await
    }

    /// Hands `op` to the writer thread and waits for its reply.
    async fn submit<T>(
        &self,
        op: Op,
        reply: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.inner
            .writer
            .lock()
            .map_err(|_| StoreError::Closed)?
            .send(op)
            .map_err(|_| StoreError::Closed)?;
        reply
            .await
            .map_err(|_| StoreError::Backend("the write transaction failed to start".into()))?
    }

    /// Runs `f` on a read connection (WAL: it sees every committed write, blocks no writer).
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut pool| pool.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&inner.path)?,
            };
            let outcome = f(&conn);
            if let Ok(mut pool) = inner.readers.lock() {
                pool.push(conn);
            }
            outcome
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }
}

/// Where SQLite keeps the write-ahead log of the database at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        self.write(true, move |conn| ops::enqueue(conn, &jobs))
            .await
    }

    async fn enqueue_announcing(
        &self,
        jobs: Vec<NewJob>,
        committed: oneshot::Sender<Vec<Enqueued>>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let (op, reply) = writer::op_with_commit_hook(
            true,
            move |conn| ops::enqueue(conn, &jobs),
            move |stored| {
                let _ = committed.send(stored);
            },
        );
        self.submit(op, reply).await
    }

    async fn get(&self, id: JobId) -> Result<Job, StoreError> {
        self.read(move |conn| ops::get(conn, id)).await
    }

    async fn list(&self, filter: JobFilter) -> Result<JobPage, StoreError> {
        self.read(move |conn| ops::list(conn, &filter)).await
    }

    async fn claim(
        &self,
        request: ClaimRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        self.write(false, move |conn| ops::claim(conn, &request, now))
            .await
    }

    async fn unclaim(&self, worker_id: &str, ids: Vec<JobId>) -> Result<Vec<MovedJob>, StoreError> {
        let worker_id = worker_id.to_owned();
        self.write(false, move |conn| ops::unclaim(conn, &worker_id, &ids))
            .await
    }

    async fn complete(
        &self,
        id: JobId,
        worker_id: &str,
        result: Option<Value>,
        now: DateTime<Utc>,
    ) -> Result<CompletedJob, StoreError> {
        let worker_id = worker_id.to_owned();
        self.write_statement(move |conn| ops::complete(conn, id, &worker_id, result, now))
            .await
    }

    async fn fail(
        &self,
        id: JobId,
        worker_id: &str,
        error: AttemptError,
        cause: FailureCause,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let worker_id = worker_id.to_owned();
        let dead_retention = self.inner.dead_retention;
        self.write(false, move |conn| {
            ops::fail(conn, id, &worker_id, error, cause, now, dead_retention)
        })
        .await
    }

    async fn interrupt(
        &self,
        id: JobId,
        worker_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Reported, StoreError> {
        let worker_id = worker_id.to_owned();
        let dead_retention = self.inner.dead_retention;
        self.write(false, move |conn| {
            interrupt_ops::interrupt(conn, id, &worker_id, now, dead_retention)
        })
        .await
    }

    async fn report(
        &self,
        worker_id: &str,
        reports: Vec<Report>,
        now: DateTime<Utc>,
    ) -> Vec<Result<Reported, StoreError>> {
        // join_all polls in order, so the writes reach the writer's queue in the order given,
        // and all of them share one group commit.
        let writes = reports
            .into_iter()
            .map(|report| crate::store::apply_report(self, worker_id, report, now));
        futures_util::future::join_all(writes).await
    }

    async fn progress(
        &self,
        id: JobId,
        worker_id: &str,
        progress: Progress,
    ) -> Result<(), StoreError> {
        let worker_id = worker_id.to_owned();
        self.write_statement(move |conn| ops::progress(conn, id, &worker_id, &progress))
            .await
    }

    async fn cancel(
        &self,
        id: JobId,
        now: DateTime<Utc>,
    ) -> Result<(Job, Option<String>), StoreError> {
        self.write(true, move |conn| ops::cancel(conn, id, now))
            .await
    }

    async fn retry(
        &self,
        id: JobId,
        reset_attempts: bool,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        self.write(true, move |conn| ops::retry(conn, id, reset_attempts, now))
            .await
    }

    async fn delete(&self, id: JobId) -> Result<(), StoreError> {
        self.write(true, move |conn| ops::delete(conn, id)).await
    }

    async fn release_worker(
        &self,
        worker_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReleasedJob>, StoreError> {
        let worker_id = worker_id.to_owned();
        let dead_retention = self.inner.dead_retention;
        self.write(false, move |conn| {
            ops::release_worker(conn, &worker_id, now, dead_retention)
        })
        .await
    }

    async fn expire_deadlines(&self, now: DateTime<Utc>) -> Result<Vec<ReleasedJob>, StoreError> {
        let dead_retention = self.inner.dead_retention;
        self.write(false, move |conn| {
            ops::expire_deadlines(conn, now, dead_retention)
        })
        .await
    }

    async fn promote_due(&self, now: DateTime<Utc>) -> Result<Vec<MovedJob>, StoreError> {
        self.write(false, move |conn| ops::promote_due(conn, now))
            .await
    }

    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write(false, move |conn| ops::purge_expired(conn, now))
            .await
    }

    async fn next_wakeup(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(ops::next_wakeup).await
    }

    async fn queues(&self, now: DateTime<Utc>) -> Result<Vec<QueueInfo>, StoreError> {
        self.read(move |conn| ops::queues(conn, now)).await
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        let queue = queue.to_owned();
        self.write(true, move |conn| ops::set_paused(conn, &queue, paused))
            .await
    }

    async fn paused_queues(&self) -> Result<Vec<String>, StoreError> {
        self.read(ops::paused_queues).await
    }

    async fn put_cron(
        &self,
        name: &str,
        spec: CronSpec,
        now: DateTime<Utc>,
    ) -> Result<(StoredCron, bool), StoreError> {
        let name = name.to_owned();
        self.write(true, move |conn| cron_ops::put_cron(conn, &name, spec, now))
            .await
    }

    async fn get_cron(&self, name: &str) -> Result<Option<StoredCron>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| cron_ops::get_cron(conn, &name)).await
    }

    async fn list_cron(&self) -> Result<Vec<StoredCron>, StoreError> {
        self.read(cron_ops::list_cron).await
    }

    async fn delete_cron(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(true, move |conn| cron_ops::delete_cron(conn, &name))
            .await
    }

    async fn set_cron_paused(
        &self,
        name: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredCron>, StoreError> {
        let name = name.to_owned();
        self.write(true, move |conn| {
            cron_ops::set_cron_paused(conn, &name, paused, now)
        })
        .await
    }

    async fn fire_due_cron(&self, now: DateTime<Utc>) -> Result<Vec<FiredCron>, StoreError> {
        self.write(false, move |conn| cron_ops::fire_due_cron(conn, now))
            .await
    }

    async fn heartbeat(
        &self,
        node_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Heartbeat, StoreError> {
        let node_id = node_id.to_owned();
        self.write(false, move |conn| {
            node_ops::heartbeat(conn, &node_id, now, expires_at)
        })
        .await
    }

    async fn holders(&self, node_id: &str) -> Result<Vec<String>, StoreError> {
        let node_id = node_id.to_owned();
        self.read(move |conn| node_ops::holders(conn, &node_id))
            .await
    }

    async fn remove_node(&self, node_id: &str) -> Result<(), StoreError> {
        let node_id = node_id.to_owned();
        self.write(false, move |conn| node_ops::remove_node(conn, &node_id))
            .await
    }

    async fn reap_nodes(
        &self,
        reap: Reap<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReleasedJob>, StoreError> {
        let dead_retention = self.inner.dead_retention;
        let keep = match reap {
            Reap::Expired => None,
            Reap::AllBut(node) => Some(node.to_owned()),
        };
        self.write(false, move |conn| {
            let reap = keep.as_deref().map_or(Reap::Expired, Reap::AllBut);
            node_ops::reap_nodes(conn, reap, now, dead_retention)
        })
        .await
    }

    async fn try_lead(
        &self,
        role: &str,
        node_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (role, node_id) = (role.to_owned(), node_id.to_owned());
        self.write(false, move |conn| {
            node_ops::try_lead(conn, &role, &node_id, now, expires_at)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::Harness;

    /// A database file in a temporary directory, and stores opened on it with `SYNC`.
    pub(super) struct FileHarness<const FULL_SYNC: bool> {
        dir: tempfile::TempDir,
        first: SqliteStore,
    }

    impl<const FULL_SYNC: bool> FileHarness<FULL_SYNC> {
        fn open(dir: &tempfile::TempDir) -> SqliteStore {
            let options = SqliteOptions {
                sync: if FULL_SYNC {
                    SyncMode::Full
                } else {
                    SyncMode::Normal
                },
                ..SqliteOptions::default()
            };
            SqliteStore::open(dir.path().join("errands.db"), options).expect("open")
        }
    }

    #[async_trait]
    impl<const FULL_SYNC: bool> Harness for FileHarness<FULL_SYNC> {
        type Store = SqliteStore;

        async fn fresh() -> Self {
            let dir = tempfile::tempdir().expect("temporary directory");
            let first = Self::open(&dir);
            Self { dir, first }
        }

        fn store(&self) -> &SqliteStore {
            &self.first
        }

        async fn another(&self) -> SqliteStore {
            Self::open(&self.dir)
        }
    }

    mod normal_sync {
        crate::conformance_suite!(super::FileHarness<false>);
    }

    /// The same suite with `--sync full`, where durable replies go through the fsync thread.
    mod full_sync {
        crate::conformance_suite!(super::FileHarness<true>);
    }

    #[test]
    fn the_temporary_store_opens() {
        assert!(SqliteStore::temporary().expect("temporary").path().exists());
    }
}
