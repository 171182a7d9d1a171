//! Crash safety of the real binary: a job whose enqueue was acknowledged survives a SIGKILL of
//! `errands serve --sync full` and is delivered after the restart, a job that was running
//! when the server died is handed out again, and cycles of SIGKILLs of the server and abrupt
//! deaths of workers under load lose no acknowledged job.

#[path = "support/server.rs"]
#[allow(dead_code)] // Shared with the other tests that start servers; this one uses part.
mod server;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use server::{free_port, ServerProcess};

/// Acknowledged jobs to collect before the kill.
const ACKED_BEFORE_KILL: usize = 2000;
/// Concurrent enqueuers.
const ENQUEUERS: usize = 8;
/// Jobs per batch request.
const BATCH: usize = 50;
/// The queue every job of the crash tests goes to.
const QUEUE: &str = "crash";
/// Longest wait for any one condition.
const WAIT: Duration = Duration::from_secs(60);

/// A `errands serve --sync full` process on a database file. Killed (SIGKILL) when dropped.
struct Server(ServerProcess);

impl std::ops::Deref for Server {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.0
    }
}

impl Server {
    /// Starts `errands serve --db <db> --sync full` on a free port and waits until it answers
    /// `/healthz`.
    async fn start(db: &Path) -> Self {
        let log = db.with_extension(format!("{}.log", free_port()));
        let args = [
            OsStr::new("--sync"),
            OsStr::new("full"),
            OsStr::new("--db"),
            db.as_os_str(),
        ];
        Self(ServerProcess::start(None, &args, log).await)
    }

    /// Every job in `queue`, by id, following the list's cursor to the last page.
    async fn jobs_in(&self, http: &reqwest::Client, queue: &str) -> HashMap<String, Value> {
        let mut jobs = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/v1/jobs?queue={queue}&limit=1000", self.url);
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let page: Value = ok_json(http.get(&url).send().await.unwrap()).await;
            for job in page["jobs"].as_array().unwrap() {
                jobs.insert(job["id"].as_str().unwrap().to_owned(), job.clone());
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return jobs,
            }
        }
    }

    async fn job(&self, http: &reqwest::Client, id: &str) -> Value {
        let url = format!("{}/v1/jobs/{id}", self.url);
        ok_json(http.get(url).send().await.unwrap()).await
    }
}

async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// One enqueue request: a single job on even rounds, a batch of [`BATCH`] on odd ones.
/// Returns the acknowledged ids, or the transport error (the server is gone).
async fn enqueue_round(
    http: &reqwest::Client,
    url: &str,
    task: usize,
    round: usize,
) -> reqwest::Result<Vec<String>> {
    // Attempts to spare: in the kill cycles a job may lose its worker or server several times.
    let job = |n: usize| json!({"kind": "crash.test", "queue": QUEUE, "args": [task, round, n], "max_attempts": 50});
    if round % 2 == 1 {
        let jobs: Vec<Value> = (0..BATCH).map(job).collect();
        let response = http
            .post(format!("{url}/v1/jobs/batch"))
            .json(&json!({ "jobs": jobs }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        assert_eq!(status.as_u16(), 201, "{body}");
        Ok(body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect())
    } else {
        let response = http
            .post(format!("{url}/v1/jobs"))
            .json(&job(0))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        assert_eq!(status.as_u16(), 201, "{body}");
        Ok(vec![body["id"].as_str().unwrap().to_owned()])
    }
}

/// Enqueues from [`ENQUEUERS`] tasks until [`ACKED_BEFORE_KILL`] jobs are acknowledged, then
/// SIGKILLs the server while they are still sending. Returns every acknowledged id.
async fn enqueue_until_killed(server: &mut Server) -> HashSet<String> {
    let http = reqwest::Client::new();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let killed = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..ENQUEUERS)
        .map(|task| {
            let (http, url) = (http.clone(), server.url.clone());
            let (acked, count_tx, killed) = (acked.clone(), count_tx.clone(), killed.clone());
            tokio::spawn(async move {
                for round in 0.. {
                    match enqueue_round(&http, &url, task, round).await {
                        Ok(ids) => {
                            let n = ids.len();
                            acked.lock().unwrap().extend(ids);
                            count_tx.send_modify(|count| *count += n);
                        }
                        // The server is gone: expected only after the kill.
                        Err(error) => {
                            assert!(
                                killed.load(Ordering::SeqCst),
                                "enqueue failed before the kill: {error}"
                            );
                            return round;
                        }
                    }
                }
                unreachable!()
            })
        })
        .collect();

    timeout(WAIT, count_rx.wait_for(|n| *n >= ACKED_BEFORE_KILL))
        .await
        .expect("enqueuers too slow, or one failed (see its panic above)")
        .unwrap();
    killed.store(true, Ordering::SeqCst);
    server.kill();

    for task in tasks {
        timeout(WAIT, task).await.unwrap().unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let unique: HashSet<String> = acked.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        acked.len(),
        "the server acknowledged an id twice"
    );
    unique
}

/// A worker speaking the socket protocol directly.
// TODO: errands-client: use its Worker once it can report to this test which ids it ran.
struct RawWorker {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawWorker {
    async fn connect(server: &Server, capacity: u32) -> Self {
        let (mut socket, _) = tokio_tungstenite::connect_async(server.worker_url())
            .await
            .unwrap();
        let hello = json!({"type": "hello", "queues": [QUEUE], "capacity": capacity});
        socket.send(Message::text(hello.to_string())).await.unwrap();
        let mut worker = Self { socket };
        let welcome = worker.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        worker
    }

    /// The next message; panics if none comes within [`WAIT`].
    async fn recv(&mut self) -> Value {
        loop {
            let frame = timeout(WAIT, self.socket.next())
                .await
                .expect("no message from the server in time")
                .expect("the socket closed")
                .unwrap();
            if let Some(message) = parse(frame) {
                return message;
            }
        }
    }

    /// The next message, then every message already waiting.
    async fn recv_ready(&mut self) -> Vec<Value> {
        let mut messages = vec![self.recv().await];
        while let Some(Some(Ok(frame))) = self.socket.next().now_or_never() {
            messages.extend(parse(frame));
        }
        messages
    }

    async fn send(&mut self, message: &Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }
}

fn parse(frame: Message) -> Option<Value> {
    match frame {
        Message::Text(text) => Some(serde_json::from_str(&text).unwrap()),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
        other => panic!("unexpected frame {other:?}"),
    }
}

/// Runs every delivered job until all of `expected` have been delivered, completing each at
/// once. Returns how often each id was delivered.
async fn complete_all(worker: &mut RawWorker, expected: &HashSet<String>) -> HashMap<String, u32> {
    let mut deliveries: HashMap<String, u32> = HashMap::new();
    while !expected.iter().all(|id| deliveries.contains_key(id)) {
        let mut completes = Vec::new();
        for message in worker.recv_ready().await {
            assert_eq!(message["type"], "job", "{message}");
            let id = message["id"].as_str().unwrap().to_owned();
            completes.push(json!({"type": "complete", "id": id, "result": {"done": true}}));
            *deliveries.entry(id).or_default() += 1;
        }
        worker.send(&Value::Array(completes)).await;
    }
    deliveries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_jobs_survive_a_sigkill_and_are_all_delivered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    let http = reqwest::Client::new();

    let mut server = Server::start(&db).await;
    let acked = enqueue_until_killed(&mut server).await;
    assert!(acked.len() >= ACKED_BEFORE_KILL);

    let server = Server::start(&db).await;
    let stored = server.jobs_in(&http, QUEUE).await;
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged jobs are gone after the crash, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    for id in &acked {
        assert_eq!(stored[id]["state"], "queued", "{}", stored[id]);
    }
    // A batch is one transaction: the crash may lose an unacknowledged batch, never half of one.
    let mut per_request: HashMap<(u64, u64), usize> = HashMap::new();
    for job in stored.values() {
        let (task, round) = (
            job["args"][0].as_u64().unwrap(),
            job["args"][1].as_u64().unwrap(),
        );
        *per_request.entry((task, round)).or_default() += 1;
    }
    for ((task, round), count) in per_request {
        let expected = if round % 2 == 1 { BATCH } else { 1 };
        assert_eq!(
            count, expected,
            "request {round} of enqueuer {task} is half stored"
        );
    }
    eprintln!(
        "{} jobs acknowledged before the kill, {} stored after the restart",
        acked.len(),
        stored.len()
    );

    let mut worker = RawWorker::connect(&server, 100).await;
    let deliveries = complete_all(&mut worker, &acked).await;
    let twice: Vec<_> = deliveries.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");

    // Completions are not acknowledged on the socket: poll until the store shows them all.
    let deadline = Instant::now() + WAIT;
    loop {
        let jobs = server.jobs_in(&http, QUEUE).await;
        let pending = acked
            .iter()
            .filter(|id| jobs[*id]["state"] != "completed")
            .count();
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} acknowledged jobs never completed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_running_when_the_server_is_sigkilled_is_delivered_again_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    let http = reqwest::Client::new();

    let mut server = Server::start(&db).await;
    let mut first_worker = RawWorker::connect(&server, 1).await;
    let enqueued: Value = ok_json(
        http.post(format!("{}/v1/jobs", server.url))
            .json(&json!({"kind": "crash.lease", "queue": QUEUE, "args": {"n": 7}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = enqueued["id"].as_str().unwrap().to_owned();
    let delivery = first_worker.recv().await;
    assert_eq!(delivery["type"], "job", "{delivery}");
    assert_eq!(delivery["id"], id);
    assert_eq!(delivery["attempt"], 1);
    assert_eq!(server.job(&http, &id).await["state"], "running");

    // The worker never completes it: the server dies under it.
    server.kill();
    drop(first_worker);

    let server = Server::start(&db).await;
    let job = server.job(&http, &id).await;
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["attempt"], 1, "{job}");
    assert_eq!(job["worker_id"], Value::Null, "{job}");
    let errors = job["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{job}");
    assert_eq!(errors[0]["type"], "WorkerLost", "{job}");
    assert_eq!(errors[0]["attempt"], 1, "{job}");

    let mut second_worker = RawWorker::connect(&server, 1).await;
    let delivery = second_worker.recv().await;
    assert_eq!(delivery["type"], "job", "{delivery}");
    assert_eq!(delivery["id"], id);
    assert_eq!(delivery["attempt"], 2);
    assert_eq!(delivery["args"], json!({"n": 7}));
    second_worker
        .send(&json!({"type": "complete", "id": id, "result": "second time lucky"}))
        .await;

    let deadline = Instant::now() + WAIT;
    loop {
        let job = server.job(&http, &id).await;
        if job["state"] == "completed" {
            assert_eq!(job["result"], "second time lucky");
            assert_eq!(job["attempt"], 2);
            break;
        }
        assert!(Instant::now() < deadline, "never completed: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kill cycles: server SIGKILLs and worker deaths while enqueuers and workers run.
const CYCLES: usize = 10;
/// Jobs acknowledged in each cycle before a worker dies, and again before the server does.
const ACKED_PER_STEP: usize = 300;
/// Workers running through the cycles.
const CYCLE_WORKERS: usize = 3;

/// What the kill cycles share: the current server's URL, the acknowledged ids, and how often
/// each job was delivered.
#[derive(Clone)]
struct Cycling {
    url: watch::Receiver<String>,
    acked: Arc<Mutex<HashSet<String>>>,
    acked_count: Arc<watch::Sender<usize>>,
    deliveries: Arc<Mutex<HashMap<String, u32>>>,
    stop: Arc<AtomicBool>,
}

impl Cycling {
    /// Waits for the next server after this one died.
    async fn next_server(&mut self) {
        // An error means the test is over (the sender is gone).
        let _ = self.url.changed().await;
    }

    async fn acked_at_least(&self, n: usize) {
        let mut count = self.acked_count.subscribe();
        timeout(WAIT, count.wait_for(|acked| *acked >= n))
            .await
            .expect("enqueues stalled")
            .unwrap();
    }
}

/// Enqueues until stopped; a request the dying server never answered is simply not counted.
async fn enqueue_through_kills(mut cycling: Cycling, task: usize) {
    let http = reqwest::Client::new();
    for round in 0.. {
        if cycling.stop.load(Ordering::SeqCst) {
            return;
        }
        let url = cycling.url.borrow_and_update().clone();
        match enqueue_round(&http, &url, task, round).await {
            Ok(ids) => {
                let n = ids.len();
                cycling.acked.lock().unwrap().extend(ids);
                cycling.acked_count.send_modify(|count| *count += n);
            }
            Err(_) => cycling.next_server().await,
        }
    }
}

/// A worker that completes what it gets, follows the server through restarts, and dies (drops
/// its socket with jobs in hand, as a killed process does) whenever `die` is notified.
async fn work_through_kills(mut cycling: Cycling, die: Arc<tokio::sync::Notify>) {
    loop {
        let url = cycling.url.borrow_and_update().clone();
        let worker_url = format!("{}/v1/worker", url.replace("http://", "ws://"));
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&worker_url).await else {
            cycling.next_server().await;
            continue;
        };
        let hello = json!({"type": "hello", "queues": [QUEUE], "capacity": 20});
        if socket.send(Message::text(hello.to_string())).await.is_err() {
            continue;
        }
        loop {
            let frame = tokio::select! {
                frame = socket.next() => frame,
                () = die.notified() => break,
            };
            let Some(Ok(frame)) = frame else {
                break; // the server died: reconnect to the next one
            };
            let Some(message) = parse(frame) else {
                continue;
            };
            if message["type"] != "job" {
                continue;
            }
            let id = message["id"].as_str().unwrap().to_owned();
            *cycling
                .deliveries
                .lock()
                .unwrap()
                .entry(id.clone())
                .or_default() += 1;
            let complete = json!({"type": "complete", "id": id, "result": null});
            if socket
                .send(Message::text(complete.to_string()))
                .await
                .is_err()
            {
                break;
            }
        }
        if cycling.stop.load(Ordering::SeqCst) && cycling.url.has_changed().is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_cycles_of_server_and_workers_under_load_lose_no_acknowledged_job() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.db");
    let http = reqwest::Client::new();
    let mut server = Server::start(&db).await;
    let (url_tx, url) = watch::channel(server.url.clone());
    let cycling = Cycling {
        url,
        acked: Arc::default(),
        acked_count: Arc::new(watch::channel(0).0),
        deliveries: Arc::default(),
        stop: Arc::default(),
    };
    let enqueuers: Vec<_> = (0..ENQUEUERS)
        .map(|task| tokio::spawn(enqueue_through_kills(cycling.clone(), task)))
        .collect();
    let deaths: Vec<_> = (0..CYCLE_WORKERS)
        .map(|_| Arc::new(tokio::sync::Notify::new()))
        .collect();
    let workers: Vec<_> = deaths
        .iter()
        .map(|die| tokio::spawn(work_through_kills(cycling.clone(), die.clone())))
        .collect();

    let mut target = 0;
    for cycle in 0..CYCLES {
        target += ACKED_PER_STEP;
        cycling.acked_at_least(target).await;
        deaths[cycle % CYCLE_WORKERS].notify_one();
        target += ACKED_PER_STEP;
        cycling.acked_at_least(target).await;
        server.kill();
        server = Server::start(&db).await;
        url_tx.send(server.url.clone()).unwrap();
    }
    cycling.stop.store(true, Ordering::SeqCst);
    for enqueuer in enqueuers {
        timeout(WAIT, enqueuer).await.unwrap().unwrap();
    }

    let acked = cycling.acked.lock().unwrap().clone();
    let deadline = Instant::now() + WAIT;
    loop {
        let jobs = server.jobs_in(&http, QUEUE).await;
        let missing = acked.iter().filter(|id| !jobs.contains_key(*id)).count();
        assert_eq!(missing, 0, "acknowledged jobs were lost");
        let unfinished: Vec<&Value> = acked
            .iter()
            .map(|id| &jobs[id])
            .filter(|job| job["state"] != "completed")
            .collect();
        if unfinished.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged jobs never completed, e.g. {}",
            unfinished.len(),
            unfinished[0]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(url_tx);
    for worker in workers {
        worker.abort();
    }
    let deliveries = cycling.deliveries.lock().unwrap();
    let twice = deliveries.values().filter(|n| **n > 1).count();
    eprintln!(
        "{CYCLES} cycles: {} jobs acknowledged, all completed; {} delivered more than once \
         ({:.2} %, as at-least-once allows)",
        acked.len(),
        twice,
        100.0 * twice as f64 / acked.len() as f64
    );
}
