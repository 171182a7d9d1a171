//! Vacuuming `errands.jobs` as a node's writes make dead row versions, whether or not
//! autovacuum runs.
//!
//! Every claim and every completion leaves a dead version of its row, and its entry in the
//! ready index stays until a vacuum. A claim walks the ready index from its head, so without
//! a vacuum each claim reads more dead entries than the last: over a 100,000-job drain with
//! autovacuum off, claims went from 0.15 to 3.5 ms of database CPU per job. Autovacuum's
//! defaults (20 % of the table, checked once a minute) are far too slow for a queue either
//! way. So each node counts the row versions its own transactions wrote and, past
//! [`ROWS_PER_VACUUM`], vacuums the table on a connection of its own, never inside a write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Row versions this node writes between two vacuums: a few thousand jobs.
pub(crate) const ROWS_PER_VACUUM: u64 = 10_000;

/// Shortest time between the end of one vacuum and the start of the next, so a node writing
/// very fast spends most of its time on jobs, not vacuums.
const PAUSE: Duration = Duration::from_secs(1);

/// Counts this node's writes and wakes its vacuum task.
pub(crate) struct Vacuum {
    written: AtomicU64,
    due: Notify,
    /// Vacuums run so far.
    runs: watch::Sender<u64>,
}

impl Vacuum {
    /// Starts the task that vacuums when due; the caller aborts it when the store is dropped.
    pub(crate) fn start(pool: Pool) -> (Arc<Self>, JoinHandle<()>) {
        let vacuum = Arc::new(Self {
            written: AtomicU64::new(0),
            due: Notify::new(),
            runs: watch::Sender::new(0),
        });
        let task = tokio::spawn(run(vacuum.clone(), pool));
        (vacuum, task)
    }

    /// This node's transactions wrote `rows` row versions of `errands.jobs`.
    pub(crate) fn wrote(&self, rows: u64) {
        let before = self.written.fetch_add(rows, Ordering::Relaxed);
        if before < ROWS_PER_VACUUM && before + rows >= ROWS_PER_VACUUM {
            self.due.notify_one();
        }
    }

    /// Vacuums this node has run so far, and as it runs more.
    pub(crate) fn runs(&self) -> watch::Receiver<u64> {
        self.runs.subscribe()
    }
}

/// Waits until enough rows were written, vacuums, pauses, again.
async fn run(vacuum: Arc<Vacuum>, pool: Pool) {
    loop {
        if vacuum.written.load(Ordering::Relaxed) < ROWS_PER_VACUUM {
            vacuum.due.notified().await;
            continue;
        }
        vacuum.written.store(0, Ordering::Relaxed);
        match vacuum_jobs(&pool).await {
            Ok(()) => {
                vacuum.runs.send_modify(|runs| *runs += 1);
            }
            Err(error) => tracing::warn!(%error, "could not vacuum errands.jobs"),
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// One `VACUUM` of the jobs table. `SKIP_LOCKED`: if another node is vacuuming it right now,
/// this one has nothing to add.
async fn vacuum_jobs(pool: &Pool) -> Result<(), errands_store::StoreError> {
    let client = pool.get().await.map_err(crate::error::from_pool)?;
    client
        .batch_execute("VACUUM (SKIP_LOCKED) errands.jobs")
        .await
        .map_err(crate::error::from_pg)
}
