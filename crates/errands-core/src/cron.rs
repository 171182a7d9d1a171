//! Cron schedules: parsing a schedule (a 5- or 6-field cron expression in an IANA time zone, or
//! an interval such as `every 30s`), computing fire times, and deciding what to enqueue when a
//! schedule is due, including after downtime.
//!
//! Everything here is pure: callers pass the time in, so the store and the tests decide what
//! "now" is.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::enqueue::{is_visible, EnqueueRequest, Limits, NewJob, ValidationError, MAX_NAME_LEN};

/// How many upcoming fire times a listing shows.
pub const UPCOMING: usize = 5;

/// How late a fire time may be and still run under [`CatchUp::Skip`]. The maintenance loop
/// normally fires a schedule within a second of its time; a fire time older than this was
/// missed (the server was down or stalled).
pub const CATCH_UP_GRACE: Duration = Duration::seconds(60);

/// Longest interval an `every …` schedule may have (one year).
pub const MAX_INTERVAL_SECONDS: i64 = 366 * 86_400;

/// What a schedule does about fire times it missed while no server ran it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Missed fire times are dropped: only a fire time less than a minute late still runs.
    #[default]
    Skip,
    /// However many fire times were missed, one job runs for them (keyed on the latest).
    #[serde(alias = "run-once")]
    RunOnce,
}

impl CatchUp {
    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::RunOnce => "run_once",
        }
    }
}

impl FromStr for CatchUp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "skip" => Ok(CatchUp::Skip),
            "run_once" | "run-once" => Ok(CatchUp::RunOnce),
            other => Err(format!(
                "unknown catch-up policy {other:?} (expected skip or run-once)"
            )),
        }
    }
}

/// When a schedule fires.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// A cron expression, evaluated on the wall clock of a time zone.
    Cron {
        /// The parsed expression.
        cron: Box<Cron>,
        /// Its time zone.
        tz: Tz,
    },
    /// A fixed interval, aligned to the Unix epoch (so `every 1h` fires on the hour, UTC, and
    /// every server computes the same fire times).
    Every {
        /// The interval in whole seconds.
        seconds: i64,
    },
}

impl Schedule {
    /// Parses `expr` (`min hour dom month dow`, optionally preceded by seconds; `@daily` and
    /// friends; or `every 30s`, `every 5m`, `every 1h`, `every 1h30m`) for time zone `tz`.
    /// Errors name the field they blame: `schedule` or `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Self, ValidationError> {
        let tz: Tz = tz.parse().map_err(|_| {
            ValidationError::new(
                "tz",
                format!("{tz:?} is not an IANA time zone (e.g. UTC, Europe/Berlin)"),
            )
        })?;
        let expr = expr.trim();
        if let Some(interval) = expr.strip_prefix("every ") {
            return parse_interval(interval.trim()).map(|seconds| Schedule::Every { seconds });
        }
        let fields = expr.split_whitespace().count();
        if !expr.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(ValidationError::new(
                "schedule",
                format!(
                    "a cron expression has 5 fields (minute hour day month weekday) or 6 \
                     (with seconds first), not {fields}; or use an interval like \"every 30s\""
                ),
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| ValidationError::new("schedule", format!("bad cron expression: {e}")))?;
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            tz,
        })
    }

    /// The first fire time strictly after `t`, or `None` if there is none (within the
    /// search limits of the cron library).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, tz } => cron
                .find_next_occurrence(&t.with_timezone(tz), false)
                .ok()
                .map(|at| at.with_timezone(&Utc)),
            Schedule::Every { seconds } => {
                let period = seconds * 1000;
                let ms = t.timestamp_millis();
                let next = (ms.div_euclid(period) + 1).checked_mul(period)?;
                DateTime::from_timestamp_millis(next)
            }
        }
    }

    /// The last fire time at or before `t`, if any.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, tz } => cron
                .find_previous_occurrence(&t.with_timezone(tz), true)
                .ok()
                .map(|at| at.with_timezone(&Utc))
                .filter(|at| *at <= t),
            Schedule::Every { seconds } => {
                let period = seconds * 1000;
                let ms = t.timestamp_millis();
                DateTime::from_timestamp_millis(ms.div_euclid(period).checked_mul(period)?)
            }
        }
    }

    /// Up to `n` fire times, the first strictly after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut times = Vec::with_capacity(n);
        let mut cursor = t;
        while times.len() < n {
            match self.next_after(cursor) {
                Some(next) => {
                    times.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        times
    }

    /// What to do when the schedule's stored fire time `due` is at or before `now`: which
    /// fire time to enqueue, if any, and the next fire time to store.
    ///
    /// The fire time enqueued is the latest one at or before `now` (normally `due` itself).
    /// Under [`CatchUp::Skip`] it runs only if it is at most [`CATCH_UP_GRACE`] late, so
    /// after downtime missed runs are dropped; under [`CatchUp::RunOnce`] it always runs,
    /// standing for every missed one. The next fire time is the first after `now`, so a
    /// schedule never fires for the same time twice.
    pub fn plan(&self, catch_up: CatchUp, due: DateTime<Utc>, now: DateTime<Utc>) -> FirePlan {
        let latest = self
            .last_at_or_before(now)
            .filter(|latest| *latest >= due)
            .unwrap_or(due);
        let fire = match catch_up {
            CatchUp::RunOnce => Some(latest),
            CatchUp::Skip => (now - latest <= CATCH_UP_GRACE).then_some(latest),
        };
        FirePlan {
            fire,
            next: self.next_after(now.max(due)),
        }
    }
}

/// Years holding every calendar a year can have: 2000 is a leap year and no century year
/// that skips one falls in the range, so its 7 leap years start on 7 different weekdays and
/// its 21 other years on each weekday three times.
const EVERY_KIND_OF_YEAR: std::ops::Range<i32> = 2000..2028;

impl Schedule {
    /// Whether some date matches the schedule's day and month fields, in a year of some
    /// kind (leap or not, starting on some weekday). The expressions have no year field, so
    /// one that matches a day of one kind of year fires in every year of that kind, and every
    /// kind recurs within 400 years; one that matches none never fires, and croner would
    /// search thousands of years to say so. Costs at most 28 × 366 day checks, and returns
    /// at the first match.
    pub fn has_a_day(&self) -> bool {
        let Schedule::Cron { cron, .. } = self else {
            return true;
        };
        let pattern = &cron.pattern;
        EVERY_KIND_OF_YEAR.into_iter().any(|year| {
            (1..=12u32)
                .filter(|&month| pattern.month_match(month).unwrap_or(false))
                .any(|month| month_has_a_day(pattern, year, month))
        })
    }
}

/// Whether a day of `month` in `year` matches `pattern`'s day fields.
fn month_has_a_day(pattern: &croner::CronPattern, year: i32, month: u32) -> bool {
    let Some(first) = chrono::NaiveDate::from_ymd_opt(year, month, 1) else {
        return false;
    };
    first
        .iter_days()
        .take_while(|date| date.month() == month)
        .any(|date| {
            let weekday =
                croner::Weekday::from_days_from_sunday(date.weekday().num_days_from_sunday());
            pattern
                .day_match(year, month, date.day(), weekday)
                .unwrap_or(false)
        })
}

/// The outcome of [`Schedule::plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirePlan {
    /// The fire time to enqueue a job for, if any.
    pub fire: Option<DateTime<Utc>>,
    /// The next fire time to wait for, if the schedule has one.
    pub next: Option<DateTime<Utc>>,
}

/// Parses the part after `every `: a humantime duration of whole seconds, 1 s to one year.
fn parse_interval(text: &str) -> Result<i64, ValidationError> {
    let bad = |message: String| ValidationError::new("schedule", message);
    let duration = humantime::parse_duration(text).map_err(|e| {
        bad(format!(
            "bad interval {text:?}: {e} (e.g. every 30s, every 5m)"
        ))
    })?;
    if duration.subsec_nanos() != 0 {
        return Err(bad("an interval must be whole seconds".into()));
    }
    let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
    if !(1..=MAX_INTERVAL_SECONDS).contains(&seconds) {
        return Err(bad(
            "an interval must be between 1 second and 366 days".into()
        ));
    }
    Ok(seconds)
}

fn default_tz() -> String {
    "UTC".to_owned()
}

fn is_utc(tz: &str) -> bool {
    tz == "UTC"
}

/// A cron schedule as a client declares it (`PUT /v1/cron/{name}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CronSpec {
    /// A cron expression with 5 fields (`min hour dom month dow`) or 6 (seconds first), an
    /// alias such as `@daily`, or an interval: `every 30s`, `every 5m`, `every 1h`.
    pub schedule: String,
    /// IANA time zone the expression is read in (default `UTC`). Intervals ignore it.
    #[serde(default = "default_tz", skip_serializing_if = "is_utc")]
    pub tz: String,
    /// The job to enqueue at each fire time. `delay`, `run_at` and `unique_key` are not
    /// allowed: the schedule decides when, and keys each job on its fire time.
    pub job: EnqueueRequest,
    /// What to do about fire times missed while no server ran (default `skip`).
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Pause or resume the schedule. Absent keeps the current state (a new schedule runs),
    /// so a worker re-declaring its schedules at start does not resume one an operator paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

impl CronSpec {
    /// A spec firing `job` on `schedule` in `tz`, skipping missed runs.
    pub fn new(schedule: impl Into<String>, tz: impl Into<String>, job: EnqueueRequest) -> Self {
        Self {
            schedule: schedule.into(),
            tz: tz.into(),
            job,
            catch_up: CatchUp::Skip,
            paused: None,
        }
    }

    /// The parsed schedule.
    pub fn parsed(&self) -> Result<Schedule, ValidationError> {
        Schedule::parse(&self.schedule, &self.tz)
    }

    /// Checks the whole spec against `limits` at `now`: the schedule parses and fires at
    /// least once more, and the job is valid. Errors name the field (`schedule`, `tz`,
    /// `job.kind`, …).
    pub fn validate(
        &self,
        limits: &Limits,
        now: DateTime<Utc>,
    ) -> Result<Schedule, ValidationError> {
        let schedule = self.parsed()?;
        if !schedule.has_a_day() {
            return Err(ValidationError::new(
                "schedule",
                "the schedule never fires: no date matches its day and month fields \
                 (e.g. 30 February)",
            ));
        }
        if schedule.next_after(now).is_none() {
            return Err(ValidationError::new(
                "schedule",
                "the schedule never fires after now",
            ));
        }
        for (field, set) in [
            ("delay", self.job.delay.is_some()),
            ("run_at", self.job.run_at.is_some()),
            ("unique_key", self.job.unique_key.is_some()),
        ] {
            if set {
                return Err(ValidationError::new(
                    format!("job.{field}"),
                    format!("a scheduled job cannot set {field}: the schedule decides it"),
                ));
            }
        }
        self.job
            .clone()
            .validate(limits, now)
            .map_err(|e| ValidationError::new(format!("job.{}", e.field), e.message))?;
        Ok(schedule)
    }

    /// Whether `other` fires at the same times (same schedule and zone).
    pub fn same_timing(&self, other: &CronSpec) -> bool {
        self.schedule.trim() == other.schedule.trim() && self.tz == other.tz
    }

    /// The job for schedule `name`'s fire time `fire`, enqueued at `now`, keyed
    /// `cron:{name}:{fire}` so a fire time is enqueued once however many servers race.
    pub fn job_at(
        &self,
        name: &str,
        fire: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<NewJob, ValidationError> {
        // Stored schedules' args were checked against the server's limits when declared.
        let limits = Limits {
            max_args_bytes: usize::MAX,
        };
        self.keyed_request(name, &rfc3339(fire))
            .validate(&limits, now)
    }

    /// The request for a run of schedule `name` by hand at `now`, keyed
    /// `cron:{name}:manual:{now}`.
    pub fn manual_request(&self, name: &str, now: DateTime<Utc>) -> EnqueueRequest {
        self.keyed_request(name, &format!("manual:{}", rfc3339(now)))
    }

    /// The job request with the unique key `cron:{name}:{key}` and the tag `cron:{name}`.
    fn keyed_request(&self, name: &str, key: &str) -> EnqueueRequest {
        let mut request = self.job.clone();
        request.delay = None;
        request.run_at = None;
        request.unique_key = Some(unique_key(name, key));
        // The schedule row is the real guard; the key also matches a finished job for a day.
        request.unique_for.get_or_insert(86_400.0);
        let tag = format!("cron:{name}");
        if !request.tags.contains(&tag) {
            request.tags.push(tag);
        }
        request
    }
}

/// The unique key of schedule `name`'s job for `key` (a fire time, or `manual:{time}`).
pub fn unique_key(name: &str, key: &str) -> String {
    format!("cron:{name}:{key}")
}

/// A time as it appears in unique keys: RFC 3339 in UTC, `Z`, no needless fraction.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Checks a schedule name: 1 to [`MAX_NAME_LEN`] characters, something visible, no control
/// characters, no `/`.
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    if !name.chars().any(is_visible)
        || name.chars().any(char::is_control)
        || name.chars().count() > MAX_NAME_LEN
        || name.contains('/')
    {
        return Err(ValidationError::new(
            "name",
            format!(
                "a schedule name must be 1 to {MAX_NAME_LEN} characters, not blank, \
                 no control characters, no '/'"
            ),
        ));
    }
    Ok(())
}

/// A schedule as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CronEntry {
    /// The schedule's name.
    pub name: String,
    /// The cron expression or interval.
    pub schedule: String,
    /// Its time zone.
    pub tz: String,
    /// The job enqueued at each fire time.
    pub job: EnqueueRequest,
    /// What happens to fire times missed while no server ran.
    pub catch_up: CatchUp,
    /// A paused schedule enqueues nothing.
    pub paused: bool,
    /// The next fire times (up to five; empty while paused).
    pub next_fire_times: Vec<DateTime<Utc>>,
    /// The latest fire time a job was enqueued for.
    pub last_fire: Option<DateTime<Utc>>,
}

impl CronEntry {
    /// The view of schedule `name` whose next stored fire time is `next_fire`.
    pub fn new(
        name: String,
        spec: CronSpec,
        paused: bool,
        next_fire: Option<DateTime<Utc>>,
        last_fire: Option<DateTime<Utc>>,
    ) -> Self {
        let next_fire_times = match (paused, next_fire, spec.parsed()) {
            (false, Some(next), Ok(schedule)) => {
                let mut times = vec![next];
                times.extend(schedule.upcoming(next, UPCOMING - 1));
                times
            }
            _ => Vec::new(),
        };
        Self {
            name,
            schedule: spec.schedule,
            tz: spec.tz,
            job: spec.job,
            catch_up: spec.catch_up,
            paused,
            next_fire_times,
            last_fire,
        }
    }
}

/// A UTC time from a wall clock time in `tz`, for tests and tools. `None` if that wall clock
/// time does not exist there (a spring-forward gap); the earlier instant if it is ambiguous.
pub fn local_to_utc(
    tz: Tz,
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
) -> Option<DateTime<Utc>> {
    tz.with_ymd_and_hms(year, month, day, hour, minute, 0)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn spec(json: serde_json::Value) -> Result<CronSpec, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn five_and_six_fields() {
        let five = Schedule::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            five.next_after(at("2026-01-01T00:07:30Z")),
            Some(at("2026-01-01T00:15:00Z"))
        );
        let six = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(
            six.next_after(at("2026-01-01T00:00:00.500Z")),
            Some(at("2026-01-01T00:00:10Z"))
        );
        let daily = Schedule::parse("@daily", "UTC").unwrap();
        assert_eq!(
            daily.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-02T00:00:00Z"))
        );
    }

    #[test]
    fn intervals_are_epoch_aligned() {
        let every = Schedule::parse("every 30s", "UTC").unwrap();
        assert_eq!(
            every.next_after(at("2026-01-01T00:00:10Z")),
            Some(at("2026-01-01T00:00:30Z"))
        );
        assert_eq!(
            every.next_after(at("2026-01-01T00:00:30Z")),
            Some(at("2026-01-01T00:01:00Z"))
        );
        assert_eq!(
            every.last_at_or_before(at("2026-01-01T00:00:59.999Z")),
            Some(at("2026-01-01T00:00:30Z"))
        );
        let hourly = Schedule::parse("every 1h", "Europe/Berlin").unwrap();
        assert_eq!(
            hourly.next_after(at("2026-01-01T10:20:00Z")),
            Some(at("2026-01-01T11:00:00Z"))
        );
        let mixed = Schedule::parse("every 1h30m", "UTC").unwrap();
        assert_eq!(
            mixed.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T01:30:00Z"))
        );
        let five = Schedule::parse("every 5m", "UTC").unwrap();
        assert_eq!(
            five.upcoming(at("2026-01-01T00:00:00Z"), 2),
            vec![at("2026-01-01T00:05:00Z"), at("2026-01-01T00:10:00Z")]
        );
    }

    #[test]
    fn bad_schedules_name_their_field() {
        for (expr, tz, field) in [
            ("not a cron", "UTC", "schedule"),
            ("* * *", "UTC", "schedule"),
            ("61 * * * *", "UTC", "schedule"),
            ("0 0 1 1 * 2027", "UTC", "schedule"),
            ("every", "UTC", "schedule"),
            ("every banana", "UTC", "schedule"),
            ("every 0s", "UTC", "schedule"),
            ("every 500ms", "UTC", "schedule"),
            ("every 400days", "UTC", "schedule"),
            ("* * * * *", "Mars/Olympus", "tz"),
            ("* * * * *", "", "tz"),
        ] {
            let error = Schedule::parse(expr, tz).unwrap_err();
            assert_eq!(error.field, field, "{expr:?} {tz:?}: {error}");
        }
    }

    #[test]
    fn a_schedule_whose_date_never_exists_is_refused_by_its_fields() {
        let now = at("2026-01-01T00:00:00Z");
        for expr in [
            "0 0 30 2 *",
            "0 0 31 2 *",
            "0 0 31 4,6,9,11 *",
            "*/5 * 30,31 2 *",
            "0 0 0 30 2 *",
            "0 0 30 2 +1",
        ] {
            let schedule = Schedule::parse(expr, "Europe/Berlin").unwrap();
            assert!(!schedule.has_a_day(), "{expr}");
            let spec = CronSpec::new(expr, "Europe/Berlin", EnqueueRequest::new("a"));
            let error = spec.validate(&Limits::default(), now).unwrap_err();
            assert_eq!(error.field, "schedule", "{expr}");
            assert!(
                error.message.contains("no date matches"),
                "{expr}: {}",
                error.message
            );
        }
    }

    #[test]
    fn rare_dates_that_exist_are_accepted() {
        let now = at("2026-01-01T00:00:00Z");
        for (expr, first) in [
            ("0 0 29 2 *", "2028-02-29T00:00:00Z"),
            // 29 February on a Monday (both fields must match): next in 2044.
            ("0 0 29 2 +1", "2044-02-29T00:00:00Z"),
            // Either field matches: 30 February never, but every Monday of February.
            ("0 0 30 2 1", "2026-02-02T00:00:00Z"),
            ("0 0 L 2 *", "2026-02-28T00:00:00Z"),
            ("0 0 31 1-12 *", "2026-01-31T00:00:00Z"),
            ("0 0 * 2 5#5", "2036-02-29T00:00:00Z"),
        ] {
            let spec = CronSpec::new(expr, "UTC", EnqueueRequest::new("a"));
            let schedule = spec.validate(&Limits::default(), now).unwrap();
            assert!(schedule.has_a_day(), "{expr}");
            assert_eq!(schedule.next_after(now), Some(at(first)), "{expr}");
        }
    }

    #[test]
    fn spec_defaults_and_unknown_fields() {
        let parsed =
            spec(serde_json::json!({"schedule": "* * * * *", "job": {"kind": "a"}})).unwrap();
        assert_eq!(parsed.tz, "UTC");
        assert_eq!(parsed.catch_up, CatchUp::Skip);
        assert_eq!(parsed.paused, None);
        let run_once = spec(serde_json::json!({
            "schedule": "* * * * *", "job": {"kind": "a"}, "catch_up": "run_once"
        }))
        .unwrap();
        assert_eq!(run_once.catch_up, CatchUp::RunOnce);
        assert!(spec(
            serde_json::json!({"schedule": "* * * * *", "job": {"kind": "a"}, "tzz": "UTC"})
        )
        .is_err());
        assert!(
            spec(serde_json::json!({"schedule": "* * * * *", "job": {"kind": "a", "x": 1}}))
                .is_err()
        );
    }

    #[test]
    fn spec_validation_names_job_fields() {
        let now = at("2026-01-01T00:00:00Z");
        let limits = Limits::default();
        let cases = [
            (
                serde_json::json!({"schedule": "* * * * *", "job": {"kind": ""}}),
                "job.kind",
            ),
            (
                serde_json::json!({"schedule": "* * * * *", "job": {"kind": "a", "delay": 1}}),
                "job.delay",
            ),
            (
                serde_json::json!({"schedule": "* * * * *", "job": {"kind": "a", "unique_key": "k"}}),
                "job.unique_key",
            ),
            (
                serde_json::json!({"schedule": "* * * * *", "job": {"kind": "a", "max_attempts": 0}}),
                "job.max_attempts",
            ),
            (
                serde_json::json!({"schedule": "* * * *", "job": {"kind": "a"}}),
                "schedule",
            ),
            (
                serde_json::json!({"schedule": "* * * * *", "tz": "Nowhere", "job": {"kind": "a"}}),
                "tz",
            ),
        ];
        for (json, field) in cases {
            let error = spec(json.clone())
                .unwrap()
                .validate(&limits, now)
                .unwrap_err();
            assert_eq!(error.field, field, "{json}");
        }
    }

    #[test]
    fn jobs_are_keyed_on_their_fire_time() {
        let spec = CronSpec::new("* * * * *", "UTC", EnqueueRequest::new("report"));
        let fire = at("2026-01-01T00:01:00Z");
        let job = spec
            .job_at("nightly", fire, at("2026-01-01T00:01:00.250Z"))
            .unwrap();
        assert_eq!(
            job.unique_key.as_deref(),
            Some("cron:nightly:2026-01-01T00:01:00Z")
        );
        assert_eq!(job.kind, "report");
        assert!(job.tags.contains(&"cron:nightly".to_owned()));
        let manual = spec.manual_request("nightly", fire);
        assert_eq!(
            manual.unique_key.as_deref(),
            Some("cron:nightly:manual:2026-01-01T00:01:00Z")
        );
    }

    #[test]
    fn plan_fires_on_time_and_catches_up_per_policy() {
        let hourly = Schedule::parse("0 * * * *", "UTC").unwrap();
        let due = at("2026-01-01T01:00:00Z");
        // On time (a little late): both policies fire the due time.
        for policy in [CatchUp::Skip, CatchUp::RunOnce] {
            let plan = hourly.plan(policy, due, at("2026-01-01T01:00:00.400Z"));
            assert_eq!(plan.fire, Some(due));
            assert_eq!(plan.next, Some(at("2026-01-01T02:00:00Z")));
        }
        // Five hours and ten minutes late.
        let now = at("2026-01-01T06:10:00Z");
        let skip = hourly.plan(CatchUp::Skip, due, now);
        assert_eq!(skip.fire, None);
        assert_eq!(skip.next, Some(at("2026-01-01T07:00:00Z")));
        let once = hourly.plan(CatchUp::RunOnce, due, now);
        assert_eq!(once.fire, Some(at("2026-01-01T06:00:00Z")));
        assert_eq!(once.next, Some(at("2026-01-01T07:00:00Z")));
        // Within the grace period of the latest missed time, skip still runs that one.
        let skip = hourly.plan(CatchUp::Skip, due, at("2026-01-01T06:00:30Z"));
        assert_eq!(skip.fire, Some(at("2026-01-01T06:00:00Z")));
    }

    fn berlin() -> Tz {
        "Europe/Berlin".parse().unwrap()
    }

    #[test]
    fn spring_forward_runs_a_skipped_wall_time_once_after_the_gap() {
        // 2026-03-29: Berlin clocks jump from 02:00 CET to 03:00 CEST; 02:30 does not exist.
        let daily = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let times = daily.upcoming(at("2026-03-27T12:00:00Z"), 4);
        assert_eq!(
            times,
            vec![
                at("2026-03-28T01:30:00Z"), // 02:30 CET
                at("2026-03-29T01:00:00Z"), // the first instant after the gap: 03:00 CEST
                at("2026-03-30T00:30:00Z"), // 02:30 CEST
                at("2026-03-31T00:30:00Z"),
            ]
        );
        assert_eq!(local_to_utc(berlin(), 2026, 3, 29, 2, 30), None);
        // Planning across the gap fires once and moves to the next day.
        let plan = daily.plan(CatchUp::Skip, times[1], times[1]);
        assert_eq!(plan.fire, Some(times[1]));
        assert_eq!(plan.next, Some(times[2]));
    }

    #[test]
    fn fall_back_runs_a_repeated_wall_time_once() {
        // 2026-10-25: Berlin clocks go back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
        let daily = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let first = at("2026-10-25T00:30:00Z"); // 02:30 CEST
        let times = daily.upcoming(at("2026-10-24T12:00:00Z"), 2);
        assert_eq!(times, vec![first, at("2026-10-26T01:30:00Z")]);
        // After firing at the first 02:30, the second (01:30Z, 02:30 CET) is not a fire time.
        assert_eq!(daily.next_after(first), Some(at("2026-10-26T01:30:00Z")));
        assert_eq!(
            daily.last_at_or_before(at("2026-10-25T01:45:00Z")),
            Some(first)
        );
        // An every-30-minutes cron schedule sees both halves of the repeated hour.
        let half_hourly = Schedule::parse("*/30 * * * *", "Europe/Berlin").unwrap();
        let times = half_hourly.upcoming(at("2026-10-24T23:50:00Z"), 5);
        assert_eq!(
            times,
            vec![
                at("2026-10-25T00:00:00Z"),
                at("2026-10-25T00:30:00Z"),
                at("2026-10-25T01:00:00Z"),
                at("2026-10-25T01:30:00Z"),
                at("2026-10-25T02:00:00Z"),
            ]
        );
    }

    #[test]
    fn entries_show_the_next_fire_times() {
        let spec = CronSpec::new("every 1m", "UTC", EnqueueRequest::new("a"));
        let next = at("2026-01-01T00:01:00Z");
        let entry = CronEntry::new("n".into(), spec.clone(), false, Some(next), None);
        assert_eq!(entry.next_fire_times.len(), UPCOMING);
        assert_eq!(entry.next_fire_times[0], next);
        assert_eq!(entry.next_fire_times[4], at("2026-01-01T00:05:00Z"));
        let paused = CronEntry::new("n".into(), spec, true, Some(next), None);
        assert!(paused.next_fire_times.is_empty());
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("nightly-report").is_ok());
        for bad in [
            "",
            "  ",
            "a/b",
            "\0",
            "\u{200b}",
            "a\nb",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert_eq!(validate_name(bad).unwrap_err().field, "name");
        }
    }
}
