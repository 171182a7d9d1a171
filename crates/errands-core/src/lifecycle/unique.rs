//! The unique-key rule: which existing job a new job's key names.

use chrono::{DateTime, Utc};

use crate::backoff::seconds_to_duration;
use crate::state::JobState;

/// The states in which a job holds its unique key whatever its window: a backend backs this
/// with a unique index over jobs in these states, so two unfinished jobs never share a key.
pub const HOLDING_STATES: [JobState; 3] =
    [JobState::Scheduled, JobState::Queued, JobState::Running];

/// While a job with the same key is unfinished, or was created inside the new job's window,
/// the new job is not created and the existing one is returned instead.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UniqueRule {
    /// Finished jobs created after this also match; `None`: only unfinished jobs match.
    pub window_start: Option<DateTime<Utc>>,
}

impl UniqueRule {
    /// The rule for a job created at `created_at` with a window of `unique_for` seconds.
    pub fn new(created_at: DateTime<Utc>, unique_for: Option<f64>) -> Self {
        Self {
            window_start: unique_for.map(|seconds| created_at - seconds_to_duration(seconds)),
        }
    }

    /// Whether an existing job in `state`, created at `created_at`, blocks the new one.
    pub fn blocks(&self, state: JobState, created_at: DateTime<Utc>) -> bool {
        !state.is_finished() || self.window_start.is_some_and(|start| created_at > start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t0() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn unfinished_jobs_always_block() {
        let rule = UniqueRule::new(t0(), None);
        for state in HOLDING_STATES {
            assert!(rule.blocks(state, t0() - Duration::days(400)));
        }
        assert!(!rule.blocks(JobState::Completed, t0()));
    }

    #[test]
    fn finished_jobs_block_inside_the_window() {
        let rule = UniqueRule::new(t0(), Some(60.0));
        assert!(rule.blocks(JobState::Completed, t0() - Duration::seconds(59)));
        assert!(!rule.blocks(JobState::Dead, t0() - Duration::seconds(60)));
    }
}
