//! Group commit: one thread owns the write connection and runs every queued write in one
//! transaction, so many concurrent writers share one commit (and one fsync).

use std::panic::{self, AssertUnwindSafe};
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

/// Runs an operation inside the batch's transaction.
type Run = Box<dyn FnOnce(&Connection) -> Reply + Send>;

/// One write: runs inside the batch's transaction and returns how to deliver its outcome once
/// the commit is known.
pub(crate) struct Op {
    /// Whether the reply must wait for an fsync (under `--sync full`).
    pub durable: bool,
    pub run: Run,
}

/// Builds an [`Op`] from a closure, returning the receiver of its result.
pub(crate) fn op<T, F>(durable: bool, f: F) -> (Op, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let run = Box::new(move |conn: &Connection| {
        let outcome = in_savepoint(conn, f);
        let reply: Reply = Box::new(move |commit_error: Option<&StoreError>| {
            let outcome = match commit_error {
                Some(error) => Err(StoreError::Backend(error.to_string())),
                None => outcome,
            };
            // The caller may have given up waiting; its loss.
            let _ = tx.send(outcome);
        });
        reply
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
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or_else(|_| {
        tracing::error!("a store operation panicked; it was rolled back");
        Err(StoreError::Backend(
            "the operation failed unexpectedly".into(),
        ))
    });
    if outcome.is_err() {
        execute_cached(conn, "ROLLBACK TO op")?;
    }
    execute_cached(conn, "RELEASE op")?;
    outcome
}

/// Starts the writer thread. It ends when every sender is dropped.
pub(crate) fn spawn(conn: Connection, sync_full: bool) -> std::io::Result<mpsc::Sender<Op>> {
    let (tx, rx) = mpsc::channel::<Op>();
    thread::Builder::new()
        .name("errands-sqlite-writer".into())
        .spawn(move || run(conn, rx, sync_full))?;
    Ok(tx)
}

fn run(conn: Connection, rx: mpsc::Receiver<Op>, sync_full: bool) {
    let mut synced = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // Worker reports (claims, completions) are committed to the WAL before anything acts
        // on them, which survives a process crash; only API writes pay for an fsync.
        let full = sync_full && batch.iter().any(|op| op.durable);
        if synced != Some(full) {
            let level = if full { "FULL" } else { "NORMAL" };
            if let Err(error) = conn.pragma_update(None, "synchronous", level) {
                tracing::error!(%error, "could not set synchronous mode");
            }
            synced = Some(full);
        }
        commit_batch(&conn, batch);
    }
}

fn commit_batch(conn: &Connection, batch: Vec<Op>) {
    if let Err(error) = execute_cached(conn, "BEGIN IMMEDIATE") {
        // Dropping the batch drops its reply channels: each caller gets an error and nothing
        // was applied.
        tracing::error!(%error, "could not begin a write transaction");
        return;
    }
    let replies: Vec<_> = batch.into_iter().map(|op| (op.run)(conn)).collect();
    let started = Instant::now();
    let commit = execute_cached(conn, "COMMIT").map_err(StoreError::from);
    metrics::histogram!("errands_store_commit_seconds").record(started.elapsed().as_secs_f64());
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let error = commit.err();
    for reply in replies {
        reply(error.as_ref());
    }
}

/// Runs a transaction-control statement from the statement cache: these run for every batch
/// and every operation, and parsing them each time showed up in profiles.
fn execute_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}
