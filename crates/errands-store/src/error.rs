//! Errors a store reports.

use errands_core::lifecycle::Refused;
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
    /// Another unfinished job holds the job's unique key, so it cannot be made unfinished.
    #[error("job {id}: another unfinished job holds its unique key {key:?}")]
    UniqueKeyHeld {
        /// The job.
        id: JobId,
        /// Its key.
        key: String,
    },
    /// The backend failed in a way that passes (a serialization failure, a deadlock, a
    /// connection lost in a failover); the operation was rolled back and may be retried.
    #[error("store backend (transient): {0}")]
    Transient(String),
    /// The backend failed; the operation was rolled back.
    #[error("store backend: {0}")]
    Backend(String),
    /// The store has shut down.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// The error for a lifecycle decision that refused a transition of job `id`.
    pub fn refused(id: JobId, refused: Refused) -> Self {
        StoreError::IllegalTransition {
            id,
            state: refused.state,
            action: refused.action,
        }
    }

    /// The same failure for another caller of one failed group commit: transient stays
    /// transient, anything else is a backend failure with the same message.
    pub(crate) fn for_another_caller(&self) -> Self {
        match self {
            StoreError::Transient(message) => StoreError::Transient(message.clone()),
            other => StoreError::Backend(other.to_string()),
        }
    }

    /// True if retrying the operation may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        // A full disk passes once space is freed: callers retry (a worker's report is written
        // again, not dropped) and enqueues are refused with 503, not 500.
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Transient(error.to_string()),
            _ => StoreError::Backend(error.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError::Backend(format!("stored JSON is invalid: {error}"))
    }
}
