//! What retrying a finished job by hand does.

use super::Refused;
use crate::state::JobState;

/// The attempt counters a retried job starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPlan {
    /// Attempts counted so far.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
}

/// Decides a retry of a job in `state`. With `reset_attempts` it starts over; without, it
/// keeps its count and gets one more attempt if it had none left.
pub fn decide_retry(
    state: JobState,
    attempt: u32,
    max_attempts: u32,
    reset_attempts: bool,
) -> Result<RetryPlan, Refused> {
    if !state.can_retry() {
        return Err(Refused {
            state,
            action: "retry",
        });
    }
    Ok(if reset_attempts {
        RetryPlan {
            attempt: 0,
            max_attempts,
        }
    } else {
        RetryPlan {
            attempt,
            max_attempts: max_attempts.max(attempt.saturating_add(1)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_jobs_cannot_be_retried() {
        for state in [JobState::Scheduled, JobState::Queued, JobState::Running] {
            assert!(decide_retry(state, 1, 3, false).is_err());
        }
    }

    #[test]
    fn a_dead_job_gets_one_more_attempt() {
        assert_eq!(
            decide_retry(JobState::Dead, 3, 3, false),
            Ok(RetryPlan {
                attempt: 3,
                max_attempts: 4
            })
        );
    }

    #[test]
    fn reset_starts_over() {
        assert_eq!(
            decide_retry(JobState::Dead, 3, 3, true),
            Ok(RetryPlan {
                attempt: 0,
                max_attempts: 3
            })
        );
    }
}
