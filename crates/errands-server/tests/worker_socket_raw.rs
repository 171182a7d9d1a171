//! Abuse of the worker socket, frame by frame: garbage gets an `error` message, and only a bad
//! first message ends the connection.

mod common;

use common::{time, RawWorker, TestServer};
use serde_json::{json, Value};

fn hello() -> Value {
    json!({"type": "hello", "queues": ["q"], "capacity": 1})
}

fn error_text(message: &Value) -> &str {
    assert_eq!(message["type"], "error", "{message}");
    message["message"].as_str().unwrap()
}

#[tokio::test]
async fn a_first_message_other_than_hello_gets_an_error_and_the_socket_closes() {
    let s = TestServer::start().await;
    let mut worker = RawWorker::connect(&s.worker_url(), None).await;
    worker
        .send_json(&json!({"type": "capacity", "capacity": 3}))
        .await;
    let reply = worker.recv().await;
    assert!(error_text(&reply).contains("hello"), "{reply}");
    worker.expect_closed().await;
}

#[tokio::test]
async fn a_first_frame_that_is_not_json_gets_an_error_and_the_socket_closes() {
    let s = TestServer::start().await;
    let mut worker = RawWorker::connect(&s.worker_url(), None).await;
    worker.send_text("hello?").await;
    let reply = worker.recv().await;
    error_text(&reply);
    worker.expect_closed().await;
}

#[tokio::test]
async fn a_hello_without_queues_is_refused() {
    let s = TestServer::start().await;
    let mut worker = RawWorker::connect(&s.worker_url(), None).await;
    worker
        .send_json(&json!({"type": "hello", "queues": [], "capacity": 1}))
        .await;
    let reply = worker.recv().await;
    assert!(error_text(&reply).contains("queue"), "{reply}");
    worker.expect_closed().await;
}

#[tokio::test]
async fn a_valid_hello_gets_a_welcome() {
    let s = TestServer::start().await;
    let mut worker = RawWorker::connect(&s.worker_url(), None).await;
    worker.send_json(&hello()).await;
    let welcome = worker.recv_type("welcome").await;
    assert!(!welcome["worker_id"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn garbage_after_hello_gets_an_error_and_the_connection_stays_usable() {
    let s = TestServer::start().await;
    let mut worker = s.worker(hello()).await;
    worker.send_text("not json").await;
    error_text(&worker.recv().await);

    let id = s
        .enqueue(json!({"kind": "echo", "queue": "q", "args": {"n": 1}}))
        .await;
    let job = worker.recv_type("job").await;
    assert_eq!(job["id"], id);
    assert_eq!(job["queue"], "q");
    assert_eq!(job["kind"], "echo");
    assert_eq!(job["args"], json!({"n": 1}));
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["max_attempts"], 5);
    assert_eq!(job["timeout"], Value::Null);
    assert_eq!(job["deadline"], Value::Null);
}

#[tokio::test]
async fn a_completed_job_shows_its_result() {
    let s = TestServer::start().await;
    let mut worker = s.worker(hello()).await;
    let id = s.enqueue(json!({"kind": "echo", "queue": "q"})).await;
    worker.recv_type("job").await;
    assert_eq!(s.job(&id).await["state"], "running");

    worker
        .send_json(&json!({"type": "complete", "id": id, "result": {"ok": true}}))
        .await;
    let job = s.wait_for_state(&id, "completed").await;
    assert_eq!(job["result"], json!({"ok": true}));
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["worker_id"], Value::Null);
    assert!(time(&job["finished_at"]) >= time(&job["started_at"]));
}

#[tokio::test]
async fn completing_a_job_twice_gets_a_not_leased_error() {
    let s = TestServer::start().await;
    let mut worker = s.worker(hello()).await;
    let id = s.enqueue(json!({"kind": "echo", "queue": "q"})).await;
    worker.recv_type("job").await;
    let complete = json!({"type": "complete", "id": id, "result": {"ok": true}});
    worker.send_json(&complete).await;
    s.wait_for_state(&id, "completed").await;

    worker.send_json(&complete).await;
    let reply = worker.recv().await;
    assert!(error_text(&reply).contains("not leased"), "{reply}");
    assert_eq!(reply["id"], id);
    // The second report changed nothing.
    assert_eq!(s.job(&id).await["result"], json!({"ok": true}));
}

#[tokio::test]
async fn completing_a_job_that_was_never_delivered_gets_a_not_leased_error() {
    let s = TestServer::start().await;
    let mut worker = s.worker(hello()).await;
    let id = s.enqueue(json!({"kind": "echo", "queue": "other"})).await;
    worker
        .send_json(&json!({"type": "complete", "id": id}))
        .await;
    let reply = worker.recv().await;
    assert!(error_text(&reply).contains("not leased"), "{reply}");
    assert_eq!(s.job(&id).await["state"], "queued");
}

#[tokio::test]
async fn a_binary_frame_gets_an_error_and_the_connection_stays_usable() {
    let s = TestServer::start().await;
    let mut worker = s.worker(hello()).await;
    worker.send_binary(b"\x00\x01binary").await;
    let reply = worker.recv().await;
    assert!(error_text(&reply).contains("binary"), "{reply}");

    let id = s.enqueue(json!({"kind": "echo", "queue": "q"})).await;
    assert_eq!(worker.recv_type("job").await["id"], id);
}

#[tokio::test]
async fn a_message_of_unknown_type_gets_an_error() {
    let s = TestServer::start().await;
    let mut worker = s.worker(hello()).await;
    worker.send_json(&json!({"type": "explode"})).await;
    error_text(&worker.recv().await);
    worker.send_json(&json!({"no": "type"})).await;
    error_text(&worker.recv().await);
    worker.send_json(&json!([1, 2, 3])).await;
    error_text(&worker.recv().await);
}

#[tokio::test]
async fn a_second_hello_gets_an_error() {
    let s = TestServer::start().await;
    let mut worker = s.worker(hello()).await;
    worker.send_json(&hello()).await;
    let reply = worker.recv().await;
    assert!(error_text(&reply).contains("hello"), "{reply}");
}

#[tokio::test]
async fn several_reports_in_one_frame_are_all_applied() {
    let s = TestServer::start().await;
    let mut worker = s
        .worker(json!({"type": "hello", "queues": ["q"], "capacity": 2}))
        .await;
    let a = s.enqueue(json!({"kind": "echo", "queue": "q"})).await;
    let b = s.enqueue(json!({"kind": "echo", "queue": "q"})).await;
    let mut delivered = vec![
        worker.recv_type("job").await["id"].clone(),
        worker.recv_type("job").await["id"].clone(),
    ];
    delivered.sort_by_key(|id| id.to_string());
    let mut expected = vec![json!(a), json!(b)];
    expected.sort_by_key(|id| id.to_string());
    assert_eq!(delivered, expected);

    worker
        .send_json(&json!([
            {"type": "progress", "id": a, "percent": 50},
            {"type": "complete", "id": a, "result": "A"},
            {"type": "complete", "id": b, "result": "B"},
        ]))
        .await;
    assert_eq!(s.wait_for_state(&a, "completed").await["result"], "A");
    assert_eq!(s.wait_for_state(&b, "completed").await["result"], "B");
}

#[tokio::test]
async fn a_fail_with_an_absurd_retry_after_schedules_the_job_and_breaks_nothing() {
    let s = TestServer::start().await;
    let mut worker = s.worker(hello()).await;
    let id = s.enqueue(json!({"kind": "echo", "queue": "q"})).await;
    worker.recv_type("job").await;
    worker
        .send_json(&json!({
            "type": "fail", "id": id, "retry_after": 1e300,
            "error": {"type": "RateLimited", "message": "come back much later"},
        }))
        .await;
    let job = s.wait_for_state(&id, "scheduled").await;
    assert_eq!(job["errors"][0]["type"], "RateLimited");
    assert!(time(&job["run_at"]) > common::start_time() + chrono::Duration::days(365));

    // The store still takes writes and the worker is still served.
    s.run_maintenance().await;
    let next = s.enqueue(json!({"kind": "echo", "queue": "q"})).await;
    assert_eq!(worker.recv_type("job").await["id"], next);
}

#[tokio::test]
async fn progress_outside_0_to_100_gets_an_error_and_is_not_stored() {
    let s = TestServer::start().await;
    let mut worker = s.worker(hello()).await;
    let id = s.enqueue(json!({"kind": "echo", "queue": "q"})).await;
    worker.recv_type("job").await;
    worker
        .send_json(&json!({"type": "progress", "id": id, "percent": 150}))
        .await;
    let reply = worker.recv().await;
    assert!(error_text(&reply).contains("percent"), "{reply}");
    assert_eq!(reply["id"], id);
    assert_eq!(s.job(&id).await["progress"], Value::Null);
    worker
        .send_json(&json!({"type": "progress", "id": id, "percent": 100}))
        .await;
    worker
        .send_json(&json!({"type": "complete", "id": id}))
        .await;
    let job = s.wait_for_state(&id, "completed").await;
    assert_eq!(job["progress"]["percent"], 100.0);
}

#[tokio::test]
async fn an_interrupted_job_is_queued_again_without_using_its_attempt() {
    let s = TestServer::start().await;
    let mut stopping = s.worker(hello()).await;
    let id = s.enqueue(json!({"kind": "echo", "queue": "q"})).await;
    assert_eq!(stopping.recv_type("job").await["attempt"], 1);

    // What a worker whose grace period ran out sends: no more jobs, this one given back.
    stopping
        .send_text(&format!(
            r#"[{{"type":"capacity","capacity":0}},{{"type":"interrupted","id":"{id}"}}]"#
        ))
        .await;
    let job = s.wait_for_state(&id, "queued").await;
    assert_eq!(job["attempt"], 0);
    assert_eq!(job["errors"], json!([]));
    assert_eq!(job["worker_id"], Value::Null);

    let mut next = s.worker(hello()).await;
    let delivered = next.recv_type("job").await;
    assert_eq!(
        (&delivered["id"], &delivered["attempt"]),
        (&json!(id), &json!(1))
    );
    next.send_json(&json!({"type": "complete", "id": id})).await;
    assert_eq!(s.wait_for_state(&id, "completed").await["attempt"], 1);
}

#[tokio::test]
async fn an_interrupted_report_for_a_job_not_held_gets_an_error_and_changes_nothing() {
    let s = TestServer::start().await;
    let mut holder = s.worker(hello()).await;
    let mut other = s
        .worker(json!({"type": "hello", "queues": ["q"], "capacity": 0}))
        .await;
    let id = s.enqueue(json!({"kind": "echo", "queue": "q"})).await;
    holder.recv_type("job").await;

    other
        .send_json(&json!({"type": "interrupted", "id": id}))
        .await;
    let reply = other.recv().await;
    assert!(error_text(&reply).contains("not leased"), "{reply}");
    let job = s.job(&id).await;
    assert_eq!(
        (&job["state"], &job["attempt"]),
        (&json!("running"), &json!(1))
    );
}
