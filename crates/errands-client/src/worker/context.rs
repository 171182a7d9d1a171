//! What a handler knows about the job it runs.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use errands_core::protocol::WorkerMessage;
use errands_core::{JobId, Progress};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The running job's identity, its progress reporter, its cancellation and the worker's
/// shared state.
#[derive(Clone)]
pub struct JobContext {
    /// The job's id.
    pub id: JobId,
    /// Its task name.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// This attempt (1 for the first run).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When this attempt times out, if it has a timeout.
    pub deadline: Option<DateTime<Utc>>,
    /// The headers the job was enqueued with (trace context, the application's own).
    pub headers: BTreeMap<String, String>,
    pub(crate) cancel: CancellationToken,
    pub(crate) reports: mpsc::UnboundedSender<WorkerMessage>,
    pub(crate) state: Option<Arc<dyn Any + Send + Sync>>,
}

impl JobContext {
    /// Reports progress: `percent` from 0 to 100 and what the job is doing.
    pub async fn progress(&self, percent: f64, message: impl Into<String>) {
        self.report_progress(Progress {
            percent: Some(percent),
            message: Some(message.into()),
            data: None,
        });
    }

    /// Reports progress with structured data.
    pub fn report_progress(&self, progress: Progress) {
        // If the connection is gone the job is already back in its queue; nothing to tell.
        let _ = self.reports.send(WorkerMessage::Progress {
            id: self.id,
            progress,
        });
    }

    /// Reports progress data alone.
    pub fn progress_data(&self, data: Value) {
        self.report_progress(Progress {
            data: Some(data),
            ..Progress::default()
        });
    }

    /// Fires when the job is cancelled or times out. The handler's future is dropped then
    /// anyway; this token is for work the handler spawned elsewhere.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// True once the job was cancelled or timed out.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The shared state given to [`WorkerBuilder::state`](super::WorkerBuilder::state).
    pub fn state<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.state.as_ref()?.downcast_ref::<T>()
    }
}
