//! A transition the job's state does not allow.

use crate::state::JobState;

/// The job is in a state that does not allow the action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a {state} job cannot be {action}")]
pub struct Refused {
    /// The job's state.
    pub state: JobState,
    /// What was asked: `cancel`, `retry`, `delete`.
    pub action: &'static str,
}

/// Whether a job in `state` may be deleted: a running job must be cancelled first, so its
/// worker is told.
pub fn decide_delete(state: JobState) -> Result<(), Refused> {
    if state.can_delete() {
        Ok(())
    } else {
        Err(Refused {
            state,
            action: "delete",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_jobs_are_not_deleted() {
        assert!(decide_delete(JobState::Running).is_err());
        assert!(decide_delete(JobState::Dead).is_ok());
        assert!(decide_delete(JobState::Queued).is_ok());
    }
}
