//! What happens to a job whose worker stopped it unfinished because the worker itself had to
//! stop (its shutdown grace period ran out): the attempt was interrupted, not failed.

use chrono::{DateTime, Utc};
use rand::Rng;

use super::failure::{decide_failure, FailedAttempt, FailureCause};
use crate::job::{AttemptError, Job};

/// Interruptions a job may have without cost; the next one counts as a failed attempt, so a
/// job that always outlives its worker's grace period still ends (retried per policy, then
/// `dead`) instead of going round forever.
pub const MAX_FREE_INTERRUPTIONS: u32 = 3;

/// What an interrupted attempt writes to its job.
#[derive(Clone, Debug, PartialEq)]
pub enum Interruption {
    /// Back to `queued` at once, as if the attempt had never started.
    Requeue {
        /// The attempt count to write: the one before the interrupted attempt.
        attempt: u32,
        /// The job's interruption count to write.
        interruptions: u32,
        /// When it is due (now).
        run_at: DateTime<Utc>,
    },
    /// Past [`MAX_FREE_INTERRUPTIONS`]: a failed attempt (error type `Interrupted`), retried
    /// or buried like any failure.
    Fail(FailedAttempt),
}

/// Decides what the interrupted current attempt of the running `job` writes, from the
/// interruptions it had before. Dead jobs are kept `dead_retention` seconds.
pub fn decide_interruption(
    job: &Job,
    now: DateTime<Utc>,
    dead_retention: f64,
    rng: &mut impl Rng,
) -> Interruption {
    let interruptions = job.interruptions;
    if interruptions < MAX_FREE_INTERRUPTIONS {
        return Interruption::Requeue {
            attempt: job.attempt.saturating_sub(1),
            interruptions: interruptions + 1,
            run_at: now,
        };
    }
    let error = AttemptError {
        attempt: job.attempt,
        kind: "Interrupted".to_owned(),
        message: format!(
            "the worker stopped the attempt unfinished when it shut down, after \
             {interruptions} interruptions that cost no attempt"
        ),
        traceback: None,
        at: now,
    };
    Interruption::Fail(decide_failure(
        job,
        error,
        FailureCause::Interrupted,
        now,
        dead_retention,
        rng,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::JobState;
    use crate::{Backoff, JobId};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn running(attempt: u32, max_attempts: u32) -> Job {
        Job {
            id: JobId::new(),
            queue: "default".into(),
            kind: "k".into(),
            args: serde_json::Value::Null,
            state: JobState::Running,
            priority: 0,
            attempt,
            max_attempts,
            interruptions: 0,
            backoff: Backoff::None,
            timeout: None,
            unique_key: None,
            unique_for: None,
            retention: 0.0,
            tags: Vec::new(),
            headers: Default::default(),
            progress: None,
            result: None,
            errors: Vec::new(),
            worker_id: Some("w".into()),
            created_at: now(),
            run_at: now(),
            started_at: Some(now()),
            finished_at: None,
            deadline: None,
        }
    }

    fn decide(job: &Job, interruptions: u32) -> Interruption {
        let job = Job {
            interruptions,
            ..job.clone()
        };
        decide_interruption(&job, now(), 60.0, &mut StdRng::seed_from_u64(1))
    }

    #[test]
    fn an_interruption_gives_the_attempt_back() {
        assert_eq!(
            decide(&running(2, 5), 0),
            Interruption::Requeue {
                attempt: 1,
                interruptions: 1,
                run_at: now()
            }
        );
    }

    #[test]
    fn the_interruption_past_the_cap_is_a_failure() {
        let Interruption::Fail(failed) = decide(&running(1, 5), MAX_FREE_INTERRUPTIONS) else {
            panic!("expected a failure");
        };
        assert_eq!(failed.state, JobState::Queued);
        assert_eq!(failed.error.kind, "Interrupted");
        assert_eq!(failed.error.attempt, 1);
    }

    #[test]
    fn the_last_attempt_interrupted_past_the_cap_is_dead() {
        let Interruption::Fail(failed) = decide(&running(2, 2), MAX_FREE_INTERRUPTIONS) else {
            panic!("expected a failure");
        };
        assert_eq!(failed.state, JobState::Dead);
        assert_eq!(failed.finished_at, Some(now()));
    }
}
