//! Completed jobs per minute per queue, for the last few minutes: counted in memory by the
//! node that completed them and, on a shared store, recorded there so every node shows the
//! sum over all nodes.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use errands_store::MinuteCount;

use super::Engine;
use crate::error::EngineError;

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
        let mut series = vec![0; MINUTES];
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        for (minute, count) in queues.get(queue).into_iter().flatten() {
            add_to(&mut series, *minute, *count, now);
        }
        series
    }

    /// This node's counts of the window ending at `now`, to record in a shared store.
    pub fn counts(&self, node_id: &str, now: DateTime<Utc>) -> Vec<MinuteCount> {
        let first = first_minute(now);
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .iter()
            .flat_map(|(queue, buckets)| {
                buckets
                    .iter()
                    .filter(move |(minute, _)| *minute >= first)
                    .map(move |(minute, count)| MinuteCount {
                        node_id: node_id.to_owned(),
                        queue: queue.clone(),
                        minute: *minute,
                        count: *count,
                    })
            })
            .collect()
    }
}

/// The first minute of the window that ends at `now`.
fn first_minute(now: DateTime<Utc>) -> i64 {
    minute_of(now) - MINUTES as i64 + 1
}

/// Adds `count` completions in `minute` to `series`, the window ending at `now`.
fn add_to(series: &mut [u64], minute: i64, count: u64, now: DateTime<Utc>) {
    let first = first_minute(now);
    if (first..=minute_of(now)).contains(&minute) {
        series[(minute - first) as usize] += count;
    }
}

impl Engine {
    /// Records this node's counts in a shared store, for the other nodes to show.
    pub(crate) async fn record_throughput(&self, now: DateTime<Utc>) -> Result<(), EngineError> {
        let counts = self.throughput.counts(&self.node.id, now);
        Ok(self
            .store
            .record_throughput(&self.node.id, counts, first_minute(now))
            .await?)
    }

    /// Each queue's completions per minute in the window ending at `now`, over every node:
    /// this node's as counted now, the others' as they last recorded them (at most a third
    /// of the node lease ago). Only this node's if the store cannot be read.
    pub(crate) async fn throughput_series(
        &self,
        queues: &[String],
        now: DateTime<Utc>,
    ) -> HashMap<String, Vec<u64>> {
        let mut series: HashMap<String, Vec<u64>> = queues
            .iter()
            .map(|queue| (queue.clone(), self.throughput.series(queue, now)))
            .collect();
        let recorded = match self.store.recorded_throughput(first_minute(now)).await {
            Ok(recorded) => recorded.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%error, "could not read the other nodes' throughput");
                Vec::new()
            }
        };
        for count in recorded.iter().filter(|c| c.node_id != self.node.id) {
            if let Some(queue) = series.get_mut(&count.queue) {
                add_to(queue, count.minute, count.count, now);
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

    #[test]
    fn counts_cover_the_window_only() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:10Z".parse().unwrap();
        let throughput = Throughput::default();
        throughput.record("q", t0);
        throughput.record("q", t0 + Duration::minutes(MINUTES as i64));
        throughput.record("q", t0 + Duration::minutes(MINUTES as i64));
        let counts = throughput.counts("n", t0 + Duration::minutes(MINUTES as i64));
        assert_eq!(
            counts,
            [MinuteCount {
                node_id: "n".into(),
                queue: "q".into(),
                minute: minute_of(t0) + MINUTES as i64,
                count: 2,
            }]
        );
    }
}
