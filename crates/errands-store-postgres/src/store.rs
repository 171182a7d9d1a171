//! [`Store`] for [`PostgresStore`]: each operation one transaction, retried whole on a
//! transient failure, with its wake-ups sent inside it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errands_core::cron::CronSpec;
use errands_core::lifecycle::{decide_failure, FailureCause};
use errands_core::{AttemptError, Job, JobId, NewJob, Progress};
use errands_store::{
    ClaimRequest, CompletedJob, Enqueued, FiredCron, Heartbeat, JobFilter, JobPage, MinuteCount,
    MovedJob, Notice, QueueInfo, Reap, RecordedWorker, ReleasedJob, Report, Reported, Store,
    StoreError, StoredCron,
};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

use crate::error::from_pg;
use crate::group::{self, Write};
use crate::notify::{self, Wakeups};
use crate::{cron, jobs, nodes, release, sweeps, throughput, PostgresStore};

/// Runs `$body` (an expression using the transaction `$tx` and the wake-ups `$wakeups`) in a
/// transaction that sends the wake-ups and commits, retried whole on a transient failure.
macro_rules! transaction {
    ($store:expr, |$tx:ident, $wakeups:ident| $body:expr) => {
        $store
            .retrying(|| async move {
                let mut client = $store.client().await?;
                let $tx = client.transaction().await.map_err(from_pg)?;
                let mut $wakeups = Wakeups::default();
                let outcome = $body.await?;
                $wakeups.send(&$tx).await?;
                let committing = std::time::Instant::now();
                $tx.commit().await.map_err(from_pg)?;
                metrics::histogram!("errands_store_commit_seconds")
                    .record(committing.elapsed().as_secs_f64());
                Ok(outcome)
            })
            .await
    };
}

/// Runs `$body` (an expression using the connection `$client`) on its own, retried on a
/// transient failure: for reads and single statements, atomic by themselves.
macro_rules! statement {
    ($store:expr, |$client:ident| $body:expr) => {
        $store
            .retrying(|| async move {
                let $client = $store.client().await?;
                $body.await
            })
            .await
    };
}

#[async_trait]
impl Store for PostgresStore {
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.inner.group.submit(Write::Enqueue { jobs, reply })?;
        group::outcome(outcome).await
    }

    async fn get(&self, id: JobId) -> Result<Job, StoreError> {
        statement!(self, |client| jobs::get(&client, id))
    }

    async fn list(&self, filter: JobFilter) -> Result<JobPage, StoreError> {
        let filter = &filter;
        statement!(self, |client| jobs::list(&client, filter))
    }

    async fn claim(
        &self,
        request: ClaimRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.inner.group.submit(Write::Claim {
            request,
            now,
            reply,
        })?;
        group::outcome(outcome).await
    }

    async fn unclaim(&self, worker_id: &str, ids: Vec<JobId>) -> Result<Vec<MovedJob>, StoreError> {
        let ids = &ids;
        transaction!(self, |tx, wakeups| jobs::unclaim(
            &tx,
            worker_id,
            ids,
            &mut wakeups
        ))
    }

    async fn complete(
        &self,
        id: JobId,
        worker_id: &str,
        result: Option<Value>,
        now: DateTime<Utc>,
    ) -> Result<CompletedJob, StoreError> {
        let result = result.as_ref();
        statement!(self, |client| jobs::complete(
            &client, id, worker_id, result, now
        ))
    }

    async fn fail(
        &self,
        id: JobId,
        worker_id: &str,
        error: AttemptError,
        cause: FailureCause,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let (error, retention) = (&error, self.inner.dead_retention);
        let decide = |job: &Job| {
            let error = error.clone();
            decide_failure(job, error, cause, now, retention, &mut rand::rng())
        };
        transaction!(self, |tx, wakeups| jobs::fail(
            &tx,
            id,
            worker_id,
            decide,
            &mut wakeups
        ))
    }

    async fn interrupt(
        &self,
        id: JobId,
        worker_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Reported, StoreError> {
        let retention = self.inner.dead_retention;
        transaction!(self, |tx, wakeups| crate::interrupt::interrupt(
            &tx,
            id,
            worker_id,
            now,
            retention,
            &mut wakeups
        ))
    }

    /// Every report of the batch in one transaction, in order, with the other writes of this
    /// node waiting at that moment (see [`group`]): one commit (one WAL flush) for all of
    /// them, where a commit per report would cap a node at the disk's flush rate.
    async fn report(
        &self,
        worker_id: &str,
        reports: Vec<Report>,
        now: DateTime<Utc>,
    ) -> Vec<Result<Reported, StoreError>> {
        let count = reports.len();
        let (reply, outcome) = oneshot::channel();
        let write = Write::Report {
            worker_id: worker_id.to_owned(),
            reports,
            now,
            reply,
        };
        let applied = match self.inner.group.submit(write) {
            Ok(()) => group::outcome(outcome).await,
            Err(error) => Err(error),
        };
        match applied {
            Ok(outcomes) => outcomes,
            Err(error) => {
                // Every report shares the batch's fate; a transient failure stays transient,
                // so the worker's session survives it.
                let transient = error.is_transient();
                let message = error.to_string();
                let each = |_| {
                    Err(if transient {
                        StoreError::Transient(message.clone())
                    } else {
                        StoreError::Backend(message.clone())
                    })
                };
                (0..count).map(each).collect()
            }
        }
    }

    async fn progress(
        &self,
        id: JobId,
        worker_id: &str,
        progress: Progress,
    ) -> Result<(), StoreError> {
        let progress = &progress;
        statement!(self, |client| jobs::progress(
            &client, id, worker_id, progress
        ))
    }

    async fn cancel(
        &self,
        id: JobId,
        now: DateTime<Utc>,
    ) -> Result<(Job, Option<String>), StoreError> {
        transaction!(self, |tx, wakeups| async {
            let _ = &mut wakeups;
            jobs::cancel(&tx, id, now).await
        })
    }

    async fn retry(
        &self,
        id: JobId,
        reset_attempts: bool,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        transaction!(self, |tx, wakeups| jobs::retry(
            &tx,
            id,
            reset_attempts,
            now,
            &mut wakeups
        ))
    }

    async fn delete(&self, id: JobId) -> Result<(), StoreError> {
        transaction!(self, |tx, wakeups| async {
            let _ = &mut wakeups;
            jobs::delete(&tx, id).await
        })
    }

    async fn release_worker(
        &self,
        worker_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReleasedJob>, StoreError> {
        let retention = self.inner.dead_retention;
        transaction!(self, |tx, wakeups| release::release_worker(
            &tx,
            worker_id,
            now,
            retention,
            &mut wakeups
        ))
    }

    async fn expire_deadlines(&self, now: DateTime<Utc>) -> Result<Vec<ReleasedJob>, StoreError> {
        let retention = self.inner.dead_retention;
        transaction!(self, |tx, wakeups| release::expire_deadlines(
            &tx,
            now,
            retention,
            &mut wakeups
        ))
    }

    async fn promote_due(&self, now: DateTime<Utc>) -> Result<Vec<MovedJob>, StoreError> {
        transaction!(self, |tx, wakeups| sweeps::promote_due(
            &tx,
            now,
            &mut wakeups
        ))
    }

    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let purged = statement!(self, |client| sweeps::purge_expired(&client, now))?;
        self.inner.vacuum.wrote(purged);
        Ok(purged)
    }

    async fn next_wakeup(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        statement!(self, |client| sweeps::next_wakeup(&client))
    }

    async fn queues(&self, now: DateTime<Utc>) -> Result<Vec<QueueInfo>, StoreError> {
        statement!(self, |client| sweeps::queues(&client, now))
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError> {
        transaction!(self, |tx, wakeups| sweeps::set_paused(
            &tx,
            queue,
            paused,
            &mut wakeups
        ))
    }

    async fn paused_queues(&self) -> Result<Vec<String>, StoreError> {
        statement!(self, |client| sweeps::paused_queues(&client))
    }

    async fn put_cron(
        &self,
        name: &str,
        spec: CronSpec,
        now: DateTime<Utc>,
    ) -> Result<(StoredCron, bool), StoreError> {
        let spec = &spec;
        transaction!(self, |tx, wakeups| async {
            let _ = &mut wakeups;
            cron::put_cron(&tx, name, spec.clone(), now).await
        })
    }

    async fn get_cron(&self, name: &str) -> Result<Option<StoredCron>, StoreError> {
        statement!(self, |client| cron::get_cron(&client, name))
    }

    async fn list_cron(&self) -> Result<Vec<StoredCron>, StoreError> {
        statement!(self, |client| cron::list_cron(&client))
    }

    async fn delete_cron(&self, name: &str) -> Result<bool, StoreError> {
        statement!(self, |client| cron::delete_cron(&client, name))
    }

    async fn set_cron_paused(
        &self,
        name: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredCron>, StoreError> {
        transaction!(self, |tx, wakeups| async {
            let _ = &mut wakeups;
            cron::set_cron_paused(&tx, name, paused, now).await
        })
    }

    async fn fire_due_cron(&self, now: DateTime<Utc>) -> Result<Vec<FiredCron>, StoreError> {
        transaction!(self, |tx, wakeups| cron::fire_due_cron(
            &tx,
            now,
            &mut wakeups
        ))
    }

    fn shared(&self) -> bool {
        true
    }

    async fn current_time(&self) -> Result<DateTime<Utc>, StoreError> {
        statement!(self, |client| async move {
            let row = client
                .query_one("SELECT clock_timestamp()", &[])
                .await
                .map_err(from_pg)?;
            Ok(row.get(0))
        })
    }

    async fn heartbeat(
        &self,
        node_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Heartbeat, StoreError> {
        statement!(self, |client| nodes::heartbeat(
            &client, node_id, now, expires_at
        ))
    }

    async fn holders(&self, node_id: &str) -> Result<Vec<String>, StoreError> {
        statement!(self, |client| nodes::holders(&client, node_id))
    }

    async fn remove_node(&self, node_id: &str) -> Result<(), StoreError> {
        statement!(self, |client| nodes::remove_node(&client, node_id))
    }

    async fn reap_nodes(
        &self,
        reap: Reap<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReleasedJob>, StoreError> {
        let retention = self.inner.dead_retention;
        transaction!(self, |tx, wakeups| nodes::reap_nodes(
            &tx,
            reap,
            now,
            retention,
            &mut wakeups
        ))
    }

    async fn try_lead(
        &self,
        role: &str,
        node_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        statement!(self, |client| nodes::try_lead(
            &client, role, node_id, now, expires_at
        ))
    }

    async fn record_workers(
        &self,
        node_id: &str,
        workers: Vec<RecordedWorker>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let workers = &workers;
        transaction!(self, |tx, wakeups| async {
            let _ = &mut wakeups;
            nodes::record_workers(&tx, node_id, workers, now).await
        })
    }

    async fn recorded_workers(&self) -> Result<Option<Vec<RecordedWorker>>, StoreError> {
        statement!(self, |client| async move {
            nodes::recorded_workers(&client).await.map(Some)
        })
    }

    async fn record_throughput(
        &self,
        node_id: &str,
        counts: Vec<MinuteCount>,
        since_minute: i64,
    ) -> Result<(), StoreError> {
        let counts = &counts;
        transaction!(self, |tx, wakeups| async {
            let _ = &mut wakeups;
            throughput::record(&tx, node_id, counts, since_minute).await
        })
    }

    async fn recorded_throughput(
        &self,
        since_minute: i64,
    ) -> Result<Option<Vec<MinuteCount>>, StoreError> {
        statement!(self, |client| async move {
            throughput::recorded(&client, since_minute).await.map(Some)
        })
    }

    /// Sent in a transaction of its own that does not wait for its commit to be flushed: a
    /// NOTIFY takes PostgreSQL's one notification-queue lock from its commit until the commit
    /// returns, so a flushed commit would hold every other notifying transaction of every
    /// node (enqueues, reports that wake queues) behind this one's WAL fsync. Events are
    /// best-effort; losing the last of them in a database crash is what a resync is for.
    async fn publish(&self, notices: Vec<Notice>) -> Result<(), StoreError> {
        let notices = &notices;
        self.retrying(|| async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(from_pg)?;
            tx.batch_execute("SET LOCAL synchronous_commit = off")
                .await
                .map_err(from_pg)?;
            notify::send(&tx, notices).await?;
            tx.commit().await.map_err(from_pg)
        })
        .await
    }

    fn notices(&self) -> Option<broadcast::Receiver<Notice>> {
        Some(self.inner.notices.subscribe())
    }

    /// LISTENs on the events channel, or stops, on the listener's connection: a LISTEN takes
    /// effect when it returns, and every notification committed after it is delivered.
    async fn follow_events(&self, follow: bool) -> Result<(), StoreError> {
        let (done, outcome) = oneshot::channel();
        self.inner
            .follow
            .send(crate::listen::Follow { follow, done })
            .map_err(|_| StoreError::Closed)?;
        outcome.await.unwrap_or(Err(StoreError::Closed))
    }
}
