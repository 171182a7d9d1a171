//! Jobs left running under workers that are gone from this node: a worker's jobs are
//! released when its connection ends, but that release is a store write and can fail (a full
//! disk, a database that is down). This check makes good on it later, so no job stays
//! `running` under a worker that no longer exists.

use std::time::Duration;

use tokio::time::Instant;

use super::Engine;
use crate::error::EngineError;

/// How often a node compares the holders of its running jobs with its connected workers.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(5);

impl Engine {
    /// Releases (as lost workers) the running jobs recorded against this node whose worker
    /// is no longer connected to it. A worker claims only after it registered, and a worker
    /// id is never reused, so a holder missing from the registry is gone for good.
    pub async fn release_vanished_workers(&self) -> Result<usize, EngineError> {
        let holders = self.store.holders(&self.node.id).await?;
        let mut released = 0;
        for worker_id in holders {
            if self.workers.contains(&worker_id) {
                continue;
            }
            let jobs = self.worker_lost(&worker_id).await?;
            if !jobs.is_empty() {
                tracing::warn!(
                    worker_id,
                    jobs = jobs.len(),
                    "released jobs left running under a worker that is gone"
                );
            }
            released += jobs.len();
        }
        Ok(released)
    }

    /// Runs [`Self::release_vanished_workers`] if [`CHECK_EVERY`] has passed since `last`.
    pub(crate) async fn check_vanished_workers(&self, last: &mut Instant) {
        if last.elapsed() < CHECK_EVERY {
            return;
        }
        *last = Instant::now();
        if let Err(error) = self.release_vanished_workers().await {
            tracing::warn!(%error, "could not check for jobs of vanished workers");
        }
    }
}
