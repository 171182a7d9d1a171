//! Group commit: the hot writes of every connection of this node (enqueues, workers' reports,
//! claims) that arrive while a transaction is in flight go together into the next one.
//!
//! A commit waits for its WAL flush, so a node writing one transaction per request is capped
//! at the disk's flush rate however many workers it serves. Here a few committers (one
//! database connection each) take turns: each takes every write waiting, applies them in
//! one transaction, commits once, then answers each write. Writes are
//! independent of each other, so one that fails for good is retried alone, and never fails
//! the others of its group.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use errands_core::{Job, NewJob};
use errands_store::{ClaimRequest, Enqueued, Report, Reported, StoreError};
use futures_util::future::{join, join_all};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::error::from_pg;
use crate::notify::Wakeups;
use crate::vacuum::Vacuum;
use crate::{enqueue, jobs, reports, retrying};

/// Committers per node: while one commits (waiting for its flush), another gathers and applies
/// the next group.
const COMMITTERS: usize = 2;

/// Most writes in one group, so one transaction stays short and its locks brief.
const MAX_GROUP: usize = 128;

/// A write waiting for its group, with where its outcome goes.
pub(crate) enum Write {
    /// Store new jobs.
    Enqueue {
        jobs: Vec<NewJob>,
        reply: oneshot::Sender<Result<Vec<Enqueued>, StoreError>>,
    },
    /// Apply a worker's reports in order.
    Report {
        worker_id: String,
        reports: Vec<Report>,
        now: DateTime<Utc>,
        reply: oneshot::Sender<Result<Vec<Result<Reported, StoreError>>, StoreError>>,
    },
    /// Lease ready jobs to a worker.
    Claim {
        request: ClaimRequest,
        now: DateTime<Utc>,
        reply: oneshot::Sender<Result<Vec<Job>, StoreError>>,
    },
}

/// What a write came to, before it is sent back.
enum Outcome {
    Enqueued(Vec<Enqueued>),
    Reported(Vec<Result<Reported, StoreError>>),
    Claimed(Vec<Job>),
}

impl Outcome {
    /// Rows of `errands.jobs` the write updated, each leaving a dead version behind.
    fn rows_rewritten(&self) -> u64 {
        match self {
            Outcome::Enqueued(_) => 0,
            Outcome::Reported(reported) => reported.iter().filter(|r| r.is_ok()).count() as u64,
            Outcome::Claimed(jobs) => jobs.len() as u64,
        }
    }
}

impl Write {
    /// Only a claim may be lost in a database crash without breaking a promise: the job is
    /// then claimable again, as the node's lease already allows. Enqueues and reports are
    /// acknowledged once committed, so they wait for the flush.
    fn needs_flush(&self) -> bool {
        !matches!(self, Write::Claim { .. })
    }

    /// Applies the write inside `tx`. An error has aborted the transaction (or is one the
    /// whole group shares): the group is rolled back.
    async fn apply(
        &self,
        tx: &impl GenericClient,
        retention: f64,
        wakeups: &mut Wakeups,
    ) -> Result<Outcome, StoreError> {
        match self {
            Write::Enqueue { jobs, .. } => enqueue::enqueue(tx, jobs, wakeups)
                .await
                .map(Outcome::Enqueued),
            Write::Report {
                worker_id,
                reports,
                now,
                ..
            } => reports::apply_all(tx, worker_id, reports, *now, retention, wakeups)
                .await
                .map(Outcome::Reported),
            Write::Claim { request, now, .. } => {
                jobs::claim(tx, request, *now).await.map(Outcome::Claimed)
            }
        }
    }

    /// Sends `outcome` to whoever waits for this write (who may have stopped waiting).
    fn answer(self, outcome: Result<Outcome, StoreError>) {
        match self {
            Write::Enqueue { reply, .. } => {
                let _ = reply.send(outcome.and_then(|o| match o {
                    Outcome::Enqueued(enqueued) => Ok(enqueued),
                    _ => Err(mismatch()),
                }));
            }
            Write::Report { reply, .. } => {
                let _ = reply.send(outcome.and_then(|o| match o {
                    Outcome::Reported(reported) => Ok(reported),
                    _ => Err(mismatch()),
                }));
            }
            Write::Claim { reply, .. } => {
                let _ = reply.send(outcome.and_then(|o| match o {
                    Outcome::Claimed(jobs) => Ok(jobs),
                    _ => Err(mismatch()),
                }));
            }
        }
    }
}

/// A write's outcome of another kind than the write: cannot happen, as [`Write::apply`]
/// answers each kind with its own.
fn mismatch() -> StoreError {
    StoreError::Backend("a grouped write got another write's outcome".into())
}

/// The queue of writes waiting for a group, shared by this node's committers.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    writes: mpsc::UnboundedSender<Write>,
}

impl GroupCommit {
    /// Starts the committers on `pool`. They stop once every handle is dropped.
    pub(crate) fn start(pool: Pool, dead_retention: f64, vacuum: Arc<Vacuum>) -> Self {
        let (writes, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..COMMITTERS {
            let committer = Committer {
                pool: pool.clone(),
                dead_retention,
                vacuum: vacuum.clone(),
                waiting: waiting.clone(),
            };
            tokio::spawn(committer.run());
        }
        Self { writes }
    }

    /// Queues `write` for the next group. Fails only once the store is closing.
    pub(crate) fn submit(&self, write: Write) -> Result<(), StoreError> {
        self.writes.send(write).map_err(|_| StoreError::Closed)
    }
}

/// Awaits a grouped write's outcome.
pub(crate) async fn outcome<T>(
    reply: oneshot::Receiver<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    reply.await.unwrap_or(Err(StoreError::Closed))
}

/// One committer: gathers a group, writes it, answers it, again.
struct Committer {
    pool: Pool,
    dead_retention: f64,
    vacuum: Arc<Vacuum>,
    waiting: Arc<Mutex<mpsc::UnboundedReceiver<Write>>>,
}

impl Committer {
    async fn run(self) {
        while let Some(group) = self.gather().await {
            self.write(group).await;
        }
    }

    /// Waits for a write, then takes every other write already waiting (up to
    /// [`MAX_GROUP`]). `None` once the store is gone.
    async fn gather(&self) -> Option<Vec<Write>> {
        let mut waiting = self.waiting.lock().await;
        let first = waiting.recv().await?;
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match waiting.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        Some(group)
    }

    /// Writes `group` in one transaction and answers every write. If that fails for good, a
    /// group of several writes is written again one write per transaction, so only the write
    /// at fault gets the error.
    async fn write(&self, group: Vec<Write>) {
        match self.commit(&group).await {
            Ok(outcomes) => {
                self.vacuum
                    .wrote(outcomes.iter().map(Outcome::rows_rewritten).sum());
                for (write, outcome) in group.into_iter().zip(outcomes) {
                    write.answer(Ok(outcome));
                }
            }
            Err(error) if group.len() == 1 => {
                if let Some(write) = group.into_iter().next() {
                    write.answer(Err(error));
                }
            }
            Err(error) => {
                tracing::debug!(%error, writes = group.len(), "a grouped write failed; writing each alone");
                for write in group {
                    let alone = std::slice::from_ref(&write);
                    let outcome = self
                        .commit(alone)
                        .await
                        .map(|mut outcomes| outcomes.remove(0));
                    write.answer(outcome);
                }
            }
        }
    }

    /// Applies `group` in one transaction and commits it, retried whole on a transient
    /// failure. Returns one outcome per write.
    async fn commit(&self, group: &[Write]) -> Result<Vec<Outcome>, StoreError> {
        retrying(|| async {
            let client = self.pool.get().await.map_err(crate::error::from_pool)?;
            let outcome = self.commit_on(&client, group).await;
            if outcome.is_err() && client.batch_execute("ROLLBACK").await.is_err() {
                // A connection that cannot even roll back must not go back to the pool.
                drop(deadpool_postgres::Object::take(client));
            }
            outcome
        })
        .await
    }

    /// One attempt at the group's transaction on `client`. Its statements are pipelined:
    /// `BEGIN` goes out with them (tokio-postgres sends the requests of concurrent futures on
    /// one connection back to back, in the order first polled), and the writes, being
    /// independent, go out together, each write's own statements still in order; so a group
    /// costs two round trips to the database (three with wake-ups to send) and its flush, not
    /// one per statement. On an error the transaction is left open for the caller to roll
    /// back.
    async fn commit_on(
        &self,
        client: &deadpool_postgres::Client,
        group: &[Write],
    ) -> Result<Vec<Outcome>, StoreError> {
        let begin = if group.iter().any(Write::needs_flush) {
            "BEGIN"
        } else {
            "BEGIN; SET LOCAL synchronous_commit = off"
        };
        let writes = join_all(group.iter().map(|write| async {
            let mut wakeups = Wakeups::default();
            let outcome = write.apply(client, self.dead_retention, &mut wakeups).await;
            (outcome, wakeups)
        }));
        let (begun, applied) = join(client.batch_execute(begin), writes).await;
        begun.map_err(from_pg)?;
        let mut wakeups = Wakeups::default();
        let mut outcomes = Vec::with_capacity(group.len());
        for (outcome, each) in applied {
            outcomes.push(outcome?);
            wakeups.merge(each);
        }
        // Before the COMMIT, not beside it: its statement may need preparing first, and the
        // COMMIT would overtake it.
        wakeups.send(client).await?;
        let committing = std::time::Instant::now();
        client.batch_execute("COMMIT").await.map_err(from_pg)?;
        metrics::histogram!("errands_store_commit_seconds")
            .record(committing.elapsed().as_secs_f64());
        Ok(outcomes)
    }
}
