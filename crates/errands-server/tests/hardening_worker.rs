//! Hostile and careless parties on the sockets: a worker that stops reading while it is sent
//! large jobs, an event subscriber that stops reading, oversized progress, a hello naming bad
//! or very many queues, and messages sharing the hello's frame.
//!
//! The stalled parties connect with a tiny receive buffer, so the server's writes back up after
//! a few kilobytes rather than after the megabytes loopback buffers hold. Nothing here sleeps
//! to synchronise: waits poll what the server exposes (`/v1/workers`, the event hub's counts)
//! under a deadline, and the server's timeouts are set short.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{RawWorker, TestServer, WAIT};
use errands_server::{EventLimits, ServerConfig, WorkerLimits};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Bytes of job frames the server may queue for one worker in these tests.
const OUTBOUND_BYTES: usize = 256 << 10;
/// Bytes of events the server may queue for one subscriber in these tests.
const SUBSCRIBER_BYTES: usize = 1 << 20;

fn config() -> ServerConfig {
    ServerConfig {
        worker: WorkerLimits {
            write_timeout: Duration::from_millis(300),
            ping_every: Duration::from_millis(100),
            // Long enough that a busy test never looks silent; the stalled worker is found out
            // by its writes first.
            silence_limit: Duration::from_secs(5),
            outbound_bytes: OUTBOUND_BYTES,
            ..WorkerLimits::default()
        },
        events: EventLimits {
            subscriber_bytes: SUBSCRIBER_BYTES,
            write_timeout: Duration::from_millis(300),
            ..EventLimits::default()
        },
        ..ServerConfig::default()
    }
}

type Socket = WebSocketStream<TcpStream>;

/// A WebSocket on `path` whose receive buffer is as small as the system allows, so a peer
/// that never reads it backs the server's writes up quickly.
async fn stalling_socket(addr: SocketAddr, path: &str) -> Socket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}{path}");
    tokio_tungstenite::client_async(url, stream)
        .await
        .unwrap()
        .0
}

/// The next text frame as JSON, within [`WAIT`].
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = timeout(WAIT, socket.next()).await.expect("a frame in time");
        match frame.expect("socket open").expect("frame") {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            _ => continue,
        }
    }
}

/// Reads until the socket ends; true if it did within [`WAIT`] (a close or a reset both count).
async fn ends(socket: &mut Socket) -> bool {
    let deadline = Instant::now() + WAIT;
    while let Ok(frame) = tokio::time::timeout_at(deadline, socket.next()).await {
        match frame {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
            Some(Ok(_)) => {}
        }
    }
    false
}

/// Polls `check` until it returns `Some`, failing the test after [`WAIT`].
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        // A poll interval, not a guess at how long something takes: the deadline decides.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn workers(s: &TestServer) -> Vec<Value> {
    let (_, body) = s.get("/v1/workers").await;
    body["workers"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_worker_that_stops_reading_is_cut_off_its_memory_bounded_and_its_jobs_redelivered() {
    let s = TestServer::with_config(config()).await;
    let mut stalled = stalling_socket(s.server.addr, "/v1/worker").await;
    let hello = json!({"type": "hello", "queues": ["big"], "capacity": 50, "name": "stalled"});
    stalled
        .send(Message::text(hello.to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut stalled).await["type"], "welcome");
    // From here on the stalled worker reads nothing. Each job is ~200 KiB of args.
    let args = json!({"blob": "x".repeat(200 << 10)});
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(
            s.enqueue(json!({"kind": "big", "queue": "big", "args": args}))
                .await,
        );
    }
    // While it is listed, what the server holds for it stays within the bound (plus the one
    // frame that may cross it); then it is cut off.
    let bound = OUTBOUND_BYTES + (256 << 10);
    eventually("the stalled worker is cut off", || async {
        let listed = workers(&s).await;
        let stalled = listed.iter().find(|w| w["name"] == "stalled");
        if let Some(worker) = stalled {
            let held = worker["outbound_bytes"].as_u64().unwrap() as usize;
            assert!(held <= bound, "{held} bytes queued for a stalled worker");
        }
        stalled.is_none().then_some(())
    })
    .await;
    assert!(
        ends(&mut stalled).await,
        "the stalled worker's socket was closed"
    );

    // Every job reaches a worker that reads, including those the stalled one held.
    let mut healthy = s
        .worker(json!({"type": "hello", "queues": ["big"], "capacity": 50}))
        .await;
    for _ in 0..ids.len() {
        let job = healthy.recv_type("job").await;
        healthy
            .send_json(&json!({"type": "complete", "id": job["id"]}))
            .await;
    }
    for id in &ids {
        s.wait_for_state(id, "completed").await;
    }
}

/// Sends one progress report with `data`.
async fn progress(worker: &mut RawWorker, id: &Value, data: Value) {
    let report = json!({"type": "progress", "id": id, "percent": 50, "data": data});
    worker.send_json(&report).await;
}

/// Reads `socket` until a progress event for job `id` whose data carries `n`.
async fn saw_progress(socket: &mut Socket, id: &Value, n: u64) {
    loop {
        let event = next_json(socket).await;
        if event["id"] == *id && event["progress"]["data"]["n"] == n {
            return;
        }
    }
}

#[tokio::test]
async fn an_event_subscriber_that_stops_reading_is_cut_off_and_its_memory_freed() {
    let s = TestServer::with_config(config()).await;
    let hub = s.server.engine.events();
    let mut stalled = stalling_socket(s.server.addr, "/v1/events").await;
    let mut reading = stalling_socket(s.server.addr, "/v1/events").await;
    eventually("both subscribers are registered", || async {
        (hub.subscribers() == 2).then_some(())
    })
    .await;
    let mut worker = s
        .worker(json!({"type": "hello", "queues": ["p"], "capacity": 1}))
        .await;
    let id = Value::from(s.enqueue(json!({"kind": "report", "queue": "p"})).await);
    assert_eq!(worker.recv_type("job").await["id"], id);
    // Progress in lockstep with the reading subscriber, until the stalled one is cut off
    // (for its backlog, or for a write that made no progress).
    let pad = "y".repeat(16 << 10);
    let mut n = 0;
    while hub.subscribers() == 2 {
        n += 1;
        assert!(n < 5_000, "the stalled subscriber was never cut off");
        progress(&mut worker, &id, json!({"n": n, "pad": pad})).await;
        saw_progress(&mut reading, &id, n).await;
        let buffered = hub.buffered_bytes();
        assert!(
            buffered <= 2 * SUBSCRIBER_BYTES,
            "{buffered} bytes of events held"
        );
    }
    assert_eq!(
        hub.subscribers(),
        1,
        "only the stalled subscriber was cut off"
    );
    assert!(
        hub.buffered_bytes() <= SUBSCRIBER_BYTES,
        "what waited for it was freed"
    );
    // The one that reads is still served.
    progress(&mut worker, &id, json!({"n": 0})).await;
    saw_progress(&mut reading, &id, 0).await;
    assert!(
        ends(&mut stalled).await,
        "the stalled subscriber's socket was closed"
    );
    // Leaving frees everything held for a subscriber.
    drop(reading);
    eventually("the last subscriber is gone", || async {
        (hub.subscribers() == 0 && hub.buffered_bytes() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn oversized_progress_data_is_refused_with_a_clear_error() {
    let s = TestServer::with_config(config()).await;
    let mut worker = s
        .worker(json!({"type": "hello", "queues": ["p"], "capacity": 1}))
        .await;
    let id = Value::from(s.enqueue(json!({"kind": "report", "queue": "p"})).await);
    worker.recv_type("job").await;
    let limit = WorkerLimits::default().max_progress_data_bytes;
    progress(&mut worker, &id, json!({"pad": "z".repeat(limit)})).await;
    let reply = worker.recv_type("error").await;
    assert_eq!(reply["id"], id);
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains("data") && message.contains(&limit.to_string()),
        "{message}"
    );
    assert_eq!(s.job(id.as_str().unwrap()).await["progress"], Value::Null);
    // A report within the limit still counts.
    progress(&mut worker, &id, json!({"ok": true})).await;
    let data = eventually("the progress within the limit is stored", || async {
        let job = s.job(id.as_str().unwrap()).await;
        (!job["progress"].is_null()).then(|| job["progress"]["data"].clone())
    })
    .await;
    assert_eq!(data, json!({"ok": true}));
}

/// Sends `hello` on a new socket and returns the error the server answers with, after which
/// the socket must close.
async fn refused_hello(s: &TestServer, hello: Value) -> String {
    let mut worker = RawWorker::connect(&s.worker_url(), None).await;
    worker.send_json(&hello).await;
    let reply = worker.recv_type("error").await;
    worker.expect_closed().await;
    reply["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn hello_queue_names_are_checked_like_an_enqueue_s() {
    let s = TestServer::start().await;
    for bad in ["", "\u{0}", "\u{200B}\u{200B}", &"q".repeat(201)] {
        let hello = json!({"type": "hello", "queues": ["ok", bad], "capacity": 1});
        let message = refused_hello(&s, hello).await;
        assert!(
            message.starts_with("queues[1]: queue"),
            "{bad:?}: {message}"
        );
    }
    let many: Vec<String> = (0..1001).map(|i| format!("q{i}")).collect();
    let message = refused_hello(&s, json!({"type": "hello", "queues": many, "capacity": 1})).await;
    assert!(message.contains("at most 1000"), "{message}");
    assert_eq!(
        s.server.engine.signals().watched(),
        0,
        "refused hellos leave nothing"
    );
}

#[tokio::test]
async fn a_worker_s_queues_are_forgotten_with_the_last_connection_that_named_them() {
    let s = TestServer::start().await;
    let signals = s.server.engine.signals();
    let mut own: Vec<String> = (0..500).map(|i| format!("only-mine-{i}")).collect();
    own.push("shared".into());
    let leaving = s
        .worker(json!({"type": "hello", "queues": own, "capacity": 1}))
        .await;
    let mut staying = s
        .worker(json!({"type": "hello", "queues": ["shared"], "capacity": 1}))
        .await;
    assert_eq!(signals.watched(), 501);
    drop(leaving);
    eventually("the leaving worker's own queues are forgotten", || async {
        (signals.watched() == 1).then_some(())
    })
    .await;
    // The queue both named still wakes the worker that stays.
    let id = s.enqueue(json!({"kind": "k", "queue": "shared"})).await;
    assert_eq!(staying.recv_type("job").await["id"], id);
    drop(staying);
    eventually("every queue is forgotten", || async {
        (signals.watched() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn messages_sharing_the_hello_s_frame_are_handled() {
    let s = TestServer::start().await;
    let mut worker = RawWorker::connect(&s.worker_url(), None).await;
    let stranger = uuid_like();
    let frame = json!([
        {"type": "hello", "queues": ["q"], "capacity": 1},
        {"type": "capacity", "capacity": 3},
        {"type": "complete", "id": stranger},
    ]);
    worker.send_json(&frame).await;
    worker.recv_type("welcome").await;
    let reply = worker.recv_type("error").await;
    assert_eq!(
        reply["id"], stranger,
        "the complete after hello was read: {reply}"
    );
    // The capacity after hello counts: three jobs are pushed at once.
    for _ in 0..3 {
        s.enqueue(json!({"kind": "k", "queue": "q"})).await;
    }
    for _ in 0..3 {
        worker.recv_type("job").await;
    }
}

/// A job id no job has.
fn uuid_like() -> String {
    "01900000-0000-7000-8000-000000000000".into()
}

/// A worker that goes silent (a stopped process: it neither reads nor answers pings) is lost
/// once it has been silent for the limit, on a timer of its own: here the pings are far apart,
/// and the job is back long before the next one would have been sent.
#[tokio::test]
async fn a_silent_worker_loses_its_jobs_at_the_silence_limit_not_at_the_next_ping() {
    let silence = Duration::from_millis(600);
    let ping_every = Duration::from_secs(30);
    let s = TestServer::with_config(ServerConfig {
        worker: WorkerLimits {
            ping_every,
            silence_limit: silence,
            ..WorkerLimits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    // The server hears nothing from the worker before this instant, so it may not release its
    // job before `silence` has passed from here.
    let connecting = Instant::now();
    let mut stalled = s
        .worker(json!({"type": "hello", "queues": ["q"], "capacity": 1}))
        .await;
    let id = s.enqueue(json!({"kind": "slow", "queue": "q"})).await;
    stalled.recv_type("job").await;

    let job = eventually("the stalled worker's job is queued again", || async {
        let job = s.job(&id).await;
        (job["state"] == "queued").then_some(job)
    })
    .await;
    let took = connecting.elapsed();
    assert_eq!(job["errors"][0]["type"], "WorkerLost", "{job}");
    assert!(
        took >= silence,
        "released {took:?} after connecting: not silent long enough"
    );
    assert!(
        took < ping_every / 4,
        "released after {took:?}: waited for a ping tick"
    );
}
