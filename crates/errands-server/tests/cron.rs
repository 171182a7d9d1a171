//! Cron schedules against a real in-process server. Time is a `ManualClock` moved by hand and
//! maintenance runs on request, so nothing waits for real minutes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{assert_error, start_time, time, TestServer};
use errands_client::{Client, EnqueueRequest, JobContext, Worker};
use errands_core::{Clock, ManualClock};
use errands_server::{RunningServer, ServerConfig};
use errands_store::sqlite::SqliteOptions;
use errands_store::SqliteStore;
use reqwest::StatusCode;
use serde_json::{json, Value};

const BAD: StatusCode = StatusCode::BAD_REQUEST;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn put(s: &TestServer, name: &str, body: &Value) -> (StatusCode, Value) {
    s.send(s.http.put(s.url(&format!("/v1/cron/{name}"))).json(body))
        .await
}

/// PUTs a schedule, expecting it to be created.
async fn create(s: &TestServer, name: &str, body: Value) -> Value {
    let (status, entry) = put(s, name, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    entry
}

/// The jobs schedule `name` enqueued (tagged `cron:{name}`), oldest first.
async fn cron_jobs(s: &TestServer, name: &str) -> Vec<Value> {
    let mut jobs = s.list_all(&format!("tag=cron:{name}")).await;
    jobs.reverse();
    jobs
}

fn keys(jobs: &[Value]) -> Vec<String> {
    jobs.iter()
        .map(|j| j["unique_key"].as_str().unwrap().to_owned())
        .collect()
}

fn fire_times(entry: &Value) -> Vec<DateTime<Utc>> {
    entry["next_fire_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(time)
        .collect()
}

/// Moves the clock by `seconds` and runs one maintenance pass.
async fn tick(s: &TestServer, seconds: f64) {
    s.advance(seconds);
    s.run_maintenance().await;
}

#[tokio::test]
async fn put_then_get_shows_the_next_fire_times() {
    let s = TestServer::start().await;
    let body = json!({"schedule": "*/5 * * * *", "job": {"kind": "report", "queue": "reports", "args": {"full": true}}});
    let entry = create(&s, "report", body.clone()).await;
    assert_eq!(entry["name"], "report");
    assert_eq!(entry["tz"], "UTC");
    assert_eq!(entry["catch_up"], "skip");
    assert_eq!(entry["paused"], false);
    assert_eq!(entry["last_fire"], Value::Null);
    assert_eq!(entry["job"]["args"]["full"], true);
    let expected: Vec<DateTime<Utc>> = (1..=5)
        .map(|i| start_time() + chrono::Duration::minutes(5 * i))
        .collect();
    assert_eq!(fire_times(&entry), expected);

    let (status, got) = s.get("/v1/cron/report").await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got, entry);
    let (status, list) = s.get("/v1/cron").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["schedules"], json!([entry]));

    // Replacing is 200; a new timing moves the fire times.
    let (status, replaced) = put(
        &s,
        "report",
        &json!({"schedule": "every 1h", "tz": "Europe/Berlin", "job": {"kind": "report"}, "catch_up": "run_once"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["catch_up"], "run_once");
    assert_eq!(replaced["tz"], "Europe/Berlin");
    assert_eq!(
        fire_times(&replaced)[0],
        start_time() + chrono::Duration::hours(1)
    );

    let (_, openapi) = s.get("/openapi.json").await;
    for path in ["/v1/cron", "/v1/cron/{name}", "/v1/cron/{name}/trigger"] {
        assert!(
            openapi["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }

    let (status, _) = s.delete("/v1/cron/report").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &s.get("/v1/cron/report").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
    assert_error(
        &s.delete("/v1/cron/report").await,
        StatusCode::NOT_FOUND,
        "not_found",
        None,
    );
}

#[tokio::test]
async fn each_fire_time_is_enqueued_once() {
    let s = TestServer::start().await;
    create(
        &s,
        "tick",
        json!({"schedule": "* * * * *", "job": {"kind": "tick", "queue": "cron"}}),
    )
    .await;
    s.run_maintenance().await;
    assert!(cron_jobs(&s, "tick").await.is_empty());

    tick(&s, 60.0).await;
    s.run_maintenance().await;
    let jobs = cron_jobs(&s, "tick").await;
    assert_eq!(keys(&jobs), ["cron:tick:2026-01-01T00:01:00Z"]);
    assert_eq!(jobs[0]["state"], "queued");
    assert_eq!(jobs[0]["queue"], "cron");
    assert_eq!(jobs[0]["kind"], "tick");

    // Later in the same minute: nothing new.
    tick(&s, 30.0).await;
    assert_eq!(cron_jobs(&s, "tick").await.len(), 1);
    tick(&s, 30.0).await;
    tick(&s, 0.5).await;
    let jobs = cron_jobs(&s, "tick").await;
    assert_eq!(
        keys(&jobs),
        [
            "cron:tick:2026-01-01T00:01:00Z",
            "cron:tick:2026-01-01T00:02:00Z"
        ]
    );
    let (_, entry) = s.get("/v1/cron/tick").await;
    assert_eq!(time(&entry["last_fire"]), at("2026-01-01T00:02:00Z"));
    assert_eq!(fire_times(&entry)[0], at("2026-01-01T00:03:00Z"));
}

#[tokio::test]
async fn fired_jobs_reach_a_waiting_worker() {
    let s = TestServer::start().await;
    let mut worker = s
        .worker(json!({"type": "hello", "queues": ["cron"], "capacity": 1}))
        .await;
    create(
        &s,
        "push",
        json!({"schedule": "every 30s", "job": {"kind": "push", "queue": "cron", "args": 7}}),
    )
    .await;
    tick(&s, 30.0).await;
    let job = worker.recv_type("job").await;
    assert_eq!(job["kind"], "push");
    assert_eq!(job["args"], 7);
}

#[tokio::test]
async fn catch_up_skips_or_runs_once_after_a_long_clock_jump() {
    let s = TestServer::start().await;
    create(
        &s,
        "skipper",
        json!({"schedule": "0 * * * *", "job": {"kind": "hourly"}}),
    )
    .await;
    create(
        &s,
        "once",
        json!({"schedule": "0 * * * *", "job": {"kind": "hourly"}, "catch_up": "run_once"}),
    )
    .await;
    // The server was "down" from 00:00 to 05:10: five fire times passed.
    tick(&s, 5.0 * 3600.0 + 600.0).await;
    s.run_maintenance().await;
    assert!(cron_jobs(&s, "skipper").await.is_empty());
    assert_eq!(
        keys(&cron_jobs(&s, "once").await),
        ["cron:once:2026-01-01T05:00:00Z"]
    );
    for name in ["skipper", "once"] {
        let (_, entry) = s.get(&format!("/v1/cron/{name}")).await;
        assert_eq!(fire_times(&entry)[0], at("2026-01-01T06:00:00Z"), "{name}");
    }
    // Back on time: both fire at 06:00.
    tick(&s, 50.0 * 60.0).await;
    assert_eq!(cron_jobs(&s, "skipper").await.len(), 1);
    assert_eq!(cron_jobs(&s, "once").await.len(), 2);
}

#[tokio::test]
async fn paused_schedules_enqueue_nothing_until_resumed() {
    let s = TestServer::start().await;
    create(
        &s,
        "p",
        json!({"schedule": "* * * * *", "job": {"kind": "p"}}),
    )
    .await;
    let (status, paused) = s.post_empty("/v1/cron/p/pause").await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["next_fire_times"], json!([]));
    tick(&s, 150.0).await;
    assert!(cron_jobs(&s, "p").await.is_empty());

    // Re-declaring without `paused` (a worker restarting) keeps it paused.
    let (status, again) = put(
        &s,
        "p",
        &json!({"schedule": "* * * * *", "job": {"kind": "p"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["paused"], true);

    let (status, resumed) = s.post_empty("/v1/cron/p/resume").await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["paused"], false);
    // 00:02:30 now: what passed while paused is not run; the next is 00:03.
    assert_eq!(fire_times(&resumed)[0], at("2026-01-01T00:03:00Z"));
    s.run_maintenance().await;
    assert!(cron_jobs(&s, "p").await.is_empty());
    tick(&s, 30.0).await;
    assert_eq!(
        keys(&cron_jobs(&s, "p").await),
        ["cron:p:2026-01-01T00:03:00Z"]
    );

    // `paused: true` in a PUT pauses too.
    let (_, paused) = put(
        &s,
        "p",
        &json!({"schedule": "* * * * *", "job": {"kind": "p"}, "paused": true}),
    )
    .await;
    assert_eq!(paused["paused"], true);

    for action in ["pause", "resume", "trigger"] {
        assert_error(
            &s.post_empty(&format!("/v1/cron/nope/{action}")).await,
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        );
    }
}

#[tokio::test]
async fn trigger_enqueues_now_under_a_manual_key() {
    let s = TestServer::start().await;
    create(
        &s,
        "t",
        json!({"schedule": "0 0 1 1 *", "job": {"kind": "t", "queue": "manual", "priority": 3}}),
    )
    .await;
    s.post_empty("/v1/cron/t/pause").await;
    let (status, first) = s.post_empty("/v1/cron/t/trigger").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["created"], true);
    let job = s.job(first["id"].as_str().unwrap()).await;
    assert_eq!(job["unique_key"], "cron:t:manual:2026-01-01T00:00:00Z");
    assert_eq!(job["state"], "queued");
    assert_eq!(job["queue"], "manual");
    assert_eq!(job["priority"], 3);
    // The same instant again is the same job.
    let (status, again) = s.post_empty("/v1/cron/t/trigger").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        (again["id"].clone(), again["created"].clone()),
        (first["id"].clone(), json!(false))
    );
    s.advance(1.0);
    let (status, later) = s.post_empty("/v1/cron/t/trigger").await;
    assert_eq!(status, StatusCode::CREATED, "{later}");
    assert_eq!(cron_jobs(&s, "t").await.len(), 2);
}

/// Walks the clock from `from` to `to` in `step` minutes, running maintenance at every step.
async fn walk(s: &TestServer, from: &str, to: &str, step: i64) {
    s.clock.set(at(from));
    while Clock::now(s.clock.as_ref()) < at(to) {
        s.clock.advance(chrono::Duration::minutes(step));
        s.run_maintenance().await;
    }
}

#[tokio::test]
async fn dst_spring_forward_runs_a_missing_0230_once() {
    // 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist.
    let s = TestServer::start().await;
    s.clock.set(at("2026-03-28T12:00:00Z"));
    let entry = create(
        &s,
        "berlin",
        json!({"schedule": "30 2 * * *", "tz": "Europe/Berlin", "job": {"kind": "nightly"}}),
    )
    .await;
    assert_eq!(
        fire_times(&entry)[..3],
        [
            at("2026-03-29T01:00:00Z"), // 03:00 CEST: the first instant after the gap
            at("2026-03-30T00:30:00Z"), // 02:30 CEST
            at("2026-03-31T00:30:00Z"),
        ]
    );
    walk(&s, "2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z", 15).await;
    assert_eq!(
        keys(&cron_jobs(&s, "berlin").await),
        [
            "cron:berlin:2026-03-29T01:00:00Z",
            "cron:berlin:2026-03-30T00:30:00Z"
        ]
    );
}

#[tokio::test]
async fn dst_fall_back_runs_a_repeated_0230_once() {
    // 2026-10-25 in Berlin: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice.
    let s = TestServer::start().await;
    s.clock.set(at("2026-10-24T12:00:00Z"));
    let entry = create(
        &s,
        "berlin",
        json!({"schedule": "30 2 * * *", "tz": "Europe/Berlin", "job": {"kind": "nightly"}}),
    )
    .await;
    assert_eq!(
        fire_times(&entry)[..2],
        [at("2026-10-25T00:30:00Z"), at("2026-10-26T01:30:00Z")]
    );
    // Through both 02:30s (00:30Z and 01:30Z) and the rest of the day.
    walk(&s, "2026-10-24T12:00:00Z", "2026-10-25T23:00:00Z", 15).await;
    assert_eq!(
        keys(&cron_jobs(&s, "berlin").await),
        ["cron:berlin:2026-10-25T00:30:00Z"]
    );
}

#[tokio::test]
async fn two_servers_on_one_store_file_enqueue_each_fire_time_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("errands.db");
    let clock = Arc::new(ManualClock::new(start_time()));
    let mut servers = Vec::new();
    for _ in 0..2 {
        let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
        servers.push(
            RunningServer::start(store, clock.clone(), ServerConfig::default())
                .await
                .unwrap(),
        );
    }
    let http = reqwest::Client::new();
    let spec = json!({"schedule": "*/10 * * * * *", "job": {"kind": "shared"}});
    for server in &servers {
        // Both declare it, as two workers starting would.
        let response = http
            .put(format!("{}/v1/cron/shared", server.url()))
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    // Two minutes in 5-second steps; both engines run maintenance at every step, together.
    for _ in 0..24 {
        clock.advance(chrono::Duration::seconds(5));
        let (a, b) = tokio::join!(
            servers[0].engine.run_maintenance(),
            servers[1].engine.run_maintenance()
        );
        a.unwrap();
        b.unwrap();
    }
    let (status, body) = common::read_json(
        http.get(format!(
            "{}/v1/jobs?tag=cron:shared&limit=1000",
            servers[1].url()
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut found = keys(body["jobs"].as_array().unwrap());
    found.sort();
    let expected: Vec<String> = (1..=12)
        .map(|i| {
            let fire = start_time() + chrono::Duration::seconds(10 * i);
            format!("cron:shared:{}", errands_core::cron::rfc3339(fire))
        })
        .collect();
    assert_eq!(found, expected);
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let s = TestServer::start().await;
    let job = json!({"kind": "a"});
    let cases = [
        (
            json!({"schedule": "61 * * * *", "job": job}),
            "invalid_field",
            "schedule",
        ),
        (
            json!({"schedule": "every banana", "job": job}),
            "invalid_field",
            "schedule",
        ),
        (
            json!({"schedule": "* * *", "job": job}),
            "invalid_field",
            "schedule",
        ),
        (
            json!({"schedule": "0 0 30 2 *", "job": job}),
            "invalid_field",
            "schedule",
        ),
        (
            json!({"schedule": "* * * * *", "tz": "Mars/Olympus", "job": job}),
            "invalid_field",
            "tz",
        ),
        (
            json!({"schedule": "* * * * *", "job": job, "tzz": "UTC"}),
            "invalid_json",
            "tzz",
        ),
        (
            json!({"schedule": "* * * * *", "job": {"kind": ""}}),
            "invalid_field",
            "job.kind",
        ),
        (
            json!({"schedule": "* * * * *", "job": {"kind": "a", "qeue": "x"}}),
            "invalid_json",
            "job.qeue",
        ),
        (
            json!({"schedule": "* * * * *", "job": {"kind": "a", "delay": 5}}),
            "invalid_field",
            "job.delay",
        ),
        (
            json!({"schedule": "* * * * *", "job": {"kind": "a", "unique_key": "k"}}),
            "invalid_field",
            "job.unique_key",
        ),
        (
            json!({"schedule": "* * * * *", "job": job, "catch_up": "sometimes"}),
            "invalid_json",
            "catch_up",
        ),
        (json!({"job": job}), "invalid_json", ""),
    ];
    for (body, code, field) in cases {
        let response = put(&s, "bad", &body).await;
        let field = (!field.is_empty()).then_some(field);
        assert_error(&response, BAD, code, field);
    }
    let blank = put(&s, "%20", &json!({"schedule": "* * * * *", "job": job})).await;
    assert_error(&blank, BAD, "invalid_field", Some("name"));
    let (_, list) = s.get("/v1/cron").await;
    assert_eq!(list["schedules"], json!([]));
}

#[tokio::test]
async fn a_worker_declares_its_schedules_when_it_starts() {
    let s = TestServer::start().await;
    let client = Client::new(s.server.url(), None).unwrap();
    let worker = Worker::builder(client.clone())
        .queues(["sdk"])
        .cron(
            "sdk-tick",
            "every 1m",
            "UTC",
            EnqueueRequest {
                queue: Some("sdk".into()),
                args: json!({"n": 1}),
                ..EnqueueRequest::new("sdk.tick")
            },
        )
        .handle_raw("sdk.tick", |_ctx: JobContext, args: Value| async move {
            Ok(json!({"got": args["n"]}))
        })
        .build();
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let entry = loop {
        match client.get_cron("sdk-tick").await {
            Ok(entry) => break entry,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(error) => panic!("the worker never declared its schedule: {error}"),
        }
    };
    assert_eq!(entry.next_fire_times[0], at("2026-01-01T00:01:00Z"));
    assert_eq!(client.list_cron().await.unwrap().len(), 1);

    tick(&s, 60.0).await;
    let jobs = cron_jobs(&s, "sdk-tick").await;
    assert_eq!(jobs.len(), 1);
    let done = s
        .wait_for_state(jobs[0]["id"].as_str().unwrap(), "completed")
        .await;
    assert_eq!(done["result"]["got"], 1);

    let triggered = client.trigger_cron("sdk-tick").await.unwrap();
    assert!(triggered.created);
    let paused = client.set_cron_paused("sdk-tick", true).await.unwrap();
    assert!(paused.paused);
    client.delete_cron("sdk-tick").await.unwrap();
    assert!(client.list_cron().await.unwrap().is_empty());
    shutdown.shutdown();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_worker_with_a_bad_schedule_fails_to_start() {
    let s = TestServer::start().await;
    let client = Client::new(s.server.url(), None).unwrap();
    let worker = Worker::builder(client)
        .cron(
            "bad",
            "every fortnight-ish",
            "UTC",
            EnqueueRequest::new("x"),
        )
        .build();
    let error = tokio::time::timeout(common::WAIT, worker.run())
        .await
        .unwrap()
        .unwrap_err();
    match error {
        errands_client::Error::Rejected { field, .. } => {
            assert_eq!(field.as_deref(), Some("schedule"))
        }
        other => panic!("expected a rejection, got {other}"),
    }
}
