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
    /// Interruptions counted so far (see [`decide_interruption`](super::decide_interruption)).
    pub interruptions: u32,
}

/// Decides a retry of a job in `state`. With `reset_attempts` it starts over, its
/// interruptions forgotten too; without, it keeps its counts and gets one more attempt if it
/// had none left.
pub fn decide_retry(
    state: JobState,
    attempt: u32,
    max_attempts: u32,
    interruptions: u32,
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
            interruptions: 0,
        }
    } else {
        RetryPlan {
            attempt,
            max_attempts: max_attempts.max(attempt.saturating_add(1)),
            interruptions,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_jobs_cannot_be_retried() {
        for state in [JobState::Scheduled, JobState::Queued, JobState::Running] {
            assert!(decide_retry(state, 1, 3, 0, false).is_err());
        }
    }

    #[test]
    fn a_dead_job_gets_one_more_attempt() {
        assert_eq!(
            decide_retry(JobState::Dead, 3, 3, 2, false),
            Ok(RetryPlan {
                attempt: 3,
                max_attempts: 4,
                interruptions: 2
            })
        );
    }

    #[test]
    fn reset_starts_over() {
        assert_eq!(
            decide_retry(JobState::Dead, 3, 3, 2, true),
            Ok(RetryPlan {
                attempt: 0,
                max_attempts: 3,
                interruptions: 0
            })
        );
    }
}
