//! What cancelling a job does.

use chrono::{DateTime, Utc};

use super::Refused;
use crate::backoff::seconds_to_duration;
use crate::state::JobState;

/// What a cancel writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cancellation {
    /// Already cancelled: nothing to write, nobody to tell.
    AlreadyCancelled,
    /// Cancel it now.
    Cancel {
        /// When it finished (now).
        finished_at: DateTime<Utc>,
        /// When it is purged, after its retention.
        expires_at: DateTime<Utc>,
        /// It was running: its worker must be told to abort.
        abort_worker: bool,
    },
}

/// Decides a cancel of a job in `state` kept for `retention` seconds once finished.
pub fn decide_cancel(
    state: JobState,
    retention: f64,
    now: DateTime<Utc>,
) -> Result<Cancellation, Refused> {
    if !state.can_cancel() {
        return Err(Refused {
            state,
            action: "cancel",
        });
    }
    if state == JobState::Cancelled {
        return Ok(Cancellation::AlreadyCancelled);
    }
    Ok(Cancellation::Cancel {
        finished_at: now,
        expires_at: now + seconds_to_duration(retention),
        abort_worker: state == JobState::Running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn finished_jobs_cannot_be_cancelled() {
        for state in [JobState::Completed, JobState::Dead] {
            let refused = decide_cancel(state, 1.0, now()).unwrap_err();
            assert_eq!(refused.action, "cancel");
        }
    }

    #[test]
    fn cancelling_twice_is_a_no_op() {
        assert_eq!(
            decide_cancel(JobState::Cancelled, 1.0, now()),
            Ok(Cancellation::AlreadyCancelled)
        );
    }

    #[test]
    fn only_running_jobs_need_their_worker_told() {
        let running = decide_cancel(JobState::Running, 60.0, now()).unwrap();
        assert_eq!(
            running,
            Cancellation::Cancel {
                finished_at: now(),
                expires_at: now() + chrono::Duration::seconds(60),
                abort_worker: true
            }
        );
        let queued = decide_cancel(JobState::Queued, 60.0, now()).unwrap();
        assert!(matches!(
            queued,
            Cancellation::Cancel {
                abort_worker: false,
                ..
            }
        ));
    }
}
