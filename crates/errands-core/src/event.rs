//! Live events: what subscribers of `/v1/events` receive.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::id::JobId;
use crate::job::Progress;
use crate::state::JobState;

/// One change to one job, numbered in the order the server published it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Increases by one per event published by this server process.
    pub seq: u64,
    /// The job.
    #[schema(value_type = String)]
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its task name.
    pub kind: String,
    /// What happened.
    #[serde(flatten)]
    pub change: Change,
    /// When the server published it.
    pub at: DateTime<Utc>,
}

/// What happened to the job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Change {
    /// The job entered a new state.
    State {
        /// The new state.
        state: JobState,
        /// The attempt it concerns.
        attempt: u32,
    },
    /// The running job reported progress.
    Progress {
        /// What it reported.
        progress: Progress,
    },
}
