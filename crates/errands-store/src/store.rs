//! The `Store` trait: every operation the engine needs from a backend.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errands_core::cron::{CronEntry, CronSpec};
use errands_core::lifecycle::cron::CronTimes;
use errands_core::lifecycle::FailureCause;
use errands_core::{AttemptError, Job, JobId, JobState, NewJob, Progress};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

use crate::error::StoreError;
use crate::node::{Heartbeat, MinuteCount, Reap, RecordedWorker};
use crate::notice::Notice;

/// The outcome of enqueueing one job.
#[derive(Clone, Debug, PartialEq)]
pub struct Enqueued {
    /// The new job's id, or the existing job's when a unique key matched.
    pub id: JobId,
    /// That job's state.
    pub state: JobState,
    /// False when a unique key matched an existing job.
    pub created: bool,
}

/// A worker asking for jobs.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    /// Queues to take from, in the order to try them.
    pub queues: Vec<String>,
    /// Most jobs to take.
    pub limit: usize,
    /// Who takes them.
    pub worker_id: String,
    /// The server node the worker is connected to: its lease covers the jobs.
    pub node_id: String,
}

/// Which jobs to list.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs with this tag.
    pub tag: Option<String>,
    /// Only jobs older than this id (the previous page's cursor).
    pub before: Option<JobId>,
    /// Page size.
    pub limit: usize,
}

/// One page of a job listing, newest first.
#[derive(Clone, Debug)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<Job>,
    /// Cursor for the next page, if there is one.
    pub next: Option<JobId>,
}

/// Job counts of one queue by state.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct QueueCounts {
    /// Waiting for their time.
    pub scheduled: u64,
    /// Ready.
    pub queued: u64,
    /// Leased to workers.
    pub running: u64,
    /// Finished successfully.
    pub completed: u64,
    /// Out of attempts.
    pub dead: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl QueueCounts {
    /// Adds `n` jobs in `state`.
    pub fn add(&mut self, state: JobState, n: u64) {
        let slot = match state {
            JobState::Scheduled => &mut self.scheduled,
            JobState::Queued => &mut self.queued,
            JobState::Running => &mut self.running,
            JobState::Completed => &mut self.completed,
            JobState::Dead => &mut self.dead,
            JobState::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }
}

/// What the store knows about a queue.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct QueueInfo {
    /// Queue name.
    pub name: String,
    /// Paused queues accept jobs but dispatch none.
    pub paused: bool,
    /// Jobs by state.
    pub counts: QueueCounts,
    /// Age in seconds of the oldest ready job.
    pub oldest_ready_age: Option<f64>,
    /// Jobs completed per minute over the last minutes, oldest first (filled by the server,
    /// which counts them as they happen; empty from the store).
    pub throughput: Vec<u64>,
}

/// A running job the store took away from its worker (lost or timed out).
#[derive(Clone, Debug, PartialEq)]
pub struct ReleasedJob {
    /// The job.
    pub id: JobId,
    /// The worker that held it.
    pub worker_id: String,
    /// Its queue (now possibly ready again).
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Its state after the release.
    pub state: JobState,
    /// The attempt that was lost.
    pub attempt: u32,
}

/// A job its worker completed: what events and metrics need of it.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletedJob {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// The attempt that completed it.
    pub attempt: u32,
    /// When that attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// The headers it was enqueued with (trace context for the completion span).
    pub headers: BTreeMap<String, String>,
}

/// A worker's report on a job it holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// It finished: see [`Store::complete`].
    Complete {
        /// The job.
        id: JobId,
        /// What it returned.
        result: Option<Value>,
    },
    /// Its attempt failed: see [`Store::fail`].
    Fail {
        /// The job.
        id: JobId,
        /// The error (the store stamps the attempt number).
        error: AttemptError,
        /// What the worker asked for.
        cause: FailureCause,
    },
    /// It made progress: see [`Store::progress`].
    Progress {
        /// The job.
        id: JobId,
        /// What it reported.
        progress: Progress,
    },
    /// The worker stopped it unfinished as it shut down: see [`Store::interrupt`].
    Interrupted {
        /// The job.
        id: JobId,
    },
}

impl Report {
    /// The job it is about.
    pub fn id(&self) -> JobId {
        match self {
            Report::Complete { id, .. }
            | Report::Fail { id, .. }
            | Report::Progress { id, .. }
            | Report::Interrupted { id } => *id,
        }
    }
}

/// What a report did.
#[derive(Clone, Debug, PartialEq)]
pub enum Reported {
    /// The job completed.
    Completed(CompletedJob),
    /// The attempt failed; the job as it is now.
    Failed(Box<Job>),
    /// The progress was recorded.
    Progressed,
    /// The interrupted job is queued again, its attempt given back; the job as it is now.
    Requeued(Box<Job>),
}

/// A job that changed state without anyone holding it (promotion of a due job).
#[derive(Clone, Debug, PartialEq)]
pub struct MovedJob {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Attempts it has had so far.
    pub attempt: u32,
}

/// A cron schedule as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCron {
    /// Its name.
    pub name: String,
    /// What it runs and when (`paused` is always `None` here: see the field below).
    pub spec: CronSpec,
    /// Paused schedules enqueue nothing.
    pub paused: bool,
    /// The next fire time, if the schedule has one.
    pub next_fire: Option<DateTime<Utc>>,
    /// The latest fire time a job was enqueued for.
    pub last_fire: Option<DateTime<Utc>>,
}

impl StoredCron {
    /// A schedule named `name` running `spec` at `times`.
    pub fn new(name: &str, spec: CronSpec, times: CronTimes) -> Self {
        Self {
            name: name.to_owned(),
            spec,
            paused: times.paused,
            next_fire: times.next_fire,
            last_fire: times.last_fire,
        }
    }

    /// Its run state.
    pub fn times(&self) -> CronTimes {
        CronTimes {
            paused: self.paused,
            next_fire: self.next_fire,
            last_fire: self.last_fire,
        }
    }

    /// The schedule as the API shows it, with its upcoming fire times.
    pub fn entry(self) -> CronEntry {
        CronEntry::new(
            self.name,
            self.spec,
            self.paused,
            self.next_fire,
            self.last_fire,
        )
    }
}

/// A job a schedule enqueued for one of its fire times.
#[derive(Clone, Debug, PartialEq)]
pub struct FiredCron {
    /// The schedule.
    pub name: String,
    /// The fire time the job stands for.
    pub fire_time: DateTime<Utc>,
    /// The job's queue.
    pub queue: String,
    /// The job's kind.
    pub kind: String,
    /// The outcome: `created` is false when the fire time's job already existed.
    pub job: Enqueued,
}

/// Applies one report through the store's single-report methods.
pub async fn apply_report<S: Store + ?Sized>(
    store: &S,
    worker_id: &str,
    report: Report,
    now: DateTime<Utc>,
) -> Result<Reported, StoreError> {
    match report {
        Report::Complete { id, result } => store
            .complete(id, worker_id, result, now)
            .await
            .map(Reported::Completed),
        Report::Fail { id, error, cause } => store
            .fail(id, worker_id, error, cause, now)
            .await
            .map(|job| Reported::Failed(Box::new(job))),
        Report::Progress { id, progress } => store
            .progress(id, worker_id, progress)
            .await
            .map(|()| Reported::Progressed),
        Report::Interrupted { id } => store.interrupt(id, worker_id, now).await,
    }
}

/// A job store. Every method is one atomic step: it fully happens or, on error, not at all.
/// Methods taking `now` read no clock of their own, so callers control time. Every state
/// change is guarded by the state (and lease) it expects, so any number of server nodes may
/// share a store: of two racing changes to one job, one applies and the other misses.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores jobs in one transaction, or none of them. Unique keys are checked in order, so
    /// a batch holding a key twice stores the first and returns it for the second.
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>, StoreError>;

    /// Like [`Store::enqueue`], and sends the outcome on `committed` as soon as the jobs can be
    /// claimed, which may be before they are durable and the call returns. Dispatch need not
    /// wait for an fsync: a job lost with a crash before it was durable was never acknowledged.
    /// Stores that cannot tell the two moments apart send once the jobs are durable.
    async fn enqueue_announcing(
        &self,
        jobs: Vec<NewJob>,
        committed: oneshot::Sender<Vec<Enqueued>>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let stored = self.enqueue(jobs).await?;
        let _ = committed.send(stored.clone());
        Ok(stored)
    }

    /// One job.
    async fn get(&self, id: JobId) -> Result<Job, StoreError>;

    /// A page of jobs, newest first.
    async fn list(&self, filter: JobFilter) -> Result<JobPage, StoreError>;

    /// Leases up to `limit` ready jobs to a worker: highest priority, then earliest `run_at`,
    /// then lowest id, from the first queue that has any, then the next.
    async fn claim(
        &self,
        request: ClaimRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError>;

    /// Puts jobs leased to `worker_id` that it never received back in their queues, as if
    /// they had never been claimed: no attempt is counted and no error recorded. Jobs no longer
    /// leased to that worker (cancelled or timed out meanwhile) are left alone. Returns the
    /// jobs moved.
    async fn unclaim(&self, worker_id: &str, ids: Vec<JobId>) -> Result<Vec<MovedJob>, StoreError>;

    /// Marks a job the worker holds as completed.
    async fn complete(
        &self,
        id: JobId,
        worker_id: &str,
        result: Option<Value>,
        now: DateTime<Utc>,
    ) -> Result<CompletedJob, StoreError>;

    /// Records a failed attempt of a job the worker holds (stamping `error` with the attempt
    /// number) and schedules a retry or buries it.
    async fn fail(
        &self,
        id: JobId,
        worker_id: &str,
        error: AttemptError,
        cause: FailureCause,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError>;

    /// Applies the interruption of a job the worker holds: its worker stopped the attempt
    /// unfinished because it had to shut down. Decided by
    /// [`decide_interruption`](errands_core::lifecycle::decide_interruption) from the job's
    /// count of interruptions, written guarded by the lease read: up to the cap the job is
    /// `queued` again with its attempt count as before the attempt and its interruption count
    /// raised ([`Reported::Requeued`]); past it the attempt is failed as `Interrupted`
    /// ([`Reported::Failed`]). A job the worker no longer holds is `NotLeased` and unchanged.
    async fn interrupt(
        &self,
        id: JobId,
        worker_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Reported, StoreError>;

    /// Applies a worker's reports in the order given (two reports on one job land in the
    /// order it sent them), each with its own outcome. Backends may write them together.
    async fn report(
        &self,
        worker_id: &str,
        reports: Vec<Report>,
        now: DateTime<Utc>,
    ) -> Vec<Result<Reported, StoreError>> {
        let mut outcomes = Vec::with_capacity(reports.len());
        for report in reports {
            outcomes.push(apply_report(self, worker_id, report, now).await);
        }
        outcomes
    }

    /// Records progress of a job the worker holds.
    async fn progress(
        &self,
        id: JobId,
        worker_id: &str,
        progress: Progress,
    ) -> Result<(), StoreError>;

    /// Cancels a job that has not finished. Returns the job and, if it was running, the worker
    /// that held it, so the caller can tell that worker to abort.
    async fn cancel(
        &self,
        id: JobId,
        now: DateTime<Utc>,
    ) -> Result<(Job, Option<String>), StoreError>;

    /// Puts a finished job back in its queue.
    async fn retry(
        &self,
        id: JobId,
        reset_attempts: bool,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError>;

    /// Deletes a job that is not running.
    async fn delete(&self, id: JobId) -> Result<(), StoreError>;

    /// Fails every job a lost worker held (cause `WorkerLost`). Returns them.
    async fn release_worker(
        &self,
        worker_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReleasedJob>, StoreError>;

    /// Fails running jobs whose deadline has passed (cause `Timeout`). Returns them.
    async fn expire_deadlines(&self, now: DateTime<Utc>) -> Result<Vec<ReleasedJob>, StoreError>;

    /// Moves scheduled jobs that are due to `queued`. Returns them.
    async fn promote_due(&self, now: DateTime<Utc>) -> Result<Vec<MovedJob>, StoreError>;

    /// Deletes finished jobs past their retention. Returns how many.
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The earliest time something becomes due: a scheduled job's `run_at`, a running job's
    /// deadline, a finished job's expiry, or a running cron schedule's next fire time.
    async fn next_wakeup(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Every queue that has jobs or is paused.
    async fn queues(&self, now: DateTime<Utc>) -> Result<Vec<QueueInfo>, StoreError>;

    /// Pauses or resumes a queue.
    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), StoreError>;

    /// Names of paused queues.
    async fn paused_queues(&self) -> Result<Vec<String>, StoreError>;

    /// Creates or replaces the cron schedule `name` (already validated), returning it and
    /// whether it is new. A new schedule, or one whose timing (schedule or zone) changed,
    /// next fires at its first fire time after `now`; one re-declared with the same timing
    /// keeps its next and last fire times, so re-declaring never skips or repeats a fire time.
    /// `spec.paused` pauses or resumes it; `None` keeps its state (new schedules run).
    async fn put_cron(
        &self,
        name: &str,
        spec: CronSpec,
        now: DateTime<Utc>,
    ) -> Result<(StoredCron, bool), StoreError>;

    /// One cron schedule, if it exists.
    async fn get_cron(&self, name: &str) -> Result<Option<StoredCron>, StoreError>;

    /// Every cron schedule, by name.
    async fn list_cron(&self) -> Result<Vec<StoredCron>, StoreError>;

    /// Deletes a cron schedule (its jobs stay). False if it did not exist.
    async fn delete_cron(&self, name: &str) -> Result<bool, StoreError>;

    /// Pauses or resumes a cron schedule. A resumed schedule next fires after `now`: fire
    /// times that passed while it was paused are not run. `None` if it does not exist.
    async fn set_cron_paused(
        &self,
        name: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredCron>, StoreError>;

    /// In one transaction, for every running schedule whose next fire time is at or before
    /// `now`: enqueues its job for that fire time (per its catch-up policy, see
    /// [`errands_core::cron::Schedule::plan`]) under the unique key `cron:{name}:{fire time}`,
    /// and moves its next fire time past `now`. Several servers sharing a store therefore
    /// enqueue each fire time once. Returns the jobs enqueued.
    async fn fire_due_cron(&self, now: DateTime<Utc>) -> Result<Vec<FiredCron>, StoreError>;

    /// Whether other server processes may use this store at the same time. An unshared store
    /// (SQLite) lets a starting node release every job left running before it started.
    fn shared(&self) -> bool {
        false
    }

    /// The store's clock. On a shared store this is the database's, which every node reads
    /// time from (through an offset clock), so leases and due times agree across nodes.
    async fn current_time(&self) -> Result<DateTime<Utc>, StoreError> {
        Ok(Utc::now())
    }

    /// Registers node `node_id`, or renews its lease, until `expires_at`.
    async fn heartbeat(
        &self,
        node_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Heartbeat, StoreError>;

    /// The workers holding running jobs recorded against `node_id`: the node compares them
    /// with the workers connected to it and releases the jobs of any that are gone (a release
    /// that failed when the worker left, say on a full disk, is made good this way).
    async fn holders(&self, node_id: &str) -> Result<Vec<String>, StoreError>;

    /// Removes a node's lease (it is shutting down cleanly, its workers already gone).
    async fn remove_node(&self, node_id: &str) -> Result<(), StoreError>;

    /// Releases (cause [`ReleaseCause::NodeLost`](errands_core::lifecycle::ReleaseCause)) the
    /// running jobs of the nodes `reap` names as gone at `now`, and forgets those nodes. A
    /// node with a live lease loses nothing.
    async fn reap_nodes(
        &self,
        reap: Reap<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReleasedJob>, StoreError>;

    /// Takes or renews the lease of `role` for `node_id` until `expires_at`, unless another
    /// node holds it at `now`. True when `node_id` holds it after the call.
    async fn try_lead(
        &self,
        role: &str,
        node_id: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Records the workers connected to `node_id`, replacing what it recorded before, so that
    /// every node can list them. Unshared stores keep nothing.
    async fn record_workers(
        &self,
        node_id: &str,
        workers: Vec<RecordedWorker>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _ = (node_id, workers, now);
        Ok(())
    }

    /// The workers every node recorded; `None` on an unshared store (ask the engine).
    async fn recorded_workers(&self) -> Result<Option<Vec<RecordedWorker>>, StoreError> {
        Ok(None)
    }

    /// Records the completions per queue and minute that `node_id` counted, replacing what
    /// it recorded before, and forgets every node's counts of minutes before `since_minute`.
    /// Counts of nodes that stopped stay until they age out: their jobs did complete.
    /// Unshared stores keep nothing.
    async fn record_throughput(
        &self,
        node_id: &str,
        counts: Vec<MinuteCount>,
        since_minute: i64,
    ) -> Result<(), StoreError> {
        let _ = (node_id, counts, since_minute);
        Ok(())
    }

    /// The counts every node recorded for minutes from `since_minute` on; `None` on an
    /// unshared store (ask the engine).
    async fn recorded_throughput(
        &self,
        since_minute: i64,
    ) -> Result<Option<Vec<MinuteCount>>, StoreError> {
        let _ = since_minute;
        Ok(None)
    }

    /// Sends notices to every node sharing the store. Unshared stores have nobody to tell.
    async fn publish(&self, notices: Vec<Notice>) -> Result<(), StoreError> {
        let _ = notices;
        Ok(())
    }

    /// Notices from every node, and those the store's own transactions send (ready queues,
    /// also from applications enqueueing in their own transactions). `None` on an unshared
    /// store, where the engine's in-process wake-ups see every change.
    fn notices(&self) -> Option<broadcast::Receiver<Notice>> {
        None
    }

    /// Whether [`Store::notices`] carries other nodes' job events ([`Notice::Event`]), which
    /// only a node with event subscribers needs (every other notice comes regardless).
    /// Resolves once the change took effect: every event committed after it is delivered.
    /// Off at first. Unshared stores have no other nodes' events to follow.
    async fn follow_events(&self, follow: bool) -> Result<(), StoreError> {
        let _ = follow;
        Ok(())
    }
}
