//! Time, read through a trait so the scheduler, retries and timeouts can be tested without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock corrected to a reference clock (the database's, when many server nodes
/// share one): every node then reads the same time for leases, deadlines and due times,
/// however far their own clocks drift.
#[derive(Debug, Default)]
pub struct OffsetClock {
    /// Microseconds to add to the local clock.
    offset_micros: AtomicI64,
}

impl OffsetClock {
    /// A clock with no correction yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calibrates against a reading of the reference clock, `reference`, taken between the
    /// local times `sent` and `received`: the reading is taken to be from halfway between.
    pub fn calibrate(
        &self,
        sent: DateTime<Utc>,
        reference: DateTime<Utc>,
        received: DateTime<Utc>,
    ) {
        let midway = sent + (received - sent) / 2;
        let offset = (reference - midway).num_microseconds().unwrap_or(0);
        self.offset_micros.store(offset, Ordering::Relaxed);
    }

    /// The correction applied, in microseconds.
    pub fn offset_micros(&self) -> i64 {
        self.offset_micros.load(Ordering::Relaxed)
    }

    /// Local time `local` as the reference clock would read it.
    pub fn corrected(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        local + Duration::microseconds(self.offset_micros())
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        self.corrected(Utc::now())
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|poison| poison.into_inner());
        *now += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|poison| poison.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    /// Two nodes whose own clocks disagree by a minute read the same time once calibrated
    /// against the same reference.
    #[test]
    fn skewed_nodes_agree_after_calibration() {
        let (ahead, behind) = (OffsetClock::new(), OffsetClock::new());
        // The reference reads 100 s; node A's clock says 130 s, node B's 70 s, each with a
        // 2 s round trip.
        ahead.calibrate(at(129), at(100), at(131));
        behind.calibrate(at(69), at(100), at(71));
        assert_eq!(ahead.offset_micros(), -30_000_000);
        assert_eq!(behind.offset_micros(), 30_000_000);
        assert_eq!(ahead.corrected(at(140)), behind.corrected(at(80)));
    }
}
