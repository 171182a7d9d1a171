//! The engine: every rule of the job lifecycle that needs more than one store call, and the
//! bookkeeping that connects the store to live workers. The HTTP API and the worker socket are
//! thin layers over it.

mod bus;
mod cron;
mod events;
mod limits;
mod maintenance;
mod names;
mod node;
mod registry;
mod reports;
mod series;
mod signals;
mod spans;
mod telemetry;
mod throughput;
mod vanished;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use errands_core::event::Change;
use errands_core::protocol::CancelReason;
use errands_core::{Clock, EnqueueRequest, Job, JobId, JobState, Limits};
use errands_store::{
    ClaimRequest, Enqueued, JobFilter, JobPage, Notice, QueueInfo, ReleasedJob, Store, StoreError,
};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

pub use events::{EventFilter, EventHub, Published, Subscription, SubscriptionEnd};
pub use limits::{EventLimits, WorkerLimits};
pub use maintenance::run_maintenance_loop;
pub use node::run_lease_loop;
pub use registry::{ToWorker, WorkerInfo, WorkerRegistry, WorkerStatus};
pub use reports::WorkerReport;
pub use series::{JobSeries, DEFAULT_MAX_SERIES, OTHER};
pub use signals::QueueSignals;
pub use telemetry::{MetricKind, METRICS};

use crate::error::EngineError;
use names::JobNames;
use node::Node;
use spans::Spans;

/// How an engine is set up.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Limits on what a job may carry.
    pub limits: Limits,
    /// On a shared store: how long after this node's last heartbeat other nodes release the
    /// jobs its workers hold.
    pub node_lease: Duration,
    /// Timeouts and bounds of worker connections.
    pub worker: WorkerLimits,
    /// Bounds of the live event feed.
    pub events: EventLimits,
    /// Whether to record the server's spans (enqueue, dispatch, completion) on the global
    /// OpenTelemetry tracer provider.
    pub traces: bool,
    /// How many (queue, kind) pairs get job metric series of their own; the others are
    /// counted under `queue="_other", kind="_other"`.
    pub max_series: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            node_lease: Duration::from_secs(15),
            worker: WorkerLimits::default(),
            events: EventLimits::default(),
            traces: false,
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

/// The job engine shared by every connection.
pub struct Engine {
    store: Arc<dyn Store>,
    node: Node,
    /// Notices for the other nodes (`None` on an unshared store), and their receiving end,
    /// taken by the task that sends them.
    outbox: Option<mpsc::Sender<Notice>>,
    outbox_rx: Mutex<Option<mpsc::Receiver<Notice>>>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    worker_limits: WorkerLimits,
    signals: QueueSignals,
    workers: WorkerRegistry,
    events: EventHub,
    throughput: throughput::Throughput,
    spans: Spans,
    /// Job counters and histograms by queue and kind, bounded.
    series: JobSeries,
    paused: RwLock<HashSet<String>>,
    /// Wakes the maintenance loop when something may have become due sooner than it planned.
    maintenance: Notify,
    /// Held through a maintenance pass, so passes on one node run one after another: a pass
    /// that returns has seen every due job, not skipped one another pass still held locked.
    sweeping: tokio::sync::Mutex<()>,
    /// On a shared store: whether this node receives the other nodes' job events, which it
    /// needs only while it has event subscribers (see [`Engine::subscribe_events`]).
    following_events: tokio::sync::Mutex<bool>,
    /// Cancelled when the server shuts down, closing every worker connection.
    closing: CancellationToken,
}

impl Engine {
    /// An engine over `store`, reading time from `clock`. Loads the paused queues and
    /// registers this node; on an unshared store, returns every job left running by a
    /// previous process to its queue. [`run_background`] runs what it needs in the background.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        options: EngineOptions,
    ) -> Result<Arc<Self>, EngineError> {
        let paused = store.paused_queues().await?.into_iter().collect();
        // Install the recorder before anything counts, so no early increment is lost.
        telemetry::prometheus();
        let (outbox, outbox_rx) = if store.shared() {
            let (tx, rx) = mpsc::channel(bus::OUTBOX);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let engine = Arc::new(Self {
            store,
            node: Node::new(options.node_lease),
            outbox,
            outbox_rx: Mutex::new(outbox_rx),
            clock,
            limits: options.limits,
            worker_limits: options.worker,
            signals: QueueSignals::default(),
            workers: WorkerRegistry::default(),
            events: EventHub::new(options.events),
            throughput: Default::default(),
            spans: Spans::new(options.traces),
            series: JobSeries::new(options.max_series),
            paused: RwLock::new(paused),
            maintenance: Notify::new(),
            sweeping: tokio::sync::Mutex::new(()),
            following_events: tokio::sync::Mutex::new(false),
            closing: CancellationToken::new(),
        });
        engine.register_node().await?;
        Ok(engine)
    }

    /// Leaves the shared store cleanly: this node's lease is removed. Its workers' jobs were
    /// released as their connections closed.
    pub async fn leave(&self) -> Result<(), EngineError> {
        Ok(self.store.remove_node(&self.node.id).await?)
    }

    /// The engine's current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The store behind the engine.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Connected workers.
    pub fn workers(&self) -> &WorkerRegistry {
        &self.workers
    }

    /// Closes every worker connection (their jobs return to their queues) and refuses new ones.
    pub fn close(&self) {
        self.closing.cancel();
        self.events.close();
    }

    /// Timeouts and bounds of worker connections.
    pub fn worker_limits(&self) -> &WorkerLimits {
        &self.worker_limits
    }

    /// Resolves once [`Engine::close`] was called.
    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }

    /// True once the server has begun shutting down.
    pub fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// The live event feed.
    pub fn events(&self) -> &EventHub {
        &self.events
    }

    /// Subscribes to the live events that pass `filter`. On a shared store this node first
    /// makes sure it receives the other nodes' job events (it stops some time after its last
    /// subscriber left): once this returns, no change committed by any node is missed.
    pub async fn subscribe_events(&self, filter: EventFilter) -> Result<Subscription, EngineError> {
        let subscription = self.events.subscribe(filter);
        if self.outbox.is_some() {
            let mut following = self.following_events.lock().await;
            if !*following {
                self.store.follow_events(true).await?;
                *following = true;
            }
        }
        Ok(subscription)
    }

    /// Stops receiving other nodes' job events if this node still has no event subscriber.
    pub(crate) async fn unfollow_events_if_unwatched(&self) {
        let mut following = self.following_events.lock().await;
        if !*following || self.events.subscribers() > 0 {
            return;
        }
        match self.store.follow_events(false).await {
            Ok(()) => *following = false,
            Err(error) => tracing::warn!(%error, "could not stop following other nodes' events"),
        }
    }

    fn publish_state(&self, id: JobId, queue: &str, kind: &str, state: JobState, attempt: u32) {
        self.publish_change(id, queue, kind, Change::State { state, attempt });
    }

    /// Publishes a change on this node's event stream and, through the store, on every
    /// other node's.
    fn publish_change(&self, id: JobId, queue: &str, kind: &str, change: Change) {
        if self.outbox.is_some() {
            self.tell_others(Notice::Event {
                node: self.node.id.clone(),
                id,
                queue: queue.to_owned(),
                kind: kind.to_owned(),
                change: change.clone(),
            });
        }
        self.events.publish(id, queue, kind, change, self.now());
    }

    fn publish_job(&self, job: &Job) {
        self.publish_state(job.id, &job.queue, &job.kind, job.state, job.attempt);
    }

    /// Per-queue wake-ups for waiting workers.
    pub fn signals(&self) -> &QueueSignals {
        &self.signals
    }

    /// Validates and stores jobs, all or none. A bad request names its field, with its index
    /// when there are several.
    pub async fn enqueue(
        &self,
        requests: Vec<EnqueueRequest>,
        batch: bool,
    ) -> Result<Vec<Enqueued>, EngineError> {
        let now = self.now();
        let mut jobs = requests
            .into_iter()
            .enumerate()
            .map(|(index, request)| {
                request.validate(&self.limits, now).map_err(|error| {
                    if batch {
                        error.within("jobs", index)
                    } else {
                        error
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let spans = self.spans.enqueue(&mut jobs, now);
        let scheduled = jobs.iter().any(|job| job.state == JobState::Scheduled);
        let names = JobNames::of(&jobs);
        // Workers are woken as soon as the jobs are committed; the reply waits until they are
        // durable. So a job reaches an idle worker while its fsync is still running.
        let (committed_tx, committed) = oneshot::channel::<Vec<Enqueued>>();
        let announce = async {
            if let Ok(stored) = committed.await {
                self.announce_enqueued(&stored, &names, scheduled);
            }
        };
        let (stored, ()) =
            tokio::join!(self.store.enqueue_announcing(jobs, committed_tx), announce);
        let error = stored.as_ref().err().map(ToString::to_string);
        self.spans.enqueued(spans, error.as_deref());
        Ok(stored?)
    }

    /// Counts, publishes and wakes workers for newly stored jobs.
    fn announce_enqueued(&self, stored: &[Enqueued], names: &JobNames, scheduled: bool) {
        for (position, outcome) in stored.iter().enumerate() {
            if let (true, Some((queue, kind))) = (outcome.created, names.job(position)) {
                self.publish_state(outcome.id, queue, kind, outcome.state, 0);
            }
        }
        for (queue, kind, count) in names.created(stored) {
            telemetry::enqueued(&self.series, queue, kind, count);
        }
        for queue in names.queues() {
            self.signals.notify(queue);
        }
        if scheduled {
            self.maintenance.notify_one();
        }
    }

    /// One job.
    pub async fn get(&self, id: JobId) -> Result<Job, EngineError> {
        Ok(self.store.get(id).await?)
    }

    /// A page of jobs.
    pub async fn list(&self, filter: JobFilter) -> Result<JobPage, EngineError> {
        Ok(self.store.list(filter).await?)
    }

    /// Cancels a job; a running job's worker is told to abort it.
    pub async fn cancel(&self, id: JobId) -> Result<Job, EngineError> {
        let (job, holder) = self.store.cancel(id, self.now()).await?;
        self.publish_job(&job);
        if let Some(worker_id) = holder {
            self.abort(&worker_id, id, CancelReason::Cancelled);
        }
        Ok(job)
    }

    /// Puts a finished job back in its queue.
    pub async fn retry(&self, id: JobId, reset_attempts: bool) -> Result<Job, EngineError> {
        let job = self.store.retry(id, reset_attempts, self.now()).await?;
        self.publish_job(&job);
        self.signals.notify(&job.queue);
        Ok(job)
    }

    /// Deletes a job that is not running.
    pub async fn delete(&self, id: JobId) -> Result<(), EngineError> {
        Ok(self.store.delete(id).await?)
    }

    /// Every queue with its counts and recent throughput.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>, EngineError> {
        let now = self.now();
        let mut queues = self.store.queues(now).await?;
        let names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
        let mut series = self.throughput_series(&names, now).await;
        for queue in &mut queues {
            queue.throughput = series.remove(&queue.name).unwrap_or_default();
        }
        Ok(queues)
    }

    /// One queue's counts (empty counts for a queue with no jobs).
    pub async fn queue(&self, name: &str) -> Result<QueueInfo, EngineError> {
        let found = self.queues().await?.into_iter().find(|q| q.name == name);
        Ok(found.unwrap_or_else(|| QueueInfo {
            name: name.to_owned(),
            paused: self.is_paused(name),
            counts: Default::default(),
            oldest_ready_age: None,
            throughput: self.throughput.series(name, self.now()),
        }))
    }

    /// Pauses or resumes a queue. Paused queues accept jobs and dispatch none.
    pub async fn set_paused(&self, queue: &str, paused: bool) -> Result<QueueInfo, EngineError> {
        self.store.set_paused(queue, paused).await?;
        self.cache_paused(queue, paused);
        self.tell_others(Notice::Paused {
            queue: queue.to_owned(),
            paused,
        });
        self.queue(queue).await
    }

    /// Records that `queue` is paused or not, and wakes its workers when it resumes. (The
    /// claim checks the store too: this cache only saves claims on paused queues.)
    fn cache_paused(&self, queue: &str, paused: bool) {
        {
            let mut set = self.paused.write().unwrap_or_else(|p| p.into_inner());
            if paused {
                set.insert(queue.to_owned());
            } else {
                set.remove(queue);
            }
        }
        if !paused {
            self.signals.notify(queue);
        }
    }

    /// Reloads the paused queues from the store, after notices may have been missed.
    async fn reload_paused(&self) -> Result<(), EngineError> {
        let paused: HashSet<String> = self.store.paused_queues().await?.into_iter().collect();
        let resumed: Vec<String> = {
            let mut set = self.paused.write().unwrap_or_else(|p| p.into_inner());
            let resumed = set.difference(&paused).cloned().collect();
            *set = paused;
            resumed
        };
        self.wake_queues(resumed.iter().map(String::as_str));
        Ok(())
    }

    /// Whether `queue` is paused.
    pub fn is_paused(&self, queue: &str) -> bool {
        self.paused
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(queue)
    }

    /// Leases up to `limit` jobs from `queues` (in the order given, skipping paused ones). The
    /// caller calls [`Engine::started`] for each when it sends it to the worker.
    pub async fn claim(
        &self,
        worker_id: &str,
        queues: Vec<String>,
        limit: usize,
    ) -> Result<Vec<Job>, EngineError> {
        let queues: Vec<String> = queues.into_iter().filter(|q| !self.is_paused(q)).collect();
        if queues.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let request = ClaimRequest {
            queues,
            limit,
            worker_id: worker_id.to_owned(),
            node_id: self.node.id.clone(),
        };
        let jobs = self.store.claim(request, self.now()).await?;
        if jobs.iter().any(|job| job.deadline.is_some()) {
            self.maintenance.notify_one();
        }
        Ok(jobs)
    }

    /// A claimed job was sent to its worker: it has started.
    pub fn started(&self, job: &Job) {
        telemetry::started(&self.series, job);
        self.spans.dispatched(job, self.now());
        self.publish_job(job);
    }

    /// Gives jobs claimed for a worker that never received them back to their queues, without
    /// counting an attempt, and wakes those queues.
    pub async fn unclaim(&self, worker_id: &str, ids: Vec<JobId>) -> Result<(), EngineError> {
        if ids.is_empty() {
            return Ok(());
        }
        let moved = self.store.unclaim(worker_id, ids).await?;
        self.wake_queues(moved.iter().map(|job| job.queue.as_str()));
        Ok(())
    }

    /// A worker's connection closed: its jobs go back to their queues at once.
    pub async fn worker_lost(&self, worker_id: &str) -> Result<Vec<ReleasedJob>, EngineError> {
        let released = self.store.release_worker(worker_id, self.now()).await?;
        for job in &released {
            self.after_release(job, "its worker was lost");
        }
        Ok(released)
    }

    /// Fires due cron schedules, promotes due jobs, times out overdue ones and purges expired
    /// ones. Returns when it next has work, if known.
    /// On a shared store only the leader sweeps; the others return at once.
    pub async fn run_maintenance(&self) -> Result<Option<DateTime<Utc>>, EngineError> {
        let _one_pass_at_a_time = self.sweeping.lock().await;
        let now = self.now();
        if !self.lead(now).await? {
            return Ok(None);
        }
        self.reap_dead_nodes(now).await?;
        self.fire_cron(now).await;
        let promoted = self.store.promote_due(now).await?;
        for job in &promoted {
            self.publish_state(job.id, &job.queue, &job.kind, JobState::Queued, job.attempt);
        }
        self.wake_queues(promoted.iter().map(|job| job.queue.as_str()));
        for job in self.store.expire_deadlines(now).await? {
            self.abort(&job.worker_id, job.id, CancelReason::Timeout);
            self.after_release(&job, "it timed out");
        }
        while self.store.purge_expired(now).await? > 0 {}
        Ok(self.store.next_wakeup().await?)
    }

    /// After the server took a job from its worker (`how`, for the log): publish and wake
    /// whoever is next.
    fn after_release(&self, job: &ReleasedJob, how: &str) {
        let ended = telemetry::AttemptEnd {
            id: job.id,
            queue: &job.queue,
            kind: &job.kind,
            attempt: job.attempt,
            state: job.state,
        };
        telemetry::failed(&self.series, ended, how);
        self.publish_state(job.id, &job.queue, &job.kind, job.state, job.attempt);
        self.wake_after_failure(&job.queue, job.state);
    }

    /// Wakes the workers of each queue once, however many jobs became ready in it.
    fn wake_queues<'a>(&self, queues: impl Iterator<Item = &'a str>) {
        for queue in queues.collect::<HashSet<_>>() {
            self.signals.notify(queue);
        }
    }

    /// After a job left a worker: wake its queue if it is ready again, or the maintenance
    /// loop if it waits out a backoff.
    fn wake_after_failure(&self, queue: &str, state: JobState) {
        match state {
            JobState::Queued => self.signals.notify(queue),
            JobState::Scheduled => self.maintenance.notify_one(),
            _ => {}
        }
    }

    /// The Prometheus text exposition, with gauges refreshed from the store.
    pub async fn metrics_text(&self) -> Result<String, EngineError> {
        let mark = self.series.mark();
        let queues = self.queues().await?;
        let live: HashSet<&str> = queues.iter().map(|queue| queue.name.as_str()).collect();
        self.series.drop_gone(&live, mark);
        let workers = self.workers.list();
        let capacity = workers.iter().map(|w| u64::from(w.capacity)).sum();
        telemetry::snapshot(&queues, workers.len(), capacity);
        self.record_buffer_gauges(&workers);
        let mut text = telemetry::prometheus().render();
        self.series.render(&mut text);
        Ok(text)
    }

    /// What the event feed and the worker connections hold in memory, for `/metrics`.
    fn record_buffer_gauges(&self, workers: &[WorkerInfo]) {
        let outbound: usize = workers.iter().map(|w| w.outbound_bytes).sum();
        metrics::gauge!("errands_worker_outbound_bytes").set(outbound as f64);
        metrics::gauge!("errands_event_subscribers").set(self.events.subscribers() as f64);
        metrics::gauge!("errands_event_buffered_bytes").set(self.events.buffered_bytes() as f64);
    }

    /// Whether the store answers reads and accepts writes: a cheap read, then this node's
    /// heartbeat, a one-row write through the same writer every job goes through. A store
    /// that still reads but cannot write (a full disk, a held lock) is not ready.
    pub async fn ready(&self) -> Result<(), EngineError> {
        self.store.paused_queues().await?;
        self.renew_lease().await
    }

    /// Takes the receiving end of the outbox, once.
    fn take_outbox(&self) -> Option<mpsc::Receiver<Notice>> {
        self.outbox_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Waits until something may have become due earlier than planned.
    pub(crate) async fn maintenance_requested(&self) {
        self.maintenance.notified().await;
    }
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        EngineError::Store(error)
    }
}

/// Runs what the engine does in the background until the task is dropped: maintenance and,
/// on a shared store, this node's lease and the notices to and from other nodes.
pub async fn run_background(engine: Arc<Engine>) {
    let outbox = engine.take_outbox();
    let send = async {
        if let Some(outbox) = outbox {
            bus::run_outbox(engine.clone(), outbox).await;
        }
    };
    tokio::join!(
        run_maintenance_loop(engine.clone()),
        run_lease_loop(engine.clone()),
        bus::run_inbox(engine.clone()),
        bus::run_unfollow(engine.clone()),
        send,
    );
}
