//! What declaring, re-declaring and pausing a cron schedule does to its fire times.

use chrono::{DateTime, Utc};

use crate::cron::{CronSpec, Schedule};

/// A schedule's run state: whether it is paused and which fire times it is at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CronTimes {
    /// Paused schedules enqueue nothing.
    pub paused: bool,
    /// The next fire time, if the schedule has one.
    pub next_fire: Option<DateTime<Utc>>,
    /// The latest fire time a job was enqueued for.
    pub last_fire: Option<DateTime<Utc>>,
}

/// The run state after `spec` (whose timing is `schedule`) is declared over `existing`. A new
/// schedule, or one whose timing changed, next fires at its first fire time after `now`; one
/// re-declared with the same timing keeps its fire times, so re-declaring never skips or
/// repeats one. `spec.paused` pauses or resumes; `None` keeps the state (new schedules run).
pub fn redeclare(
    existing: Option<(&CronSpec, CronTimes)>,
    spec: &CronSpec,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> CronTimes {
    let was_paused = existing.is_some_and(|(_, times)| times.paused);
    let paused = spec.paused.unwrap_or(was_paused);
    let (next_fire, last_fire) = match existing {
        Some((old, times))
            if old.same_timing(spec) && !times.paused && times.next_fire.is_some() =>
        {
            (times.next_fire, times.last_fire)
        }
        Some((_, times)) => (schedule.next_after(now), times.last_fire),
        None => (schedule.next_after(now), None),
    };
    CronTimes {
        paused,
        next_fire,
        last_fire,
    }
}

/// The run state after pausing or resuming. A resumed schedule next fires after `now`: fire
/// times that passed while it was paused are not run.
pub fn set_paused(
    times: CronTimes,
    schedule: &Schedule,
    paused: bool,
    now: DateTime<Utc>,
) -> CronTimes {
    let next_fire = if times.paused && !paused {
        schedule.next_after(now)
    } else {
        times.next_fire
    };
    CronTimes {
        paused,
        next_fire,
        ..times
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EnqueueRequest;
    use chrono::Duration;

    fn t0() -> DateTime<Utc> {
        "2026-01-01T00:00:30Z".parse().unwrap()
    }

    fn every_minute() -> CronSpec {
        CronSpec::new("* * * * *", "UTC", EnqueueRequest::new("tick"))
    }

    #[test]
    fn a_new_schedule_fires_next_after_now() {
        let spec = every_minute();
        let times = redeclare(None, &spec, &spec.parsed().unwrap(), t0());
        assert_eq!(times.next_fire, Some(t0() + Duration::seconds(30)));
        assert!(!times.paused);
    }

    #[test]
    fn redeclaring_the_same_timing_keeps_the_fire_times() {
        let spec = every_minute();
        let kept = CronTimes {
            paused: false,
            next_fire: Some(t0() - Duration::minutes(5)),
            last_fire: Some(t0() - Duration::minutes(6)),
        };
        let later = t0() + Duration::hours(1);
        let times = redeclare(Some((&spec, kept)), &spec, &spec.parsed().unwrap(), later);
        assert_eq!(times, kept);
    }

    #[test]
    fn resuming_skips_what_passed_while_paused() {
        let spec = every_minute();
        let paused = CronTimes {
            paused: true,
            next_fire: Some(t0() - Duration::minutes(5)),
            last_fire: None,
        };
        let times = set_paused(paused, &spec.parsed().unwrap(), false, t0());
        assert_eq!(times.next_fire, Some(t0() + Duration::seconds(30)));
        assert!(!times.paused);
    }
}
