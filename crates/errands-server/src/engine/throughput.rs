//! Completed jobs per minute per queue, for the last few minutes, kept in memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Minutes of history kept per queue.
pub const MINUTES: usize = 15;

/// Per-queue counts of completed jobs, one bucket per wall-clock minute.
#[derive(Default)]
pub struct Throughput {
    queues: Mutex<HashMap<String, VecDeque<(i64, u64)>>>,
}

fn minute_of(time: DateTime<Utc>) -> i64 {
    time.timestamp().div_euclid(60)
}

impl Throughput {
    /// Counts one completed job of `queue` at `now`.
    pub fn record(&self, queue: &str, now: DateTime<Utc>) {
        let minute = minute_of(now);
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let buckets = match queues.get_mut(queue) {
            Some(buckets) => buckets,
            None => queues.entry(queue.to_owned()).or_default(),
        };
        match buckets.back_mut() {
            Some((last, count)) if *last == minute => *count += 1,
            _ => buckets.push_back((minute, 1)),
        }
        while buckets
            .front()
            .is_some_and(|(m, _)| *m <= minute - MINUTES as i64)
        {
            buckets.pop_front();
        }
    }

    /// Completed jobs per minute for the last [`MINUTES`] minutes up to `now`, oldest first.
    pub fn series(&self, queue: &str, now: DateTime<Utc>) -> Vec<u64> {
        let current = minute_of(now);
        let first = current - MINUTES as i64 + 1;
        let mut series = vec![0; MINUTES];
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        for (minute, count) in queues.get(queue).into_iter().flatten() {
            if (first..=current).contains(minute) {
                series[(minute - first) as usize] = *count;
            }
        }
        series
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn counts_land_in_their_minute_and_age_out() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:10Z".parse().unwrap();
        let throughput = Throughput::default();
        throughput.record("q", t0);
        throughput.record("q", t0 + Duration::seconds(5));
        throughput.record("q", t0 + Duration::minutes(2));
        let series = throughput.series("q", t0 + Duration::minutes(2));
        assert_eq!(series.len(), MINUTES);
        assert_eq!(&series[MINUTES - 3..], [2, 0, 1]);
        let later = throughput.series("q", t0 + Duration::minutes(20));
        assert!(later.iter().all(|&n| n == 0));
        assert!(throughput.series("other", t0).iter().all(|&n| n == 0));
    }
}
