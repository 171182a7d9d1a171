//! The workers connected to this server: how to reach each one, and what it reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use errands_core::protocol::CancelReason;
use errands_core::JobId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::ToSchema;

/// Something the engine asks a worker's connection to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ToWorker {
    /// Abort a job and stop counting it against the worker's capacity.
    Cancel {
        /// The job.
        id: JobId,
        /// Why.
        reason: CancelReason,
    },
    /// End the connection: this node lost its lease and the worker's jobs were released.
    Disconnect,
    /// Give back the jobs held ahead for the worker: another connection of one of its queues
    /// has free slots and found nothing to claim.
    GiveBackHeld,
}

/// A connected worker as `GET /v1/workers` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkerInfo {
    /// Id the server gave the connection.
    pub id: String,
    /// The server node it is connected to.
    pub node: String,
    /// Name the worker gave.
    pub name: Option<String>,
    /// Host the worker runs on, as it reported.
    pub host: Option<String>,
    /// Process id, as it reported.
    pub pid: Option<u32>,
    /// SDK name.
    pub sdk: Option<String>,
    /// SDK version.
    pub version: Option<String>,
    /// Queues it serves, in order.
    pub queues: Vec<String>,
    /// Jobs it takes at once.
    pub capacity: u32,
    /// Jobs it holds now.
    pub running: usize,
    /// When it connected.
    pub connected_at: DateTime<Utc>,
    /// When it last sent anything.
    pub last_seen: DateTime<Utc>,
    /// Bytes waiting to be written to its socket: what a worker that stops reading makes
    /// the server hold (bounded; see `WorkerLimits`).
    #[serde(default)]
    pub outbound_bytes: usize,
}

/// A shared, updatable view of one worker.
pub type WorkerStatus = Arc<Mutex<WorkerInfo>>;

struct Entry {
    tx: mpsc::UnboundedSender<ToWorker>,
    status: WorkerStatus,
    /// Bytes waiting in its connection's outbound buffer, kept by the connection's writer.
    outbound: Arc<AtomicUsize>,
    /// Jobs claimed ahead and held for it, kept by its connection.
    held: Arc<AtomicUsize>,
}

/// Connected workers by id.
#[derive(Default)]
pub struct WorkerRegistry {
    workers: Mutex<HashMap<String, Entry>>,
}

impl WorkerRegistry {
    /// Adds a worker. Its connection reads `ToWorker` messages from the returned receiver and
    /// keeps the returned status current; `outbound` counts the bytes waiting on its socket,
    /// `held` the jobs held ahead for it.
    pub fn register(
        &self,
        info: WorkerInfo,
        outbound: Arc<AtomicUsize>,
        held: Arc<AtomicUsize>,
    ) -> (mpsc::UnboundedReceiver<ToWorker>, WorkerStatus) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = info.id.clone();
        let status = Arc::new(Mutex::new(info));
        let entry = Entry {
            tx,
            status: status.clone(),
            outbound,
            held,
        };
        self.lock().insert(id, entry);
        (rx, status)
    }

    /// Removes a worker.
    pub fn unregister(&self, worker_id: &str) {
        self.lock().remove(worker_id);
    }

    /// Sends a message to a worker if it is connected to this node. False if it is not.
    pub fn send(&self, worker_id: &str, message: ToWorker) -> bool {
        match self.lock().get(worker_id) {
            Some(entry) => {
                // A closed channel means the worker is disconnecting; its jobs are released
                // then.
                let _ = entry.tx.send(message);
                true
            }
            None => false,
        }
    }

    /// For a connection that has free slots and found nothing to claim in `queues`: asks every
    /// other worker of this node that holds jobs and takes one of those queues to give its held
    /// jobs back, so none waits for a busy worker's slot while this one is idle. Returns how
    /// many were asked.
    pub fn ask_for_held(&self, asking: &str, queues: &[String]) -> usize {
        let workers = self.lock();
        let mut asked = 0;
        for (id, entry) in workers.iter() {
            if id == asking || entry.held.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let shares_a_queue = entry
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .queues
                .iter()
                .any(|queue| queues.contains(queue));
            if shares_a_queue && entry.tx.send(ToWorker::GiveBackHeld).is_ok() {
                asked += 1;
            }
        }
        asked
    }

    /// Every connected worker, oldest connection first.
    pub fn list(&self) -> Vec<WorkerInfo> {
        let mut workers: Vec<WorkerInfo> = self
            .lock()
            .values()
            .map(|entry| {
                let mut info = entry
                    .status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                // Read live: a stalled connection's loop may not be refreshing its status.
                info.outbound_bytes = entry.outbound.load(Ordering::Relaxed);
                info
            })
            .collect();
        workers.sort_by(|a, b| a.connected_at.cmp(&b.connected_at).then(a.id.cmp(&b.id)));
        workers
    }

    /// True if worker `worker_id` is connected to this node.
    pub fn contains(&self, worker_id: &str) -> bool {
        self.lock().contains_key(worker_id)
    }

    /// How many workers are connected.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no worker is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.workers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}
