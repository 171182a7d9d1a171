//! A stored job, as the API shows it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::backoff::Backoff;
use crate::id::JobId;
use crate::state::JobState;

/// A job with everything the server knows about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Time-ordered id (UUIDv7).
    #[schema(value_type = String)]
    pub id: JobId,
    /// Queue the job waits in.
    pub queue: String,
    /// Task name; workers dispatch on it.
    pub kind: String,
    /// Arguments, any JSON.
    pub args: Value,
    /// Current state.
    pub state: JobState,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts started so far (1 while the first attempt runs).
    pub attempt: u32,
    /// Attempts allowed before the job is dead.
    pub max_attempts: u32,
    /// Attempts its workers stopped unfinished as they shut down, which were given back
    /// without counting (see `errands_core::lifecycle::decide_interruption`).
    #[serde(default)]
    pub interruptions: u32,
    /// Delay policy between attempts.
    pub backoff: Backoff,
    /// Seconds one attempt may run, if limited.
    pub timeout: Option<f64>,
    /// Deduplication key.
    pub unique_key: Option<String>,
    /// Seconds after creation during which the unique key also blocks finished jobs.
    pub unique_for: Option<f64>,
    /// Seconds a completed or cancelled job is kept.
    pub retention: f64,
    /// Free-form labels for filtering.
    pub tags: Vec<String>,
    /// Metadata given at enqueue and delivered to the worker (trace context and the
    /// application's own headers).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Last progress the worker reported.
    pub progress: Option<Progress>,
    /// What the job returned.
    pub result: Option<Value>,
    /// Failed attempts, oldest first: the first and the nine latest, each with its type,
    /// message and traceback truncated (see `errands_core::lifecycle::capped_history`).
    pub errors: Vec<AttemptError>,
    /// The worker holding the job while it runs.
    pub worker_id: Option<String>,
    /// When the job was enqueued.
    pub created_at: DateTime<Utc>,
    /// When the job is (or was) due.
    pub run_at: DateTime<Utc>,
    /// When the latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the job reached a finished state.
    pub finished_at: Option<DateTime<Utc>>,
    /// While running with a timeout: when the attempt times out.
    pub deadline: Option<DateTime<Utc>>,
}

/// Progress reported by a running job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// 0 to 100.
    pub percent: Option<f64>,
    /// What the job is doing.
    pub message: Option<String>,
    /// Any JSON the job wants to expose.
    pub data: Option<Value>,
}

/// Why one attempt failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptError {
    /// Which attempt (1-based).
    pub attempt: u32,
    /// Error class, e.g. `ValueError`, or `WorkerLost` / `Timeout` from the server.
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable message.
    pub message: String,
    /// Stack trace, when the worker sent one.
    pub traceback: Option<String>,
    /// When the attempt failed.
    pub at: DateTime<Utc>,
}
