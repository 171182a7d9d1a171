//! The job lifecycle end to end: a real server in-process, driven over HTTP and the worker
//! socket by the Rust SDK. Time-dependent cases use a manual clock and run maintenance by hand.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use errands_client::{
    Backoff, Client, EnqueueOptions, Error, HandlerError, JobContext, JobState, Worker,
};
use errands_core::{Clock, ManualClock, SystemClock};
use errands_server::{RunningServer, ServerConfig};
use errands_store_postgres::testing::TestDatabase;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

struct Harness {
    server: RunningServer,
    client: Client,
    clock: Arc<ManualClock>,
    _database: Option<TestDatabase>,
}

impl Harness {
    async fn start() -> Self {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let (store, database) = common::test_store().await;
        let server = RunningServer::start(store, clock.clone(), ServerConfig::default())
            .await
            .unwrap();
        let client = Client::new(server.url(), None).unwrap();
        Self {
            server,
            client,
            clock,
            _database: database,
        }
    }

    async fn advance(&self, seconds: i64) {
        self.clock.advance(chrono::Duration::seconds(seconds));
        self.server.engine.run_maintenance().await.unwrap();
    }

    async fn enqueue(
        &self,
        kind: &str,
        args: Value,
        options: EnqueueOptions,
    ) -> errands_client::JobId {
        self.client
            .enqueue_raw(kind, args, options)
            .await
            .unwrap()
            .id
    }

    /// Waits until the job is in `state` (bounded; the wait grows between reads).
    async fn wait_for_state(&self, id: errands_client::JobId, state: JobState) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            if self.client.get(id).await.unwrap().state == state {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} never became {state}"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// A worker that records each job's id and args, then runs `behaviour`.
fn recording_worker<F, Fut>(
    client: &Client,
    queues: &[&str],
    capacity: u32,
    behaviour: F,
) -> (Worker, mpsc::UnboundedReceiver<(JobContext, Value)>)
where
    F: Fn(JobContext, Value) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Value, HandlerError>> + Send + 'static,
{
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let worker = Worker::builder(client.clone())
        .queues(queues.iter().copied())
        .capacity(capacity)
        .handle_raw("task", move |ctx: JobContext, args: Value| {
            let _ = seen_tx.send((ctx.clone(), args.clone()));
            behaviour.clone()(ctx, args)
        })
        .build();
    (worker, seen)
}

async fn echo(_ctx: JobContext, args: Value) -> Result<Value, HandlerError> {
    Ok(json!({"echo": args}))
}

async fn hang(_ctx: JobContext, _args: Value) -> Result<Value, HandlerError> {
    std::future::pending().await
}

#[tokio::test]
async fn a_job_runs_from_enqueue_to_result() {
    let h = Harness::start().await;
    let (worker, _seen) = recording_worker(
        &h.client,
        &["default"],
        1,
        |ctx: JobContext, args| async move {
            ctx.progress(50.0, "halfway").await;
            Ok(json!({"echo": args}))
        },
    );
    tokio::spawn(worker.run());
    let id = h
        .enqueue("task", json!({"n": 1}), EnqueueOptions::new())
        .await;
    let job = h.client.wait(id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.result, Some(json!({"echo": {"n": 1}})));
    assert_eq!(job.attempt, 1);
    assert_eq!(job.progress.unwrap().message.as_deref(), Some("halfway"));
    assert!(job.started_at.is_some() && job.finished_at.is_some());
    assert!(job.errors.is_empty());
}

#[tokio::test]
async fn failures_retry_until_attempts_run_out_then_the_job_is_dead() {
    let h = Harness::start().await;
    let (worker, _seen) = recording_worker(
        &h.client,
        &["default"],
        1,
        |ctx: JobContext, _| async move {
            Err(HandlerError::new(
                "Broken",
                format!("attempt {}", ctx.attempt),
            ))
        },
    );
    tokio::spawn(worker.run());
    let options = EnqueueOptions::new()
        .max_attempts(3)
        .backoff(Backoff::Fixed { delay: 10.0 });
    let id = h.enqueue("task", Value::Null, options).await;
    h.wait_for_state(id, JobState::Scheduled).await;
    h.advance(10).await;
    h.wait_for_state(id, JobState::Scheduled).await;
    let job = h.client.get(id).await.unwrap();
    assert_eq!(job.attempt, 2);
    h.advance(10).await;
    let job = h.client.wait(id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Dead);
    let messages: Vec<_> = job.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["attempt 1", "attempt 2", "attempt 3"]);
    assert!(matches!(
        h.client.cancel(id).await,
        Err(Error::Conflict { .. })
    ));
    let retried = h.client.retry(id).await.unwrap();
    assert_eq!((retried.state, retried.attempt), (JobState::Queued, 0));
}

#[tokio::test]
async fn a_lost_worker_gives_its_jobs_back_at_once() {
    let h = Harness::start().await;
    let (lost, mut seen) = recording_worker(&h.client, &["default"], 1, hang);
    let lost = tokio::spawn(lost.run());
    let id = h.enqueue("task", json!(7), EnqueueOptions::new()).await;
    seen.recv().await.unwrap();
    lost.abort();
    h.wait_for_state(id, JobState::Queued).await;
    let job = h.client.get(id).await.unwrap();
    assert_eq!(job.errors[0].kind, "WorkerLost");
    let (rescuer, _seen) = recording_worker(&h.client, &["default"], 1, echo);
    tokio::spawn(rescuer.run());
    let job = h.client.wait(id, WAIT).await.unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Completed, 2));
}

#[tokio::test]
async fn a_job_left_running_under_a_worker_that_is_gone_is_released() {
    let h = Harness::start().await;
    let engine = &h.server.engine;
    let id = h.enqueue("task", json!(7), EnqueueOptions::new()).await;
    // A job held by a worker this node never released: what a release that failed (a full
    // disk, a database that was down) when the worker went away leaves behind.
    let claim = errands_store::ClaimRequest {
        queues: vec!["default".into()],
        limit: 1,
        worker_id: "gone-worker".into(),
        node_id: engine.node_id().to_owned(),
    };
    let claimed = engine.store().claim(claim, h.clock.now()).await.unwrap();
    assert_eq!(claimed.len(), 1);
    // And a job held by a worker that is connected.
    let (connected, mut seen) = recording_worker(&h.client, &["busy"], 1, hang);
    tokio::spawn(connected.run());
    let busy = h
        .enqueue("task", json!(8), EnqueueOptions::new().queue("busy"))
        .await;
    seen.recv().await.unwrap();

    assert_eq!(engine.release_vanished_workers().await.unwrap(), 1);
    let job = h.client.get(id).await.unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Queued, 1));
    assert_eq!(job.errors[0].kind, "WorkerLost");
    assert_eq!(h.client.get(busy).await.unwrap().state, JobState::Running);
    // Run again, the check finds nothing more to release.
    assert_eq!(engine.release_vanished_workers().await.unwrap(), 0);
}

#[tokio::test]
async fn a_job_past_its_timeout_is_aborted_and_retried() {
    let h = Harness::start().await;
    let (worker, mut seen) = recording_worker(&h.client, &["default"], 1, hang);
    tokio::spawn(worker.run());
    let options = EnqueueOptions::new()
        .timeout(Duration::from_secs(30))
        .max_attempts(2)
        .backoff(Backoff::None);
    let id = h.enqueue("task", Value::Null, options).await;
    let (first, _) = seen.recv().await.unwrap();
    h.wait_for_state(id, JobState::Running).await;
    h.advance(29).await;
    assert!(!first.is_cancelled());
    h.advance(1).await;
    tokio::time::timeout(WAIT, first.cancellation().cancelled())
        .await
        .unwrap();
    // Retried at once (no backoff): the same worker, freed by the cancel, gets attempt 2.
    let (second, _) = seen.recv().await.unwrap();
    assert_eq!(second.attempt, 2);
    h.advance(30).await;
    let job = h.client.wait(id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Dead);
    let kinds: Vec<_> = job.errors.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["Timeout", "Timeout"]);
}

#[tokio::test]
async fn jobs_run_by_queue_order_then_priority_then_age() {
    let h = Harness::start().await;
    let low = |p| EnqueueOptions::new().queue("low").priority(p);
    let high = |p| EnqueueOptions::new().queue("high").priority(p);
    h.enqueue("task", json!("low-0"), low(0)).await;
    h.enqueue("task", json!("low-9"), low(9)).await;
    h.enqueue("task", json!("high-0-first"), high(0)).await;
    h.enqueue("task", json!("high-0-second"), high(0)).await;
    h.enqueue("task", json!("high-5"), high(5)).await;
    let (worker, mut seen) = recording_worker(&h.client, &["high", "low"], 1, echo);
    tokio::spawn(worker.run());
    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(seen.recv().await.unwrap().1);
    }
    assert_eq!(
        order,
        [
            json!("high-5"),
            json!("high-0-first"),
            json!("high-0-second"),
            json!("low-9"),
            json!("low-0")
        ]
    );
}

#[tokio::test]
async fn a_paused_queue_keeps_its_jobs_until_resumed() {
    let h = Harness::start().await;
    let http = reqwest::Client::new();
    let pause = http
        .post(format!("{}/v1/queues/held/pause", h.server.url()))
        .send()
        .await
        .unwrap();
    assert!(pause.status().is_success());
    let held = h
        .enqueue("task", json!("held"), EnqueueOptions::new().queue("held"))
        .await;
    let (worker, mut seen) = recording_worker(&h.client, &["held", "open"], 1, echo);
    tokio::spawn(worker.run());
    let open = h
        .enqueue("task", json!("open"), EnqueueOptions::new().queue("open"))
        .await;
    // The worker tries "held" first, so taking "open" proves it skipped the paused queue.
    assert_eq!(seen.recv().await.unwrap().1, json!("open"));
    h.client.wait(open, WAIT).await.unwrap();
    assert_eq!(h.client.get(held).await.unwrap().state, JobState::Queued);
    let resume = http
        .post(format!("{}/v1/queues/held/resume", h.server.url()))
        .send()
        .await
        .unwrap();
    assert!(resume.status().is_success());
    assert_eq!(
        h.client.wait(held, WAIT).await.unwrap().state,
        JobState::Completed
    );
}

#[tokio::test]
async fn cancelling_a_running_job_tells_its_worker_and_frees_its_slot() {
    let h = Harness::start().await;
    let (worker, mut seen) = recording_worker(
        &h.client,
        &["default"],
        1,
        |ctx: JobContext, args: Value| async move {
            if args == json!("hang") {
                std::future::pending::<()>().await;
            }
            let _ = ctx;
            Ok(args)
        },
    );
    tokio::spawn(worker.run());
    let stuck = h
        .enqueue("task", json!("hang"), EnqueueOptions::new())
        .await;
    let (ctx, _) = seen.recv().await.unwrap();
    let next = h
        .enqueue("task", json!("next"), EnqueueOptions::new())
        .await;
    let cancelled = h.client.cancel(stuck).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    tokio::time::timeout(WAIT, ctx.cancellation().cancelled())
        .await
        .unwrap();
    // Capacity 1: the next job runs only because the cancel freed the slot.
    assert_eq!(
        h.client.wait(next, WAIT).await.unwrap().state,
        JobState::Completed
    );
    assert_eq!(
        h.client.get(stuck).await.unwrap().state,
        JobState::Cancelled
    );
}

#[tokio::test]
async fn delayed_jobs_wait_for_their_time() {
    let h = Harness::start().await;
    let (worker, mut seen) = recording_worker(&h.client, &["default"], 1, echo);
    tokio::spawn(worker.run());
    let later = h
        .enqueue(
            "task",
            json!("later"),
            EnqueueOptions::new().delay(Duration::from_secs(60)),
        )
        .await;
    let now = h.enqueue("task", json!("now"), EnqueueOptions::new()).await;
    assert_eq!(seen.recv().await.unwrap().1, json!("now"));
    h.client.wait(now, WAIT).await.unwrap();
    assert_eq!(
        h.client.get(later).await.unwrap().state,
        JobState::Scheduled
    );
    h.advance(60).await;
    assert_eq!(seen.recv().await.unwrap().1, json!("later"));
    assert_eq!(
        h.client.wait(later, WAIT).await.unwrap().state,
        JobState::Completed
    );
}

#[tokio::test]
async fn finished_jobs_are_deleted_after_their_retention() {
    let h = Harness::start().await;
    let (worker, _seen) = recording_worker(&h.client, &["default"], 1, echo);
    tokio::spawn(worker.run());
    let id = h
        .enqueue(
            "task",
            Value::Null,
            EnqueueOptions::new().retention(Duration::from_secs(120)),
        )
        .await;
    h.client.wait(id, WAIT).await.unwrap();
    h.advance(119).await;
    assert_eq!(h.client.get(id).await.unwrap().state, JobState::Completed);
    h.advance(1).await;
    assert!(matches!(
        h.client.get(id).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn the_system_clock_drives_real_servers_too() {
    // Guard against tests above passing only because of the manual clock.
    let (store, _database) = common::test_store().await;
    let server = RunningServer::start(store, Arc::new(SystemClock), ServerConfig::default())
        .await
        .unwrap();
    let client = Client::new(server.url(), None).unwrap();
    let (worker, _seen) = recording_worker(&client, &["default"], 2, echo);
    tokio::spawn(worker.run());
    let id = client
        .enqueue_raw(
            "task",
            json!(1),
            EnqueueOptions::new().delay(Duration::from_millis(50)),
        )
        .await
        .unwrap()
        .id;
    let job = client.wait(id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert!(job.started_at.unwrap() >= job.run_at);
    assert!(SystemClock.now() >= job.finished_at.unwrap());
}
