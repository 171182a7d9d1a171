//! Group commit: one thread owns the write connection and runs every queued write in one
//! transaction, so many concurrent writers share one commit; a second thread fsyncs the
//! write-ahead log for the commits whose callers must know they are on disk.

use std::fs::File;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::StoreError;

/// Largest number of operations folded into one transaction.
const MAX_BATCH: usize = 512;

/// Delivers an operation's outcome once the batch's commit result is known.
type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// Called once the batch's commit succeeded, before any fsync.
type Committed = Box<dyn FnOnce() + Send>;

/// What is left to do for an operation once it ran inside the batch's transaction.
pub(crate) struct Ran {
    committed: Option<Committed>,
    reply: Reply,
}

/// Runs an operation inside the batch's transaction.
type Run = Box<dyn FnOnce(&Connection) -> Ran + Send>;

/// One write: runs inside the batch's transaction and returns how to deliver its outcome once
/// the commit is known.
pub(crate) struct Op {
    /// Whether the reply must wait for an fsync (under `--sync full`).
    pub durable: bool,
    pub run: Run,
}

/// Builds an [`Op`] from a closure, returning the receiver of its result. The closure runs in
/// a savepoint of its own, so if it fails, what it wrote is undone and the rest of the batch
/// commits.
pub(crate) fn op<T, F>(durable: bool, f: F) -> (Op, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    build(durable, Guard::Savepoint, f, |_| None)
}

/// Like [`op`] (not durable) for a closure whose only write is one statement, with nothing
/// after it that can fail. SQLite undoes a failing statement by itself, so such an operation
/// needs no savepoint, whose cost is a journal copy of every page it touches: a worker's
/// completions and progress reports, many per commit, are written this way.
pub(crate) fn statement_op<T, F>(f: F) -> (Op, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    build(false, Guard::Statement, f, |_| None)
}

/// How an operation's writes are undone if it fails.
#[derive(Clone, Copy)]
enum Guard {
    /// By rolling back to a savepoint taken before it.
    Savepoint,
    /// By SQLite, which undoes a failing statement; the operation runs only one.
    Statement,
}

/// Like [`op`], and `on_commit` gets a copy of the result as soon as the write is committed,
/// which under `--sync full` is before the reply (that waits for the fsync).
pub(crate) fn op_with_commit_hook<T, F, H>(
    durable: bool,
    f: F,
    on_commit: H,
) -> (Op, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Clone + Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    H: FnOnce(T) + Send + 'static,
{
    build(durable, Guard::Savepoint, f, move |value: &T| {
        let value = value.clone();
        let committed: Committed = Box::new(move || on_commit(value));
        Some(committed)
    })
}

fn build<T, F, H>(
    durable: bool,
    guard: Guard,
    f: F,
    hook: H,
) -> (Op, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    H: FnOnce(&T) -> Option<Committed> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let run = Box::new(move |conn: &Connection| {
        let outcome = match guard {
            Guard::Savepoint => in_savepoint(conn, f),
            Guard::Statement => caught(f, conn),
        };
        let committed = outcome.as_ref().ok().and_then(hook);
        let reply: Reply = Box::new(move |commit_error: Option<&StoreError>| {
            let outcome = match commit_error {
                Some(error) => Err(error.for_another_caller()),
                None => outcome,
            };
            // The caller may have given up waiting; its loss.
            let _ = tx.send(outcome);
        });
        Ran { committed, reply }
    });
    (Op { durable, run }, rx)
}

/// Runs `f` in a savepoint so a failing operation undoes only itself, not the whole batch.
/// A panic counts as a failure: one bad operation must not take the writer thread down.
fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    execute_cached(conn, "SAVEPOINT op")?;
    let outcome = caught(f, conn);
    if outcome.is_err() {
        execute_cached(conn, "ROLLBACK TO op")?;
    }
    execute_cached(conn, "RELEASE op")?;
    outcome
}

/// Runs `f`, turning a panic into an error: one bad operation must not take the writer thread
/// down.
fn caught<T>(
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    conn: &Connection,
) -> Result<T, StoreError> {
    panic::catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|_| {
        tracing::error!("a store operation panicked");
        Err(StoreError::Backend(
            "the operation failed unexpectedly".into(),
        ))
    })
}

/// Starts the writer thread. It ends when every sender is dropped.
///
/// With `wal` set (`--sync full`), replies to durable operations wait until that write-ahead
/// log has been fsynced after their commit. The fsync runs on a thread of its own, so the
/// writer goes on with the next batch meanwhile, and one fsync covers every commit before it.
pub(crate) fn spawn(conn: Connection, wal: Option<PathBuf>) -> std::io::Result<mpsc::Sender<Op>> {
    // Commits never fsync themselves; the syncer does it for those that need it. A crash can
    // lose only commits nobody was told about, and SQLite still fsyncs before checkpoints.
    if let Err(error) = conn.pragma_update(None, "synchronous", "NORMAL") {
        tracing::error!(%error, "could not set synchronous mode");
    }
    let syncer = wal.map(spawn_syncer).transpose()?;
    let (tx, rx) = mpsc::channel::<Op>();
    thread::Builder::new()
        .name("errands-sqlite-writer".into())
        .spawn(move || run(conn, rx, syncer))?;
    Ok(tx)
}

fn run(conn: Connection, rx: mpsc::Receiver<Op>, syncer: Option<mpsc::Sender<Vec<Reply>>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit_batch(&conn, batch, syncer.as_ref());
    }
}

fn commit_batch(conn: &Connection, batch: Vec<Op>, syncer: Option<&mpsc::Sender<Vec<Reply>>>) {
    if let Err(error) = execute_cached(conn, "BEGIN IMMEDIATE") {
        // Dropping the batch drops its reply channels: each caller gets an error and nothing
        // was applied.
        tracing::error!(%error, "could not begin a write transaction");
        return;
    }
    let ran: Vec<_> = batch
        .into_iter()
        .map(|op| (op.durable, (op.run)(conn)))
        .collect();
    let started = Instant::now();
    let commit = execute_cached(conn, "COMMIT").map_err(StoreError::from);
    metrics::histogram!("errands_store_commit_seconds").record(started.elapsed().as_secs_f64());
    if let Err(error) = commit {
        let _ = conn.execute_batch("ROLLBACK");
        for (_, ran) in ran {
            (ran.reply)(Some(&error));
        }
        return;
    }
    let mut to_sync = Vec::new();
    for (durable, ran) in ran {
        if let Some(committed) = ran.committed {
            committed();
        }
        if durable && syncer.is_some() {
            to_sync.push(ran.reply);
        } else {
            // Worker reports (claims, completions) act once committed: a crash before the
            // next fsync returns their jobs to the queue, which is what a lost worker does.
            (ran.reply)(None);
        }
    }
    let Some(syncer) = syncer.filter(|_| !to_sync.is_empty()) else {
        return;
    };
    if let Err(mpsc::SendError(replies)) = syncer.send(to_sync) {
        let error = StoreError::Backend("the fsync thread is gone".into());
        for reply in replies {
            reply(Some(&error));
        }
    }
}

/// Starts the thread that makes commits durable: it fsyncs the write-ahead log once for
/// every group of commits waiting, then sends their replies.
fn spawn_syncer(wal: PathBuf) -> std::io::Result<mpsc::Sender<Vec<Reply>>> {
    let (tx, rx) = mpsc::channel::<Vec<Reply>>();
    thread::Builder::new()
        .name("errands-sqlite-fsync".into())
        .spawn(move || {
            while let Ok(mut replies) = rx.recv() {
                // Every commit queued here had finished before this fsync starts.
                while let Ok(more) = rx.try_recv() {
                    replies.extend(more);
                }
                let started = Instant::now();
                let synced = fsync(&wal);
                metrics::histogram!("errands_store_fsync_seconds")
                    .record(started.elapsed().as_secs_f64());
                let outcome = synced.map_err(|error| {
                    tracing::error!(%error, wal = %wal.display(), "fsync of the write-ahead log failed");
                    StoreError::Backend(format!("fsync of the write-ahead log failed: {error}"))
                });
                for reply in replies {
                    reply(outcome.as_ref().err());
                }
            }
        })?;
    Ok(tx)
}

/// Flushes the file at `path` to disk. The file is opened each time so it is surely the log
/// SQLite writes now, even if it was ever removed and created again.
fn fsync(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_data()
}

/// Runs a transaction-control statement from the statement cache: these run for every batch
/// and every operation, and parsing them each time showed up in profiles.
fn execute_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL database in a temporary directory holding `CREATE TABLE t (...)` with `columns`.
    fn database(columns: &str) -> (tempfile::TempDir, PathBuf, Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; CREATE TABLE t ({columns})"
        ))
        .expect("schema");
        (dir, path, conn)
    }

    /// The committed rows of `t`, read through a connection of their own.
    fn committed_rows(path: &Path) -> Vec<i64> {
        Connection::open(path)
            .expect("open")
            .prepare("SELECT n FROM t ORDER BY n")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    fn insert(durable: bool, n: i64) -> (Op, oneshot::Receiver<Result<(), StoreError>>) {
        op(durable, move |conn: &Connection| {
            conn.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
            Ok(())
        })
    }

    /// Durable replies go through the fsync thread: when the fsync fails, they report it,
    /// while the same batch's other operations, answered at commit, succeed.
    #[tokio::test]
    async fn durable_replies_wait_for_the_fsync() {
        let (dir, _, conn) = database("n INTEGER");
        // A log that does not exist cannot be fsynced.
        let writer = spawn(conn, Some(dir.path().join("missing-wal"))).expect("spawn");
        let (durable, durable_reply) = insert(true, 1);
        let (report, report_reply) = insert(false, 2);
        writer.send(durable).expect("send");
        writer.send(report).expect("send");

        let error = durable_reply
            .await
            .expect("reply")
            .expect_err("fsync failed");
        assert!(error.to_string().contains("fsync"), "{error}");
        report_reply.await.expect("reply").expect("committed");
    }

    /// A statement operation that fails mid-statement leaves nothing behind, though it ran
    /// without a savepoint in a transaction shared with others that commit.
    #[tokio::test]
    async fn a_failing_statement_op_is_undone_alone() {
        let (_dir, path, conn) = database("n INTEGER CHECK (n > 0)");
        let writer = spawn(conn, None).expect("spawn");
        let (before, before_reply) = insert(false, 1);
        // The first row is written before the second breaks the CHECK.
        let (failing, failing_reply) = statement_op(|conn: &Connection| {
            conn.execute("INSERT INTO t (n) VALUES (2), (-1)", [])?;
            Ok(())
        });
        let (after, after_reply) = insert(false, 3);
        for op in [before, failing, after] {
            writer.send(op).expect("send");
        }

        before_reply.await.expect("reply").expect("committed");
        failing_reply
            .await
            .expect("reply")
            .expect_err("CHECK failed");
        after_reply.await.expect("reply").expect("committed");
        assert_eq!(committed_rows(&path), [1, 3]);
    }

    #[tokio::test]
    async fn durable_replies_succeed_once_the_log_is_synced() {
        let (dir, path, conn) = database("n INTEGER");
        let writer = spawn(conn, Some(dir.path().join("t.db-wal"))).expect("spawn");
        let (durable, reply) = insert(true, 1);
        writer.send(durable).expect("send");
        reply.await.expect("reply").expect("synced");
        assert_eq!(committed_rows(&path), [1]);
    }
}
