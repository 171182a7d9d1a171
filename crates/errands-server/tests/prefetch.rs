//! Jobs claimed ahead for a fast worker: once its jobs come back quickly, the server holds
//! more jobs for it than it has slots. Held jobs never reached the worker, so they return to
//! their queue without counting an attempt, a pause stops them from going out, and an idle
//! connection of the same queue gets them instead of letting them wait.

mod common;

use std::time::Duration;

use common::{RawWorker, TestServer};
use errands_server::{ServerConfig, WorkerLimits};
use serde_json::{json, Value};

/// Six jobs in queue `q`, oldest first.
async fn six_jobs(s: &TestServer) -> Vec<String> {
    let jobs: Vec<Value> = (0..6)
        .map(|n| json!({"kind": "k", "queue": "q", "args": n}))
        .collect();
    let (_, body) = s.post("/v1/jobs/batch", &json!({ "jobs": jobs })).await;
    body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job| job["id"].as_str().expect("id").to_owned())
        .collect()
}

/// A worker with one slot that completed one job at once: the server then sends it the
/// second and holds the next four for it (it would hold up to eight per slot).
async fn fast_worker_with_held_jobs(s: &TestServer, ids: &[String]) -> RawWorker {
    let mut worker = s
        .worker(json!({"type": "hello", "queues": ["q"], "capacity": 1}))
        .await;
    let first = worker.recv_type("job").await;
    assert_eq!(first["id"], ids[0]);
    worker
        .send_json(&json!({"type": "complete", "id": ids[0]}))
        .await;
    let second = worker.recv_type("job").await;
    assert_eq!(second["id"], ids[1]);
    for held in &ids[2..] {
        s.wait_for_state(held, "running").await;
    }
    worker
}

#[tokio::test]
async fn held_jobs_of_a_lost_worker_return_without_an_attempt() {
    let s = TestServer::start().await;
    let ids = six_jobs(&s).await;
    let worker = fast_worker_with_held_jobs(&s, &ids).await;
    drop(worker);

    // The job the worker had counts as attempted and lost; the held ones were never sent.
    let lost = s.wait_for_state(&ids[1], "queued").await;
    assert_eq!(lost["attempt"], 1);
    assert_eq!(lost["errors"][0]["type"], "WorkerLost");
    for held in &ids[2..] {
        let job = s.wait_for_state(held, "queued").await;
        assert_eq!(job["attempt"], 0, "{job}");
        assert_eq!(job["errors"], json!([]), "{job}");
        assert_eq!(job["worker_id"], Value::Null, "{job}");
    }

    // They are delivered again in their order, as first attempts.
    let mut again = s
        .worker(json!({"type": "hello", "queues": ["q"], "capacity": 5}))
        .await;
    let mut delivered = Vec::new();
    for _ in 0..5 {
        let job = again.recv_type("job").await;
        if job["id"] != ids[1] {
            assert_eq!(job["attempt"], 1, "{job}");
        }
        delivered.push(job["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(delivered, ids[1..]);
}

#[tokio::test]
async fn held_jobs_of_a_paused_queue_go_back_instead_of_out() {
    let s = TestServer::start().await;
    let ids = six_jobs(&s).await;
    let mut worker = fast_worker_with_held_jobs(&s, &ids).await;
    let (status, _) = s.post_empty("/v1/queues/q/pause").await;
    assert!(status.is_success());

    // The slot frees up while the queue is paused: the held jobs return to it.
    worker
        .send_json(&json!({"type": "complete", "id": ids[1]}))
        .await;
    for held in &ids[2..] {
        let job = s.wait_for_state(held, "queued").await;
        assert_eq!(job["attempt"], 0, "{job}");
    }

    // On resume they are sent, the oldest first.
    let (status, _) = s.post_empty("/v1/queues/q/resume").await;
    assert!(status.is_success());
    let next = worker.recv_type("job").await;
    assert_eq!(next["id"], ids[2]);
    assert_eq!(next["attempt"], 1);
}

#[tokio::test]
async fn a_cancelled_held_job_is_not_sent() {
    let s = TestServer::start().await;
    let ids = six_jobs(&s).await;
    let mut worker = fast_worker_with_held_jobs(&s, &ids).await;
    let (status, body) = s.post_empty(&format!("/v1/jobs/{}/cancel", ids[2])).await;
    assert!(status.is_success(), "{body}");

    // The worker never held it, so it gets no cancel; its next job is the one after.
    worker
        .send_json(&json!({"type": "complete", "id": ids[1]}))
        .await;
    let next = worker.recv_type("job").await;
    assert_eq!(next["id"], ids[3]);
    assert_eq!(s.job(&ids[2]).await["state"], "cancelled");
}

#[tokio::test]
async fn jobs_held_past_the_hold_limit_go_back() {
    let s = TestServer::start().await;
    let ids = six_jobs(&s).await;
    // The worker keeps its slot busy, so the held jobs wait for it, until the server gives
    // them back rather than let their timeouts run down.
    let _worker = fast_worker_with_held_jobs(&s, &ids).await;
    for held in &ids[2..] {
        let job = s.wait_for_state(held, "queued").await;
        assert_eq!(job["attempt"], 0, "{job}");
    }
    assert_eq!(s.job(&ids[1]).await["state"], "running");
}

#[tokio::test]
async fn an_idle_worker_gets_the_jobs_held_for_a_busy_one() {
    // Held jobs never expire here, so only the idle worker's asking can bring them back.
    let s = TestServer::with_config(ServerConfig {
        worker: WorkerLimits {
            hold_limit: Duration::from_secs(3600),
            ..WorkerLimits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let ids = six_jobs(&s).await;
    let _busy = fast_worker_with_held_jobs(&s, &ids).await;

    // The idle worker's claim finds the queue empty: the busy worker gives back what it held
    // (without an attempt counted) and the idle one gets it, in order.
    let mut idle = s
        .worker(json!({"type": "hello", "queues": ["q"], "capacity": 5}))
        .await;
    for held in &ids[2..] {
        let job = idle.recv_type("job").await;
        assert_eq!(&job["id"], held);
        assert_eq!(job["attempt"], 1, "{job}");
    }
    // The busy worker keeps the job it is running.
    let running = s.job(&ids[1]).await;
    assert_eq!(running["state"], "running");
}
