//! Why the server took a running job away from its worker, and what it records.

use chrono::{DateTime, Utc};

use super::FailureCause;
use crate::job::AttemptError;

/// Why a running job was released by the server rather than reported by its worker.
#[derive(Clone, Debug, PartialEq)]
pub enum ReleaseCause {
    /// The worker's connection closed.
    WorkerLost {
        /// The worker.
        worker_id: String,
    },
    /// The node the worker was connected to stopped renewing its lease.
    NodeLost {
        /// The node.
        node_id: String,
    },
    /// The attempt ran past its timeout.
    Timeout,
}

impl ReleaseCause {
    /// How the retry policy sees it.
    pub fn failure_cause(&self) -> FailureCause {
        match self {
            ReleaseCause::WorkerLost { .. } | ReleaseCause::NodeLost { .. } => {
                FailureCause::WorkerLost
            }
            ReleaseCause::Timeout => FailureCause::Timeout,
        }
    }

    /// The error recorded for `attempt`.
    pub fn error(&self, attempt: u32, now: DateTime<Utc>) -> AttemptError {
        let message = match self {
            ReleaseCause::WorkerLost { worker_id } => {
                format!("worker {worker_id} lost its connection while running the job")
            }
            ReleaseCause::NodeLost { node_id } => {
                format!("server node {node_id} stopped renewing its lease while the job ran")
            }
            ReleaseCause::Timeout => "the attempt ran past its timeout".to_owned(),
        };
        AttemptError {
            attempt,
            kind: self
                .failure_cause()
                .server_error_type()
                .unwrap_or("Error")
                .to_owned(),
            message,
            traceback: None,
            at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_nodes_count_as_lost_workers() {
        let cause = ReleaseCause::NodeLost {
            node_id: "n1".into(),
        };
        assert_eq!(cause.failure_cause(), FailureCause::WorkerLost);
        let now = "2026-01-01T00:00:00Z".parse().unwrap();
        let error = cause.error(2, now);
        assert_eq!((error.attempt, error.kind.as_str()), (2, "WorkerLost"));
        assert!(error.message.contains("n1"));
        assert_eq!(ReleaseCause::Timeout.error(1, now).kind, "Timeout");
    }
}
