//! `/v1/events`: state changes and progress in order, filters, SSE, and a subscriber that
//! stops reading being cut off without slowing the server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use errands_client::{Client, EnqueueOptions, HandlerError, JobContext, Worker};
use errands_core::event::{Change, Event};
use errands_core::{JobState, SystemClock};
use errands_server::{RunningServer, ServerConfig};
use errands_store_postgres::testing::TestDatabase;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);

/// A server on the test run's backend, a client of it, and its database if it has one
/// (keep it until the test ends).
async fn server() -> (RunningServer, Client, Option<TestDatabase>) {
    let (store, database) = common::test_store().await;
    let server = RunningServer::start(store, Arc::new(SystemClock), ServerConfig::default())
        .await
        .unwrap();
    let client = Client::new(server.url(), None).unwrap();
    (server, client, database)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(server: &RunningServer, query: &str) -> Socket {
    let url = format!("ws://{}/v1/events{query}", server.addr);
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn next_event(socket: &mut Socket) -> Event {
    loop {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

fn progress_worker(client: &Client) -> Worker {
    Worker::builder(client.clone())
        .handle_raw("compile", |ctx: JobContext, _args: Value| async move {
            for percent in [10.0, 50.0, 100.0] {
                ctx.progress(percent, format!("{percent}%")).await;
            }
            Ok::<_, HandlerError>(json!("built"))
        })
        .build()
}

fn describe(event: &Event) -> String {
    match &event.change {
        Change::State { state, .. } => state.to_string(),
        Change::Progress { progress } => format!("progress {}", progress.percent.unwrap_or(-1.0)),
    }
}

#[tokio::test]
async fn a_job_s_events_arrive_in_order_with_rising_sequence_numbers() {
    let (server, client, _database) = server().await;
    let mut socket = subscribe(&server, "?queue=default").await;
    tokio::spawn(progress_worker(&client).run());
    let id = client
        .enqueue_raw("compile", Value::Null, EnqueueOptions::new())
        .await
        .unwrap()
        .id;
    let mut seen = Vec::new();
    let mut last_seq = 0;
    while seen.last().map(String::as_str) != Some("completed") {
        let event = next_event(&mut socket).await;
        assert_eq!(event.id, id);
        assert!(event.seq > last_seq, "sequence numbers rise");
        last_seq = event.seq;
        seen.push(describe(&event));
    }
    assert_eq!(
        seen,
        [
            "queued",
            "running",
            "progress 10",
            "progress 50",
            "progress 100",
            "completed"
        ]
    );
}

#[tokio::test]
async fn filters_keep_out_other_jobs() {
    let (server, client, _database) = server().await;
    let other = client
        .enqueue_raw(
            "other",
            Value::Null,
            EnqueueOptions::new().queue("elsewhere"),
        )
        .await
        .unwrap()
        .id;
    let mut by_queue = subscribe(&server, "?queue=wanted").await;
    let mut by_kind = subscribe(&server, "?kind=wanted-kind").await;
    let mut by_id = subscribe(&server, &format!("?ids={other}")).await;
    client.cancel(other).await.unwrap();
    client
        .enqueue_raw("x", Value::Null, EnqueueOptions::new().queue("elsewhere"))
        .await
        .unwrap();
    let wanted = client
        .enqueue_raw(
            "wanted-kind",
            Value::Null,
            EnqueueOptions::new().queue("wanted"),
        )
        .await
        .unwrap()
        .id;
    assert_eq!(next_event(&mut by_queue).await.id, wanted);
    assert_eq!(next_event(&mut by_kind).await.id, wanted);
    let cancelled = next_event(&mut by_id).await;
    assert_eq!(cancelled.id, other);
    assert_eq!(
        cancelled.change,
        Change::State {
            state: JobState::Cancelled,
            attempt: 0
        }
    );
}

#[tokio::test]
async fn server_sent_events_serve_curl_and_browsers() {
    let (server, client, _database) = server().await;
    let mut response = reqwest::get(format!("{}/v1/events?kind=sse", server.url()))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let id = client
        .enqueue_raw("sse", json!(1), EnqueueOptions::new())
        .await
        .unwrap()
        .id;
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(WAIT, response.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let event: Event = serde_json::from_str(data).unwrap();
    assert_eq!(event.id, id);
    assert!(text.lines().any(|l| l == format!("id: {}", event.seq)));
}

#[tokio::test]
async fn bad_filters_are_refused() {
    let (server, _client, _database) = server().await;
    let response = reqwest::get(format!("{}/v1/events?ids=nope", server.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "ids");
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_cut_off_and_dispatch_goes_on() {
    let (server, client, _database) = server().await;
    let mut stalled = subscribe(&server, "").await;
    // Far more events than the socket buffers and the event buffer hold together.
    for _ in 0..10 {
        let batch = (0..10_000)
            .map(|i| EnqueueOptions::new().request("flood", json!(i)))
            .collect();
        client.enqueue_batch(batch).await.unwrap();
    }
    // Dispatch is unaffected: a worker drains a fresh queue while the subscriber is stalled.
    let worker = Worker::builder(client.clone())
        .queues(["live"])
        .handle_raw("ping", |_ctx: JobContext, _args: Value| async {
            Ok::<_, HandlerError>(json!("pong"))
        })
        .build();
    tokio::spawn(worker.run());
    let id = client
        .enqueue_raw("ping", Value::Null, EnqueueOptions::new().queue("live"))
        .await
        .unwrap()
        .id;
    assert_eq!(
        client.wait(id, WAIT).await.unwrap().state,
        JobState::Completed
    );
    // Now read: after the backlog that fit in the buffers comes a close with the reason.
    let reason = loop {
        match tokio::time::timeout(WAIT, stalled.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(frame)))) => break frame.reason.to_string(),
            Some(Ok(_)) => {}
            other => panic!("stream ended without a close reason: {other:?}"),
        }
    };
    assert!(reason.contains("too slow"), "close reason: {reason}");
}
