//! Jobs claimed ahead for a fast worker. When one of its slots frees up, the next job goes out
//! at once instead of after a claim's commit, so the store's write latency leaves the dispatch
//! loop. Jobs are held only while the worker's jobs finish quickly, and never for long: a held
//! job is already leased, and its timeout is already running.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use errands_core::{Job, JobId};
use tokio::time::Instant;

/// Hold jobs only for a worker whose jobs come back within this long of being sent.
const FAST_TURNAROUND: Duration = Duration::from_millis(20);
/// Jobs held per slot of the worker. One slot's worth is not enough: while a round of writes
/// is in flight the worker finishes jobs faster than one claim per round refills them. Four
/// still starved a no-op worker while a PostgreSQL round (a flushed commit and its round
/// trips) was in flight; eight took the PostgreSQL drain from 16–19k to 23–26k jobs/s.
const HELD_PER_SLOT: usize = 8;
/// Most jobs held for one connection, whatever its capacity.
const MAX_HELD: usize = 128;

/// The jobs held for one connection and what decides how many.
pub(crate) struct Prefetch {
    /// Claimed jobs not yet sent, in dispatch order, with when they were claimed.
    held: VecDeque<(Job, Instant)>,
    /// How many are held, for the node's other connections to see (see
    /// `WorkerRegistry::ask_for_held`).
    count: Arc<AtomicUsize>,
    /// A job held longer than this goes back to its queue, with everything held behind it.
    hold_limit: Duration,
    /// Smoothed time from sending a job to its worker's report; `None` until a job comes
    /// back, and again after held jobs had to be given back.
    turnaround: Option<Duration>,
}

impl Prefetch {
    /// Holds nothing yet; `count` follows how many jobs it holds.
    pub(crate) fn new(hold_limit: Duration, count: Arc<AtomicUsize>) -> Self {
        Self {
            held: VecDeque::new(),
            count,
            hold_limit,
            turnaround: None,
        }
    }

    /// How many more jobs to claim ahead for a worker with `capacity` slots.
    pub(crate) fn room(&self, capacity: usize) -> usize {
        let depth = match self.turnaround {
            _ if self.hold_limit.is_zero() => 0,
            Some(turnaround) if turnaround <= FAST_TURNAROUND => {
                (capacity * HELD_PER_SLOT).min(MAX_HELD)
            }
            _ => 0,
        };
        depth.saturating_sub(self.held.len())
    }

    /// Notes that a job came back `elapsed` after it was sent.
    pub(crate) fn finished(&mut self, elapsed: Duration) {
        // An exponential moving average: a few slow jobs in a row stop the prefetching.
        self.turnaround = Some(match self.turnaround {
            Some(average) => average - average / 4 + elapsed / 4,
            None => elapsed,
        });
    }

    /// Holds claimed jobs until slots free up.
    pub(crate) fn hold(&mut self, job: Job, claimed_at: Instant) {
        self.held.push_back((job, claimed_at));
        self.counted();
    }

    /// The next held job, oldest first.
    pub(crate) fn next(&mut self) -> Option<Job> {
        let next = self.held.pop_front().map(|(job, _)| job);
        self.counted();
        next
    }

    /// Drops a held job (cancelled or timed out in the store). Whether it was held.
    pub(crate) fn forget(&mut self, id: JobId) -> bool {
        let before = self.held.len();
        self.held.retain(|(job, _)| job.id != id);
        self.counted();
        self.held.len() < before
    }

    /// When the oldest held job has been held too long.
    pub(crate) fn expires_at(&self) -> Option<Instant> {
        self.held
            .front()
            .map(|(_, claimed_at)| *claimed_at + self.hold_limit)
    }

    /// Lets go of every held job, returning their ids so they can be given back. Holds nothing
    /// more until the worker shows again that its jobs come back quickly.
    pub(crate) fn release(&mut self) -> Vec<JobId> {
        self.turnaround = None;
        let released = self.held.drain(..).map(|(job, _)| job.id).collect();
        self.counted();
        released
    }

    /// How many jobs are held.
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    fn counted(&self) {
        self.count.store(self.held.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use errands_core::{Backoff, JobState};

    const HOLD_LIMIT: Duration = Duration::from_millis(100);

    fn prefetch() -> Prefetch {
        Prefetch::new(HOLD_LIMIT, Arc::default())
    }

    fn job() -> Job {
        let now = chrono::Utc::now();
        Job {
            id: JobId::new(),
            queue: "default".into(),
            kind: "k".into(),
            args: serde_json::Value::Null,
            state: JobState::Running,
            priority: 0,
            attempt: 1,
            max_attempts: 3,
            interruptions: 0,
            backoff: Backoff::default(),
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
            created_at: now,
            run_at: now,
            started_at: Some(now),
            finished_at: None,
            deadline: None,
        }
    }

    #[test]
    fn holds_nothing_until_jobs_come_back_fast() {
        let mut prefetch = prefetch();
        assert_eq!(prefetch.room(5), 0);
        prefetch.finished(Duration::from_millis(1));
        assert_eq!(prefetch.room(5), 5 * HELD_PER_SLOT);
        assert_eq!(prefetch.room(1_000), MAX_HELD);
    }

    #[test]
    fn a_zero_hold_limit_holds_nothing() {
        let mut prefetch = Prefetch::new(Duration::ZERO, Arc::default());
        prefetch.finished(Duration::from_millis(1));
        assert_eq!(prefetch.room(5), 0);
    }

    #[test]
    fn slow_jobs_stop_the_prefetching() {
        let mut prefetch = prefetch();
        prefetch.finished(Duration::from_millis(1));
        for _ in 0..3 {
            prefetch.finished(Duration::from_secs(1));
        }
        assert_eq!(prefetch.room(5), 0);
    }

    #[test]
    fn held_jobs_expire_and_are_released_in_order() {
        let mut prefetch = prefetch();
        prefetch.finished(Duration::from_millis(1));
        let start = Instant::now();
        let (first, second) = (job(), job());
        let ids = [first.id, second.id];
        prefetch.hold(first, start);
        prefetch.hold(second, start + Duration::from_millis(5));
        assert_eq!(prefetch.room(5), 5 * HELD_PER_SLOT - 2);
        assert_eq!(prefetch.expires_at(), Some(start + HOLD_LIMIT));

        assert_eq!(prefetch.release(), ids);
        assert_eq!(prefetch.len(), 0);
        assert_eq!(prefetch.expires_at(), None);
        // Released for being held too long: no more holding until jobs come back fast again.
        assert_eq!(prefetch.room(5), 0);
    }

    #[test]
    fn the_shared_count_follows_the_held_jobs() {
        let count = Arc::new(AtomicUsize::new(0));
        let mut prefetch = Prefetch::new(HOLD_LIMIT, count.clone());
        let (first, second) = (job(), job());
        let first_id = first.id;
        prefetch.hold(first, Instant::now());
        prefetch.hold(second, Instant::now());
        assert_eq!(count.load(Ordering::Relaxed), 2);
        prefetch.forget(first_id);
        assert_eq!(count.load(Ordering::Relaxed), 1);
        prefetch.next();
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn forgets_a_cancelled_job() {
        let mut prefetch = prefetch();
        let (first, second) = (job(), job());
        let (first_id, second_id) = (first.id, second.id);
        let now = Instant::now();
        prefetch.hold(first, now);
        prefetch.hold(second, now);
        assert!(prefetch.forget(first_id));
        assert!(!prefetch.forget(first_id));
        assert_eq!(prefetch.next().map(|job| job.id), Some(second_id));
        assert!(prefetch.next().is_none());
    }
}
