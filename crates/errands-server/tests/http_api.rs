//! The HTTP API over real HTTP, route by route, as docs/protocol.md describes it.

mod common;

use std::collections::HashSet;

use common::{start_time, time, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn ids(jobs: &[Value]) -> Vec<String> {
    jobs.iter()
        .map(|job| job["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn enqueue_returns_201_with_the_id_and_queued_state() {
    let s = TestServer::start().await;
    let (status, body) = s.post("/v1/jobs", &json!({"kind": "email.send"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "queued");
    assert_eq!(body["created"], true);
    let id = body["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
}

#[tokio::test]
async fn get_returns_every_field_of_the_job() {
    let s = TestServer::start().await;
    let id = s
        .enqueue(json!({
            "kind": "email.send",
            "queue": "mail",
            "args": {"to": "a@example.com", "n": [1, 2]},
            "priority": 7,
            "max_attempts": 3,
            "backoff": {"type": "fixed", "delay": 2.5},
            "timeout": 30,
            "unique_key": "welcome:42",
            "unique_for": 3600,
            "retention": 600,
            "tags": ["signup", "eu"],
            "headers": {"x-tenant": "42"}
        }))
        .await;
    let job = s.job(&id).await;
    let expected_keys: HashSet<&str> = [
        "id",
        "queue",
        "kind",
        "args",
        "state",
        "priority",
        "attempt",
        "max_attempts",
        "interruptions",
        "backoff",
        "timeout",
        "unique_key",
        "unique_for",
        "retention",
        "tags",
        "headers",
        "progress",
        "result",
        "errors",
        "worker_id",
        "created_at",
        "run_at",
        "started_at",
        "finished_at",
        "deadline",
    ]
    .into();
    let keys: HashSet<&str> = job
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, expected_keys);
    assert_eq!(job["id"], id);
    assert_eq!(job["queue"], "mail");
    assert_eq!(job["kind"], "email.send");
    assert_eq!(job["args"], json!({"to": "a@example.com", "n": [1, 2]}));
    assert_eq!(job["state"], "queued");
    assert_eq!(job["priority"], 7);
    assert_eq!(job["attempt"], 0);
    assert_eq!(job["max_attempts"], 3);
    assert_eq!(job["interruptions"], 0);
    assert_eq!(job["backoff"], json!({"type": "fixed", "delay": 2.5}));
    assert_eq!(job["timeout"], 30.0);
    assert_eq!(job["unique_key"], "welcome:42");
    assert_eq!(job["unique_for"], 3600.0);
    assert_eq!(job["retention"], 600.0);
    assert_eq!(job["tags"], json!(["signup", "eu"]));
    assert_eq!(job["headers"], json!({"x-tenant": "42"}));
    assert_eq!(job["progress"], Value::Null);
    assert_eq!(job["result"], Value::Null);
    assert_eq!(job["errors"], json!([]));
    assert_eq!(job["worker_id"], Value::Null);
    assert_eq!(time(&job["created_at"]), start_time());
    assert_eq!(time(&job["run_at"]), start_time());
    assert_eq!(job["started_at"], Value::Null);
    assert_eq!(job["finished_at"], Value::Null);
    assert_eq!(job["deadline"], Value::Null);
}

#[tokio::test]
async fn get_fills_in_the_documented_defaults() {
    let s = TestServer::start().await;
    let id = s.enqueue(json!({"kind": "bare"})).await;
    let job = s.job(&id).await;
    assert_eq!(job["queue"], "default");
    assert_eq!(job["args"], Value::Null);
    assert_eq!(job["priority"], 0);
    assert_eq!(job["max_attempts"], 5);
    assert_eq!(
        job["backoff"],
        json!({"type": "exponential", "base": 1.0, "cap": 3600.0, "jitter": true})
    );
    assert_eq!(job["timeout"], Value::Null);
    assert_eq!(job["unique_key"], Value::Null);
    assert_eq!(job["retention"], 86400.0);
    assert_eq!(job["tags"], json!([]));
}

#[tokio::test]
async fn batch_enqueue_answers_in_request_order() {
    let s = TestServer::start().await;
    let kinds = ["first", "second", "third", "fourth"];
    let jobs: Vec<Value> = kinds.iter().map(|k| json!({"kind": k})).collect();
    let (status, body) = s.post("/v1/jobs/batch", &json!({ "jobs": jobs })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let answers = body["jobs"].as_array().unwrap();
    assert_eq!(answers.len(), kinds.len());
    for (answer, kind) in answers.iter().zip(kinds) {
        assert_eq!(answer["state"], "queued");
        assert_eq!(answer["created"], true);
        let job = s.job(answer["id"].as_str().unwrap()).await;
        assert_eq!(job["kind"], kind);
    }
}

#[tokio::test]
async fn batch_with_one_bad_job_stores_nothing() {
    let s = TestServer::start().await;
    let jobs = json!({"jobs": [{"kind": "ok"}, {"kind": ""}, {"kind": "also.ok"}]});
    let (status, body) = s.post("/v1/jobs/batch", &jobs).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");
    assert_eq!(body["error"]["field"], "jobs[1].kind");
    assert_eq!(s.job_count().await, 0);
}

#[tokio::test]
async fn delayed_job_is_scheduled_until_the_clock_passes_its_run_at() {
    let s = TestServer::start().await;
    let (status, body) = s
        .post("/v1/jobs", &json!({"kind": "later", "delay": 60}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "scheduled");
    let id = body["id"].as_str().unwrap();
    assert_eq!(
        time(&s.job(id).await["run_at"]),
        start_time() + chrono::Duration::seconds(60)
    );

    s.advance(59.0);
    s.run_maintenance().await;
    assert_eq!(s.job(id).await["state"], "scheduled");

    s.advance(1.5);
    s.run_maintenance().await;
    assert_eq!(s.job(id).await["state"], "queued");
}

#[tokio::test]
async fn job_with_a_future_run_at_is_scheduled_until_then() {
    let s = TestServer::start().await;
    let run_at = start_time() + chrono::Duration::seconds(30);
    let (status, body) = s
        .post("/v1/jobs", &json!({"kind": "later", "run_at": run_at}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "scheduled");
    let id = body["id"].as_str().unwrap();

    s.advance(30.0);
    s.run_maintenance().await;
    assert_eq!(s.job(id).await["state"], "queued");
}

#[tokio::test]
async fn list_filters_by_queue_state_kind_and_tag() {
    let s = TestServer::start().await;
    let a = s
        .enqueue(json!({"kind": "resize", "queue": "images", "tags": ["big"]}))
        .await;
    let b = s
        .enqueue(json!({"kind": "crop", "queue": "images", "tags": ["small", "big"]}))
        .await;
    let c = s
        .enqueue(json!({"kind": "resize", "queue": "video", "delay": 60}))
        .await;
    let d = s.enqueue(json!({"kind": "send", "tags": ["small"]})).await;

    let by = |query: &'static str| {
        let s = &s;
        async move { ids(&s.list_all(query).await) }
    };
    // Newest first, so the expected lists run backwards.
    assert_eq!(by("queue=images").await, [b.as_str(), a.as_str()]);
    assert_eq!(by("state=scheduled").await, [c.as_str()]);
    assert_eq!(
        by("state=queued").await,
        [d.as_str(), b.as_str(), a.as_str()]
    );
    assert_eq!(by("kind=resize").await, [c.as_str(), a.as_str()]);
    assert_eq!(by("tag=big").await, [b.as_str(), a.as_str()]);
    assert_eq!(by("tag=small").await, [d.as_str(), b.as_str()]);
    assert_eq!(by("queue=images&kind=resize&tag=big").await, [a.as_str()]);
    assert!(by("queue=nowhere").await.is_empty());
}

#[tokio::test]
async fn list_pages_with_the_cursor_newest_first() {
    let s = TestServer::start().await;
    let mut enqueued = Vec::new();
    for n in 0..7 {
        enqueued.push(s.enqueue(json!({"kind": "page", "args": n})).await);
    }
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/jobs?limit=3&cursor={cursor}"),
            None => "/v1/jobs?limit=3".to_owned(),
        };
        let (status, body) = s.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages.push(ids(body["jobs"].as_array().unwrap()));
        match &body["next_cursor"] {
            Value::Null => break,
            next => cursor = Some(next.as_str().unwrap().to_owned()),
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, 1]);
    enqueued.reverse();
    assert_eq!(pages.concat(), enqueued);
}

#[tokio::test]
async fn cancelling_a_queued_job_cancels_it_at_once() {
    let s = TestServer::start().await;
    let id = s.enqueue(json!({"kind": "doomed"})).await;
    let (status, job) = s.post_empty(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["id"], id);
    assert_eq!(job["state"], "cancelled");
    assert_eq!(time(&job["finished_at"]), start_time());
    assert_eq!(s.job(&id).await["state"], "cancelled");
}

#[tokio::test]
async fn cancelling_a_cancelled_job_is_a_no_op() {
    let s = TestServer::start().await;
    let id = s.enqueue(json!({"kind": "doomed"})).await;
    let (_, first) = s.post_empty(&format!("/v1/jobs/{id}/cancel")).await;
    s.advance(5.0);
    let (status, second) = s.post_empty(&format!("/v1/jobs/{id}/cancel")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second, first);
}

#[tokio::test]
async fn retrying_a_cancelled_job_queues_it_again() {
    let s = TestServer::start().await;
    let id = s.enqueue(json!({"kind": "again"})).await;
    s.post_empty(&format!("/v1/jobs/{id}/cancel")).await;
    s.advance(5.0);
    let (status, job) = s.post_empty(&format!("/v1/jobs/{id}/retry")).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["state"], "queued");
    assert_eq!(job["finished_at"], Value::Null);
    assert_eq!(
        time(&job["run_at"]),
        start_time() + chrono::Duration::seconds(5)
    );
    assert_eq!(s.job(&id).await["state"], "queued");
}

/// The document makes the retry body nullable (schemathesis sent `null`, and it was refused):
/// `null` means the defaults, as no body does.
#[tokio::test]
async fn a_null_retry_body_means_the_defaults() {
    let s = TestServer::start().await;
    let id = s.enqueue(json!({"kind": "again"})).await;
    s.post_empty(&format!("/v1/jobs/{id}/cancel")).await;
    let (status, job) = s.post(&format!("/v1/jobs/{id}/retry"), &Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["state"], "queued");
}

#[tokio::test]
async fn deleted_job_is_gone() {
    let s = TestServer::start().await;
    let id = s.enqueue(json!({"kind": "temporary"})).await;
    let (status, body) = s.delete(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Value::Null);
    let (status, body) = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(s.job_count().await, 0);
}

#[tokio::test]
async fn unique_key_returns_the_existing_job() {
    let s = TestServer::start().await;
    let first = s
        .enqueue(json!({"kind": "welcome", "unique_key": "welcome:42"}))
        .await;
    let (status, body) = s
        .post(
            "/v1/jobs",
            &json!({"kind": "welcome", "unique_key": "welcome:42", "args": "other"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], first);
    assert_eq!(body["created"], false);
    assert_eq!(body["state"], "queued");
    assert_eq!(s.job_count().await, 1);
    assert_eq!(s.job(&first).await["args"], Value::Null);
}

#[tokio::test]
async fn batch_with_a_repeated_unique_key_stores_one_job() {
    let s = TestServer::start().await;
    let jobs = json!({"jobs": [
        {"kind": "a", "unique_key": "once"},
        {"kind": "b", "unique_key": "once"},
    ]});
    let (status, body) = s.post("/v1/jobs/batch", &jobs).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let answers = body["jobs"].as_array().unwrap();
    assert_eq!(answers[0]["created"], true);
    assert_eq!(answers[1]["created"], false);
    assert_eq!(answers[1]["id"], answers[0]["id"]);
    assert_eq!(s.job_count().await, 1);
}

#[tokio::test]
async fn unique_key_is_free_again_once_the_job_finished_and_its_window_passed() {
    let s = TestServer::start().await;
    let key = json!({"kind": "sync", "unique_key": "sync:1", "unique_for": 60});
    let first = s.enqueue(key.clone()).await;
    s.post_empty(&format!("/v1/jobs/{first}/cancel")).await;

    // Finished, but still inside the window.
    s.advance(30.0);
    let (status, body) = s.post("/v1/jobs", &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], first);

    s.advance(31.0);
    let second = s.enqueue(key).await;
    assert_ne!(second, first);
}

#[tokio::test]
async fn queues_endpoint_counts_jobs_by_state_and_ages_the_oldest_ready_one() {
    let s = TestServer::start().await;
    s.enqueue(json!({"kind": "a", "queue": "work"})).await;
    s.advance(2.0);
    s.enqueue(json!({"kind": "b", "queue": "work"})).await;
    s.enqueue(json!({"kind": "c", "queue": "work", "delay": 100}))
        .await;
    let cancelled = s.enqueue(json!({"kind": "d", "queue": "work"})).await;
    s.post_empty(&format!("/v1/jobs/{cancelled}/cancel")).await;
    s.enqueue(json!({"kind": "e", "queue": "other", "delay": 100}))
        .await;
    s.advance(1.25);

    let work = s.queue("work").await;
    assert_eq!(work["paused"], false);
    assert_eq!(
        work["counts"],
        json!({"scheduled": 1, "queued": 2, "running": 0, "completed": 0, "dead": 0, "cancelled": 1})
    );
    assert_eq!(work["oldest_ready_age"], 3.25);

    let other = s.queue("other").await;
    assert_eq!(other["counts"]["scheduled"], 1);
    assert_eq!(other["oldest_ready_age"], Value::Null);
}

#[tokio::test]
async fn pausing_and_resuming_a_queue_shows_in_the_queue_object() {
    let s = TestServer::start().await;
    s.enqueue(json!({"kind": "a", "queue": "mail"})).await;

    let (status, queue) = s.post_empty("/v1/queues/mail/pause").await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue["name"], "mail");
    assert_eq!(queue["paused"], true);
    assert_eq!(queue["counts"]["queued"], 1);
    assert_eq!(s.queue("mail").await["paused"], true);

    // A paused queue still accepts jobs.
    s.enqueue(json!({"kind": "b", "queue": "mail"})).await;

    let (status, queue) = s.post_empty("/v1/queues/mail/resume").await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue["paused"], false);
    assert_eq!(queue["counts"]["queued"], 2);
    assert_eq!(s.queue("mail").await["paused"], false);
}

#[tokio::test]
async fn pausing_a_queue_without_jobs_lists_it_as_paused() {
    let s = TestServer::start().await;
    let (status, queue) = s.post_empty("/v1/queues/empty/pause").await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue["paused"], true);
    assert_eq!(s.queue("empty").await["paused"], true);
}

#[tokio::test]
async fn cancelled_job_is_purged_once_its_retention_passed() {
    let s = TestServer::start().await;
    let id = s
        .enqueue(json!({"kind": "short.lived", "retention": 60}))
        .await;
    let keeper = s.enqueue(json!({"kind": "kept"})).await;
    s.post_empty(&format!("/v1/jobs/{id}/cancel")).await;

    s.advance(59.0);
    s.run_maintenance().await;
    assert_eq!(s.job(&id).await["state"], "cancelled");

    s.advance(2.0);
    s.run_maintenance().await;
    let (status, body) = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Unfinished jobs have no retention clock.
    assert_eq!(s.job(&keeper).await["state"], "queued");
}

#[tokio::test]
async fn openapi_document_lists_the_job_routes() {
    let s = TestServer::start().await;
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/jobs",
        "/v1/jobs/batch",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/retry",
        "/v1/queues",
        "/healthz",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI paths"
        );
    }
}

#[tokio::test]
async fn healthz_answers_ok() {
    let s = TestServer::start().await;
    let (status, body) = s.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let s = TestServer::start().await;
    let (status, body) = s.get("/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}
