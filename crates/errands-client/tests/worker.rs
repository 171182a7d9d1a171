//! The SDK against a real server: typed jobs, retries, failures, cancellation, timeouts,
//! panics, graceful shutdown and a server restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use errands_client::worker::Retry;
use errands_client::{
    Backoff, Client, EnqueueOptions, Error, HandlerError, Job, JobContext, JobState, Worker,
};
use errands_core::SystemClock;
use errands_server::{RunningServer, ServerConfig};
use errands_store::sqlite::SqliteOptions;
use errands_store::SqliteStore;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

async fn server() -> RunningServer {
    let store = Arc::new(SqliteStore::temporary().unwrap());
    RunningServer::start(store, Arc::new(SystemClock), ServerConfig::default())
        .await
        .unwrap()
}

fn client(server: &RunningServer) -> Client {
    Client::new(server.url(), None).unwrap()
}

#[derive(Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

impl Job for Add {
    const KIND: &'static str = "math.add";
    type Output = i64;
}

async fn add(_ctx: JobContext, job: Add) -> Result<i64, HandlerError> {
    Ok(job.a + job.b)
}

/// A job whose handler hands its cancellation token to the test, then waits forever.
#[derive(Serialize, Deserialize)]
struct Hang;

impl Job for Hang {
    const KIND: &'static str = "hang";
    type Output = ();
}

async fn hang(ctx: JobContext, _job: Hang) -> Result<(), HandlerError> {
    let tokens = ctx
        .state::<mpsc::UnboundedSender<CancellationToken>>()
        .unwrap();
    tokens.send(ctx.cancellation().clone()).unwrap();
    std::future::pending().await
}

fn spawn(worker: Worker) -> tokio::task::JoinHandle<Result<(), Error>> {
    tokio::spawn(worker.run())
}

#[tokio::test]
async fn typed_round_trip() {
    let server = server().await;
    let client = client(&server);
    let worker = Worker::builder(client.clone()).handle(add).build();
    let stop = worker.shutdown_handle();
    let running = spawn(worker);
    let handle = client.enqueue(&Add { a: 2, b: 40 }).await.unwrap();
    assert_eq!(client.result(&handle, WAIT).await.unwrap(), 42);
    stop.shutdown();
    running.await.unwrap().unwrap();
}

#[derive(Serialize, Deserialize)]
struct Flaky;

impl Job for Flaky {
    const KIND: &'static str = "flaky";
    type Output = u32;

    fn options() -> EnqueueOptions {
        EnqueueOptions::new().backoff(Backoff::None).max_attempts(3)
    }
}

#[tokio::test]
async fn retry_then_success() {
    let server = server().await;
    let client = client(&server);
    let worker = Worker::builder(client.clone())
        .handle(|ctx: JobContext, _: Flaky| async move {
            if ctx.attempt < 2 {
                return Err(HandlerError::new("Transient", "try again"));
            }
            Ok(ctx.attempt)
        })
        .build();
    let _running = spawn(worker);
    let handle = client.enqueue(&Flaky).await.unwrap();
    assert_eq!(client.result(&handle, WAIT).await.unwrap(), 2);
    let job = client.get(handle.id).await.unwrap();
    assert_eq!(job.errors.len(), 1);
    assert_eq!(job.errors[0].kind, "Transient");
    assert_eq!(job.errors[0].attempt, 1);
}

#[tokio::test]
async fn retry_after_schedules_the_next_attempt() {
    let server = server().await;
    let client = client(&server);
    let worker = Worker::builder(client.clone())
        .handle(|ctx: JobContext, _: Flaky| async move {
            if ctx.attempt == 1 {
                let error = HandlerError::new("RateLimited", "429");
                return Err(error.with_retry(Retry::After(Duration::from_millis(300))));
            }
            Ok(ctx.attempt)
        })
        .build();
    let _running = spawn(worker);
    let handle = client.enqueue(&Flaky).await.unwrap();
    assert_eq!(client.result(&handle, WAIT).await.unwrap(), 2);
    let job = client.get(handle.id).await.unwrap();
    // The store keeps job times in whole milliseconds (run_at and started_at are cut down to
    // them) and the attempt's error time exactly, so allow for the cut.
    let waited = job.started_at.unwrap() - job.errors[0].at;
    assert!(
        waited > chrono::Duration::milliseconds(299),
        "retried after {waited}"
    );
}

#[tokio::test]
async fn permanent_failure_goes_to_dead() {
    let server = server().await;
    let client = client(&server);
    let worker = Worker::builder(client.clone())
        .handle(|_: JobContext, _: Flaky| async move {
            Err::<u32, _>(HandlerError::permanent("BadInput", "no such file"))
        })
        .build();
    let _running = spawn(worker);
    let handle = client.enqueue(&Flaky).await.unwrap();
    match client.result(&handle, WAIT).await {
        Err(Error::JobFailed(job)) => {
            assert_eq!(job.state, JobState::Dead);
            assert_eq!(job.attempt, 1, "a permanent error is not retried");
            assert_eq!(job.errors[0].kind, "BadInput");
        }
        other => panic!("expected a dead job, got {other:?}"),
    }
}

#[tokio::test]
async fn cancel_reaches_the_running_handler() {
    let server = server().await;
    let client = client(&server);
    let (tokens_tx, mut tokens) = mpsc::unbounded_channel::<CancellationToken>();
    let worker = Worker::builder(client.clone())
        .state(tokens_tx)
        .handle(hang)
        .build();
    let _running = spawn(worker);
    let handle = client.enqueue(&Hang).await.unwrap();
    let token = tokens.recv().await.unwrap();
    assert!(!token.is_cancelled());
    let cancelled = client.cancel(handle.id).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    tokio::time::timeout(WAIT, token.cancelled()).await.unwrap();
    assert!(matches!(
        client.result(&handle, WAIT).await,
        Err(Error::JobCancelled(_))
    ));
}

#[tokio::test]
async fn timeout_aborts_the_handler_and_fails_the_attempt() {
    let server = server().await;
    let client = client(&server);
    let (tokens_tx, mut tokens) = mpsc::unbounded_channel::<CancellationToken>();
    let worker = Worker::builder(client.clone())
        .state(tokens_tx)
        .handle(hang)
        .build();
    let _running = spawn(worker);
    let options = EnqueueOptions::new()
        .timeout(Duration::from_millis(200))
        .max_attempts(1);
    let handle = client.enqueue_with(&Hang, options).await.unwrap();
    let token = tokens.recv().await.unwrap();
    tokio::time::timeout(WAIT, token.cancelled()).await.unwrap();
    match client.result(&handle, WAIT).await {
        Err(Error::JobFailed(job)) => assert_eq!(job.errors[0].kind, "Timeout"),
        other => panic!("expected a timed-out job, got {other:?}"),
    }
}

#[derive(Serialize, Deserialize)]
struct MaybePanic {
    panic: bool,
}

impl Job for MaybePanic {
    const KIND: &'static str = "maybe_panic";
    type Output = String;

    fn options() -> EnqueueOptions {
        EnqueueOptions::new().max_attempts(1)
    }
}

#[tokio::test]
async fn a_panicking_handler_fails_its_job_and_the_worker_goes_on() {
    let server = server().await;
    let client = client(&server);
    let worker = Worker::builder(client.clone())
        .capacity(1)
        .handle(|_: JobContext, job: MaybePanic| async move {
            assert!(!job.panic, "boom");
            Ok("fine".to_owned())
        })
        .build();
    let _running = spawn(worker);
    let bad = client.enqueue(&MaybePanic { panic: true }).await.unwrap();
    let good = client.enqueue(&MaybePanic { panic: false }).await.unwrap();
    match client.result(&bad, WAIT).await {
        Err(Error::JobFailed(job)) => {
            assert_eq!(job.errors[0].kind, "Panic");
            assert!(job.errors[0].message.contains("boom"));
        }
        other => panic!("expected the panicking job to fail, got {other:?}"),
    }
    assert_eq!(client.result(&good, WAIT).await.unwrap(), "fine");
}

#[derive(Serialize, Deserialize)]
struct Gated(u32);

impl Job for Gated {
    const KIND: &'static str = "gated";
    type Output = u32;
}

#[tokio::test]
async fn graceful_shutdown_finishes_jobs_in_flight_and_takes_no_new_ones() {
    let server = server().await;
    let client = client(&server);
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel::<u32>();
    let worker = Worker::builder(client.clone())
        .capacity(2)
        .state((gate.clone(), started_tx))
        .handle(|ctx: JobContext, job: Gated| async move {
            let (gate, started) = ctx
                .state::<(Arc<Semaphore>, mpsc::UnboundedSender<u32>)>()
                .unwrap();
            started.send(job.0).unwrap();
            gate.acquire().await.unwrap().forget();
            Ok(job.0)
        })
        .build();
    let stop = worker.shutdown_handle();
    let running = spawn(worker);
    let first = client.enqueue(&Gated(1)).await.unwrap();
    let second = client.enqueue(&Gated(2)).await.unwrap();
    let mut seen = HashSet::new();
    seen.insert(started.recv().await.unwrap());
    seen.insert(started.recv().await.unwrap());
    assert_eq!(seen, HashSet::from([1, 2]));
    stop.shutdown();
    // The shutdown sends capacity 0 before the gate opens: a job enqueued now is not taken.
    // Wait until the server has seen it by enqueueing after a round trip of our own.
    gate.add_permits(2);
    running.await.unwrap().unwrap();
    let late = client.enqueue(&Gated(3)).await.unwrap();
    assert_eq!(client.result(&first, WAIT).await.unwrap(), 1);
    assert_eq!(client.result(&second, WAIT).await.unwrap(), 2);
    assert_eq!(client.get(late.id).await.unwrap().state, JobState::Queued);
}

#[tokio::test]
async fn a_server_restart_mid_run_loses_no_job() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("errands.db");
    let open = || Arc::new(SqliteStore::open(&db, SqliteOptions::default()).unwrap());
    let first = RunningServer::start(open(), Arc::new(SystemClock), ServerConfig::default())
        .await
        .unwrap();
    let addr = first.addr;
    let client = Client::new(first.url(), None).unwrap();
    let (done_tx, mut done) = mpsc::unbounded_channel::<i64>();
    let worker = Worker::builder(client.clone())
        .capacity(4)
        .state(done_tx)
        .handle(|ctx: JobContext, job: Add| async move {
            ctx.state::<mpsc::UnboundedSender<i64>>()
                .unwrap()
                .send(job.a)
                .unwrap();
            Ok(job.a + job.b)
        })
        .build();
    let _running = spawn(worker);
    let mut handles = Vec::new();
    for a in 0..60 {
        handles.push(client.enqueue(&Add { a, b: 1 }).await.unwrap());
    }
    for _ in 0..10 {
        done.recv().await.unwrap();
    }
    drop(first);
    let second = start_again(addr, open()).await;
    for (a, handle) in handles.iter().enumerate() {
        assert_eq!(client.result(handle, WAIT).await.unwrap(), a as i64 + 1);
    }
    drop(second);
}

/// Binds the old address again, retrying while the old listener is still being torn down.
async fn start_again(addr: std::net::SocketAddr, store: Arc<SqliteStore>) -> RunningServer {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match RunningServer::start_at(
            addr,
            store.clone(),
            Arc::new(SystemClock),
            ServerConfig::default(),
        )
        .await
        {
            Ok(server) => return server,
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "port still busy");
                tokio::task::yield_now().await;
            }
            Err(error) => panic!("cannot restart the server: {error}"),
        }
    }
}

/// A job that runs once on a worker that hangs and once on one that returns at once.
#[derive(Serialize, Deserialize)]
struct Interruptible;

impl Job for Interruptible {
    const KIND: &'static str = "interruptible";
    type Output = u32;
}

#[tokio::test]
async fn a_job_past_the_grace_period_goes_back_without_using_an_attempt() {
    let server = server().await;
    let client = client(&server);
    let (tokens_tx, mut tokens) = mpsc::unbounded_channel::<CancellationToken>();
    let stopping = Worker::builder(client.clone())
        .grace_period(Duration::from_millis(200))
        .state(tokens_tx)
        .handle(|ctx: JobContext, _job: Interruptible| async move {
            let tokens = ctx
                .state::<mpsc::UnboundedSender<CancellationToken>>()
                .unwrap();
            tokens.send(ctx.cancellation().clone()).unwrap();
            std::future::pending().await
        })
        .build();
    let stop = stopping.shutdown_handle();
    let running = spawn(stopping);
    let handle = client.enqueue(&Interruptible).await.unwrap();
    let token = tokens.recv().await.unwrap();
    stop.shutdown();
    tokio::time::timeout(WAIT, running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(token.is_cancelled(), "the handler was stopped");

    let next = Worker::builder(client.clone())
        .handle(|ctx: JobContext, _job: Interruptible| async move { Ok(ctx.attempt) })
        .build();
    let _next = spawn(next);
    // The next worker runs it as attempt 1 again: the interrupted attempt was not counted.
    assert_eq!(client.result(&handle, WAIT).await.unwrap(), 1);
    let done = client.get(handle.id).await.unwrap();
    assert_eq!((done.state, done.attempt), (JobState::Completed, 1));
    assert!(
        done.errors.is_empty(),
        "no failure recorded: {:?}",
        done.errors
    );
}

/// A job that takes longer than the server's silence timeout, without reporting anything.
#[derive(Serialize, Deserialize)]
struct Long;

impl Job for Long {
    const KIND: &'static str = "long";
    type Output = u32;
}

#[tokio::test]
async fn a_busy_worker_answers_pings_and_keeps_its_connection() {
    let store = Arc::new(SqliteStore::temporary().unwrap());
    let config = ServerConfig {
        worker: errands_server::WorkerLimits {
            ping_every: Duration::from_millis(50),
            silence_limit: Duration::from_millis(300),
            ..errands_server::WorkerLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = RunningServer::start(store, Arc::new(SystemClock), config)
        .await
        .unwrap();
    let client = client(&server);
    let worker = Worker::builder(client.clone())
        .handle(|ctx: JobContext, _job: Long| async move {
            // Four silence timeouts without a report: only the socket reader's pongs keep
            // the connection.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            Ok(ctx.attempt)
        })
        .build();
    let _running = spawn(worker);
    let handle = client.enqueue(&Long).await.unwrap();
    assert_eq!(client.result(&handle, WAIT).await.unwrap(), 1);
    let done = client.get(handle.id).await.unwrap();
    assert!(
        done.errors.is_empty(),
        "the worker was lost: {:?}",
        done.errors
    );
}
