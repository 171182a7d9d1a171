//! Job states and which transitions between them are legal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a job is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its `run_at` (a delayed job, or a failed one waiting out its backoff).
    Scheduled,
    /// Ready to run, waiting for a worker.
    Queued,
    /// Leased to a worker.
    Running,
    /// Finished successfully.
    Completed,
    /// Failed with no attempts left, or failed with retry refused.
    Dead,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 6] = [
        JobState::Scheduled,
        JobState::Queued,
        JobState::Running,
        JobState::Completed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// The lowercase name used on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// True once the job will not run again by itself.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Dead | JobState::Cancelled
        )
    }

    /// A job can be cancelled until it finishes (cancelling a cancelled job is a no-op).
    pub fn can_cancel(self) -> bool {
        !matches!(self, JobState::Completed | JobState::Dead)
    }

    /// A job can be retried by hand once it has finished.
    pub fn can_retry(self) -> bool {
        self.is_finished()
    }

    /// A running job must be cancelled before it can be deleted, so its worker is told.
    pub fn can_delete(self) -> bool {
        self != JobState::Running
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that names no state.
#[derive(Debug, thiserror::Error)]
#[error("unknown job state {0:?} (expected one of scheduled, queued, running, completed, dead, cancelled)")]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{state}\"")
            );
        }
        assert!("failed".parse::<JobState>().is_err());
    }

    #[test]
    fn only_finished_jobs_can_be_retried() {
        let retryable: Vec<_> = JobState::ALL
            .into_iter()
            .filter(|s| s.can_retry())
            .collect();
        assert_eq!(
            retryable,
            [JobState::Completed, JobState::Dead, JobState::Cancelled]
        );
    }

    #[test]
    fn completed_and_dead_jobs_cannot_be_cancelled() {
        assert!(!JobState::Completed.can_cancel());
        assert!(!JobState::Dead.can_cancel());
        assert!(JobState::Running.can_cancel());
        assert!(JobState::Cancelled.can_cancel());
    }

    #[test]
    fn running_jobs_cannot_be_deleted() {
        assert!(!JobState::Running.can_delete());
        assert!(JobState::Dead.can_delete());
    }
}
