//! Cron schedule parsing and fire-time arithmetic on arbitrary text. Input is the expression,
//! optionally followed by a newline and a time zone (UTC when absent). Parsing must never
//! panic, and a schedule that parses and fires again (what `CronSpec::validate` requires
//! before a schedule is stored) must give fire times on the right side of the instant asked
//! about.
#![no_main]

use chrono::{DateTime, Duration, Utc};
use errands_core::cron::{CatchUp, Schedule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expr, tz) = text.split_once('\n').unwrap_or((text, "UTC"));
    let Ok(schedule) = Schedule::parse(expr, tz) else {
        return;
    };
    let now = DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01 is a valid time");
    if assert_fire_times(&schedule, now) {
        assert_plans(&schedule, now);
    }
});

fn assert_fire_times(schedule: &Schedule, now: DateTime<Utc>) -> bool {
    // A schedule that never fires is refused when declared, and searching for its next
    // time is slow (the cron library scans years ahead), so it would only slow fuzzing down.
    let Some(next) = schedule.next_after(now) else {
        return false;
    };
    assert!(next > now, "next {next} not after {now}");
    if let Some(last) = schedule.last_at_or_before(now) {
        assert!(last <= now, "last {last} after {now}");
    }
    let upcoming = schedule.upcoming(now, 3);
    assert!(
        upcoming.windows(2).all(|pair| pair[0] < pair[1]),
        "{upcoming:?}"
    );
    assert!(upcoming.iter().all(|at| *at > now), "{upcoming:?}");
    assert_eq!(upcoming.first(), Some(&next));
    true
}

fn assert_plans(schedule: &Schedule, now: DateTime<Utc>) {
    let due = now - Duration::hours(1);
    for catch_up in [CatchUp::Skip, CatchUp::RunOnce] {
        let plan = schedule.plan(catch_up, due, now);
        if let Some(fire) = plan.fire {
            assert!(fire >= due && fire <= now, "{catch_up:?} fires at {fire}");
        }
        if let Some(next) = plan.next {
            assert!(next > now, "{catch_up:?} next {next}");
        }
    }
}
