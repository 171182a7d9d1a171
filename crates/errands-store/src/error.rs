//! Errors a store reports.

use errands_core::{JobId, JobState};

/// Why a store operation did not happen. Nothing is changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No job has this id.
    #[error("job {0} not found")]
    NotFound(JobId),
    /// The job's state does not allow the operation.
    #[error("job {id} is {state}: cannot {action} it")]
    IllegalTransition {
        /// The job.
        id: JobId,
        /// Its current state.
        state: JobState,
        /// What was attempted.
        action: &'static str,
    },
    /// A worker reported on a job it does not hold (it was cancelled, timed out or re-leased).
    #[error("job {0} is not leased to this worker")]
    NotLeased(JobId),
    /// The backend failed; the operation was rolled back.
    #[error("store backend: {0}")]
    Backend(String),
    /// The store has shut down.
    #[error("store is closed")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError::Backend(format!("stored JSON is invalid: {error}"))
    }
}
