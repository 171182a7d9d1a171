//! What happens to a job after a failed attempt.

use chrono::{DateTime, Utc};
use rand::Rng;

use super::history::capped_history;
use crate::backoff::{seconds_to_duration, Backoff};
use crate::job::{AttemptError, Job};
use crate::state::JobState;

/// Why an attempt ended without completing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FailureCause {
    /// The worker reported a failure.
    Reported {
        /// `false`: the worker says retrying is pointless.
        retry: bool,
        /// Seconds to wait instead of the backoff.
        retry_after: Option<f64>,
    },
    /// The attempt ran past its timeout.
    Timeout,
    /// The worker's connection closed while it held the job.
    WorkerLost,
    /// The worker stopped the attempt unfinished as it shut down, more often than a job may
    /// for free (see [`decide_interruption`](super::decide_interruption)).
    Interrupted,
}

impl FailureCause {
    /// The error type recorded for failures the server detects itself.
    pub fn server_error_type(self) -> Option<&'static str> {
        match self {
            FailureCause::Reported { .. } => None,
            FailureCause::Timeout => Some("Timeout"),
            FailureCause::WorkerLost => Some("WorkerLost"),
            FailureCause::Interrupted => Some("Interrupted"),
        }
    }
}

/// Where a failed job goes next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NextRun {
    /// `queued`, `scheduled` or `dead`.
    pub state: JobState,
    /// When it is due (now, for `queued` and `dead`).
    pub run_at: DateTime<Utc>,
}

/// Decides the fate of a job whose attempt number `attempt` (1-based) just failed.
pub fn after_failure(
    attempt: u32,
    max_attempts: u32,
    backoff: &Backoff,
    cause: FailureCause,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> NextRun {
    let refused = matches!(cause, FailureCause::Reported { retry: false, .. });
    if refused || attempt >= max_attempts {
        return NextRun {
            state: JobState::Dead,
            run_at: now,
        };
    }
    let delay = match cause {
        // The worker died or stopped, not the job: give it to another worker straight away.
        FailureCause::WorkerLost | FailureCause::Interrupted => chrono::Duration::zero(),
        FailureCause::Reported {
            retry_after: Some(seconds),
            ..
        } => seconds_to_duration(seconds),
        _ => backoff.delay(attempt, rng),
    };
    if delay <= chrono::Duration::zero() {
        NextRun {
            state: JobState::Queued,
            run_at: now,
        }
    } else {
        NextRun {
            state: JobState::Scheduled,
            run_at: now + delay,
        }
    }
}

/// What a failed attempt writes to its job.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedAttempt {
    /// Where the job goes: `queued`, `scheduled` or `dead`.
    pub state: JobState,
    /// When it is next due.
    pub run_at: DateTime<Utc>,
    /// Set when it is dead.
    pub finished_at: Option<DateTime<Utc>>,
    /// When a dead job is purged.
    pub expires_at: Option<DateTime<Utc>>,
    /// The attempt's error, stamped with the attempt number (as given, untruncated).
    pub error: AttemptError,
    /// The job's whole error history after this attempt, capped and truncated by
    /// [`capped_history`]: what a store writes in place of the history it read.
    pub errors: Vec<AttemptError>,
}

/// Decides what the failed current attempt of the running `job` writes: its next state per
/// the retry policy, and its error history with this attempt's error added (bounded, see
/// [`capped_history`]). Dead jobs are kept `dead_retention` seconds.
pub fn decide_failure(
    job: &Job,
    error: AttemptError,
    cause: FailureCause,
    now: DateTime<Utc>,
    dead_retention: f64,
    rng: &mut impl Rng,
) -> FailedAttempt {
    let next = after_failure(job.attempt, job.max_attempts, &job.backoff, cause, now, rng);
    let dead = next.state == JobState::Dead;
    let error = AttemptError {
        attempt: job.attempt,
        ..error
    };
    FailedAttempt {
        state: next.state,
        run_at: next.run_at,
        finished_at: dead.then_some(now),
        expires_at: dead.then(|| now + seconds_to_duration(dead_retention)),
        errors: capped_history(&job.errors, error.clone()),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn decide(attempt: u32, cause: FailureCause) -> NextRun {
        let backoff = Backoff::Fixed { delay: 10.0 };
        after_failure(
            attempt,
            3,
            &backoff,
            cause,
            now(),
            &mut StdRng::seed_from_u64(1),
        )
    }

    const REPORTED: FailureCause = FailureCause::Reported {
        retry: true,
        retry_after: None,
    };

    #[test]
    fn failures_back_off_then_die() {
        assert_eq!(
            decide(1, REPORTED),
            NextRun {
                state: JobState::Scheduled,
                run_at: now() + Duration::seconds(10)
            }
        );
        assert_eq!(decide(3, REPORTED).state, JobState::Dead);
    }

    #[test]
    fn refused_retry_is_dead_at_once() {
        let cause = FailureCause::Reported {
            retry: false,
            retry_after: None,
        };
        assert_eq!(decide(1, cause).state, JobState::Dead);
    }

    #[test]
    fn retry_after_overrides_backoff() {
        let cause = FailureCause::Reported {
            retry: true,
            retry_after: Some(2.0),
        };
        assert_eq!(decide(1, cause).run_at, now() + Duration::seconds(2));
    }

    #[test]
    fn absurd_retry_after_is_clamped_not_overflowed() {
        let cause = FailureCause::Reported {
            retry: true,
            retry_after: Some(1e300),
        };
        let next = decide(1, cause);
        assert_eq!(next.state, JobState::Scheduled);
        assert!(next.run_at > now() + Duration::days(365 * 99));
    }

    #[test]
    fn lost_worker_requeues_at_once_while_attempts_remain() {
        assert_eq!(decide(1, FailureCause::WorkerLost).state, JobState::Queued);
        assert_eq!(decide(3, FailureCause::WorkerLost).state, JobState::Dead);
    }

    #[test]
    fn timeout_follows_backoff() {
        assert_eq!(decide(2, FailureCause::Timeout).state, JobState::Scheduled);
    }
}
