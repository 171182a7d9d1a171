//! This server node among the nodes sharing a store: its id, its lease, and its turn as the
//! leader that runs the sweeps.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use errands_core::backoff::seconds_to_duration;
use errands_store::{Heartbeat, Reap, RecordedWorker, MAINTENANCE_ROLE};

use super::{Engine, ToWorker, WorkerInfo};
use crate::error::EngineError;

/// The longest the leader's lease lasts. The leader renews it on every maintenance pass (at
/// least once a second), so a dead leader's sweeps stop for at most this long.
const LEADER_LEASE_MAX: Duration = Duration::from_secs(5);

/// The shortest leader lease: two maintenance passes, so one slow pass does not hand over.
const LEADER_LEASE_MIN: Duration = Duration::from_secs(2);

/// Who this node is and how long its lease lasts.
pub(crate) struct Node {
    /// Unique per process: a restarted server is a new node.
    pub(crate) id: String,
    /// Another node releases this node's jobs once it has not renewed its lease for this long.
    pub(crate) lease: Duration,
}

impl Node {
    pub(crate) fn new(lease: Duration) -> Self {
        Self {
            id: format!("node-{}", uuid::Uuid::now_v7()),
            lease,
        }
    }

    /// How long this node's turn as leader lasts unless renewed. Half the node lease, so
    /// when the leader dies its successor takes over before the dead node's lease runs out
    /// and reaps it without waiting longer than the node lease promises.
    fn leader_lease(&self) -> Duration {
        (self.lease / 2).clamp(LEADER_LEASE_MIN, LEADER_LEASE_MAX)
    }
}

fn after(now: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    now + seconds_to_duration(duration.as_secs_f64())
}

impl Engine {
    /// This node's id, recorded against every job its workers hold.
    pub fn node_id(&self) -> &str {
        &self.node.id
    }

    /// Registers this node before it claims anything. On a store no other process uses,
    /// every job still running was held by an earlier process and is released at once.
    pub(crate) async fn register_node(&self) -> Result<(), EngineError> {
        let now = self.now();
        let expires_at = after(now, self.node.lease);
        self.store.heartbeat(&self.node.id, now, expires_at).await?;
        if !self.store.shared() {
            let orphans = self
                .store
                .reap_nodes(Reap::AllBut(&self.node.id), now)
                .await?;
            if !orphans.is_empty() {
                tracing::info!(
                    jobs = orphans.len(),
                    "returned jobs left running by the previous process"
                );
            }
        }
        Ok(())
    }

    /// Renews this node's lease. If it had lapsed, other nodes have released this node's
    /// jobs: its worker connections are dropped, so the workers reconnect and start clean.
    pub(crate) async fn renew_lease(&self) -> Result<(), EngineError> {
        let now = self.now();
        let expires_at = after(now, self.node.lease);
        let heartbeat = self.store.heartbeat(&self.node.id, now, expires_at).await?;
        self.record_workers(now).await?;
        self.record_throughput(now).await?;
        if heartbeat == Heartbeat::Registered {
            tracing::warn!(
                node_id = self.node.id,
                "this node's lease had lapsed and its jobs were released; reconnecting workers"
            );
            for worker in self.workers.list() {
                self.workers.send(&worker.id, ToWorker::Disconnect);
            }
        }
        Ok(())
    }

    /// Records this node's workers in the store, for `/v1/workers` on the other nodes.
    async fn record_workers(&self, now: DateTime<Utc>) -> Result<(), EngineError> {
        let workers = self
            .workers
            .list()
            .into_iter()
            .filter_map(|info| {
                let id = info.id.clone();
                let info = serde_json::to_value(info).ok()?;
                Some(RecordedWorker {
                    id,
                    node_id: self.node.id.clone(),
                    info,
                })
            })
            .collect();
        Ok(self
            .store
            .record_workers(&self.node.id, workers, now)
            .await?)
    }

    /// Every connected worker, on every node: this node's as they are now, the others' as
    /// they last recorded them (at most a third of the node lease ago), oldest first.
    pub async fn all_workers(&self) -> Result<Vec<WorkerInfo>, EngineError> {
        let mut workers = self.workers.list();
        let Some(recorded) = self.store.recorded_workers().await? else {
            return Ok(workers);
        };
        let elsewhere = recorded
            .into_iter()
            .filter(|worker| worker.node_id != self.node.id)
            .filter_map(|worker| serde_json::from_value::<WorkerInfo>(worker.info).ok());
        workers.extend(elsewhere);
        workers.sort_by(|a, b| a.connected_at.cmp(&b.connected_at).then(a.id.cmp(&b.id)));
        Ok(workers)
    }

    /// Whether this node runs the sweeps now. On an unshared store it always does; on a
    /// shared one, the holder of the maintenance lease does (and every sweep is still
    /// correct if two overlap during a hand-over).
    pub(crate) async fn lead(&self, now: DateTime<Utc>) -> Result<bool, EngineError> {
        if !self.store.shared() {
            return Ok(true);
        }
        let until = after(now, self.node.leader_lease());
        Ok(self
            .store
            .try_lead(MAINTENANCE_ROLE, &self.node.id, now, until)
            .await?)
    }

    /// Releases the jobs of nodes whose lease expired. Their workers may be connected to
    /// any node, so each is told to abort wherever it is.
    pub(crate) async fn reap_dead_nodes(&self, now: DateTime<Utc>) -> Result<(), EngineError> {
        if !self.store.shared() {
            return Ok(());
        }
        // A leader never reaps itself: its own lease is renewed at the time it sweeps at.
        self.renew_lease().await?;
        let released = self.store.reap_nodes(Reap::Expired, now).await?;
        if !released.is_empty() {
            tracing::warn!(
                jobs = released.len(),
                "released the jobs of server nodes that stopped"
            );
        }
        for job in &released {
            self.after_release(job, "its server node stopped");
        }
        Ok(())
    }
}

/// Renews this node's lease every third of its length until the task is dropped.
pub async fn run_lease_loop(engine: Arc<Engine>) {
    if !engine.store.shared() {
        return;
    }
    let mut tick = tokio::time::interval(engine.node.lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = engine.renew_lease().await {
            tracing::error!(%error, "could not renew this node's lease");
        }
    }
}
