//! The queue and kind of each job of an enqueue, kept for what follows its commit: metrics,
//! events and worker wake-ups. A batch mostly repeats one queue and kind, so each distinct
//! pair is kept once; copying both names of every job, then counting each job on its own,
//! was a measurable part of a batch enqueue.

use std::collections::{HashMap, HashSet};

use errands_core::NewJob;
use errands_store::Enqueued;

/// The names of a list of jobs, by position.
pub(crate) struct JobNames {
    /// Each distinct `(queue, kind)`, in order of first use.
    pairs: Vec<(String, String)>,
    /// For each job, its pair's index in `pairs`.
    of_job: Vec<usize>,
}

impl JobNames {
    /// The names of `jobs`.
    pub(crate) fn of(jobs: &[NewJob]) -> Self {
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        let mut pairs = Vec::new();
        let of_job = jobs
            .iter()
            .map(|job| {
                *index
                    .entry((job.queue.as_str(), job.kind.as_str()))
                    .or_insert_with(|| {
                        pairs.push((job.queue.clone(), job.kind.clone()));
                        pairs.len() - 1
                    })
            })
            .collect();
        Self { pairs, of_job }
    }

    /// The queue and kind of the job at `position`.
    pub(crate) fn job(&self, position: usize) -> Option<(&str, &str)> {
        let (queue, kind) = &self.pairs[*self.of_job.get(position)?];
        Some((queue, kind))
    }

    /// How many of the jobs were created (not matched by a unique key), per queue and kind.
    /// `outcomes` are the store's, in job order.
    pub(crate) fn created(&self, outcomes: &[Enqueued]) -> Vec<(&str, &str, u64)> {
        let mut counts = vec![0; self.pairs.len()];
        for (outcome, &pair) in outcomes.iter().zip(&self.of_job) {
            if outcome.created {
                counts[pair] += 1;
            }
        }
        self.pairs
            .iter()
            .zip(counts)
            .filter(|(_, count)| *count > 0)
            .map(|((queue, kind), count)| (queue.as_str(), kind.as_str(), count))
            .collect()
    }

    /// Every queue the jobs went to, once each.
    pub(crate) fn queues(&self) -> HashSet<&str> {
        self.pairs.iter().map(|(queue, _)| queue.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use errands_core::{EnqueueRequest, JobState, Limits};

    use super::*;

    fn job(queue: &str, kind: &str) -> NewJob {
        EnqueueRequest {
            queue: Some(queue.into()),
            ..EnqueueRequest::new(kind)
        }
        .validate(&Limits::default(), Utc::now())
        .unwrap()
    }

    fn outcome(job: &NewJob, created: bool) -> Enqueued {
        Enqueued {
            id: job.id,
            state: JobState::Queued,
            created,
        }
    }

    #[test]
    fn names_each_job_and_counts_only_created_ones() {
        let jobs = [job("a", "x"), job("b", "x"), job("a", "x"), job("a", "y")];
        let names = JobNames::of(&jobs);
        assert_eq!(names.job(1), Some(("b", "x")));
        assert_eq!(names.job(3), Some(("a", "y")));
        assert_eq!(names.job(4), None);
        let outcomes: Vec<_> = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| outcome(job, i != 1))
            .collect();
        assert_eq!(names.created(&outcomes), [("a", "x", 2), ("a", "y", 1)]);
        assert_eq!(names.queues(), HashSet::from(["a", "b"]));
    }
}
