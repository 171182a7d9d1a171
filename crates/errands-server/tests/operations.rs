//! What operators watch: metrics after a known sequence of jobs, readiness, and the list of
//! connected workers.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use errands_client::{Backoff, Client, EnqueueOptions, HandlerError, JobContext, JobState, Worker};
use errands_core::SystemClock;
use errands_server::{RunningServer, ServerConfig, METRICS};
use errands_store_postgres::testing::TestDatabase;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

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

/// The value of the sample whose name and labels are exactly `series`, or 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

async fn scrape(server: &RunningServer) -> String {
    let response = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_a_known_sequence_of_jobs() {
    // Metrics are process-wide; a queue name of its own keeps this test's series apart.
    let (server, client, _database) = server().await;
    let queue = "metrics-known-sequence";
    let worker = Worker::builder(client.clone())
        .queues([queue])
        .handle_raw("m", |ctx: JobContext, args: Value| async move {
            match args.as_str() {
                Some("fail-once") if ctx.attempt == 1 => Err(HandlerError::new("Flaky", "once")),
                Some("always-fail") => Err(HandlerError::permanent("Broken", "never works")),
                _ => Ok(json!("done")),
            }
        })
        .build();
    tokio::spawn(worker.run());
    let options = || EnqueueOptions::new().queue(queue).backoff(Backoff::None);
    let mut ids = Vec::new();
    for args in ["ok", "ok", "fail-once", "always-fail"] {
        ids.push(
            client
                .enqueue_raw("m", json!(args), options())
                .await
                .unwrap()
                .id,
        );
    }
    for id in &ids {
        client.wait(*id, WAIT).await.unwrap();
    }
    let held = client
        .enqueue_raw(
            "m",
            json!("later"),
            options().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert_eq!(held.state, JobState::Scheduled);

    let text = scrape(&server).await;
    let labels = format!("queue=\"{queue}\",kind=\"m\"");
    assert_eq!(
        sample(&text, &format!("errands_jobs_enqueued_total{{{labels}}}")),
        5.0
    );
    assert_eq!(
        sample(&text, &format!("errands_jobs_started_total{{{labels}}}")),
        5.0
    );
    assert_eq!(
        sample(&text, &format!("errands_jobs_completed_total{{{labels}}}")),
        3.0
    );
    assert_eq!(
        sample(&text, &format!("errands_jobs_failed_total{{{labels}}}")),
        2.0
    );
    assert_eq!(
        sample(&text, &format!("errands_jobs_retried_total{{{labels}}}")),
        1.0
    );
    assert_eq!(
        sample(&text, &format!("errands_jobs_dead_total{{{labels}}}")),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("errands_queue_jobs{{queue=\"{queue}\",state=\"completed\"}}")
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("errands_queue_jobs{{queue=\"{queue}\",state=\"scheduled\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(&text, &format!("errands_job_run_seconds_count{{{labels}}}")),
        5.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("errands_job_wait_seconds_count{{queue=\"{queue}\"}}")
        ),
        5.0
    );
    assert!(text.contains(
        "errands_job_wait_seconds_bucket{queue=\"metrics-known-sequence\",le=\"0.001\"}"
    ));
    assert!(sample(&text, "errands_workers_connected") >= 1.0);
    assert!(sample(&text, "errands_store_commit_seconds_count") > 0.0);
}

/// The metric families of an exposition: name to (`# TYPE` kind, `# HELP` text).
fn families(metrics: &str) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let mut families: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.entry(name.to_owned()).or_default().0 = Some(kind.to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            families.entry(name.to_owned()).or_default().1 = Some(help.to_owned());
        }
    }
    families
}

#[tokio::test]
async fn every_exported_metric_has_help_text_from_the_table() {
    let (server, client, _database) = server().await;
    let queue = "metrics-help";
    let worker = Worker::builder(client.clone())
        .queues([queue])
        .handle_raw("h", |_ctx: JobContext, args: Value| async move {
            match args.as_str() {
                Some("fail") => Err(HandlerError::permanent("Broken", "never works")),
                _ => Ok(json!("done")),
            }
        })
        .build();
    tokio::spawn(worker.run());
    for args in ["ok", "fail"] {
        let id = client
            .enqueue_raw("h", json!(args), EnqueueOptions::new().queue(queue))
            .await
            .unwrap()
            .id;
        client.wait(id, WAIT).await.unwrap();
    }
    let text = scrape(&server).await;
    let families = families(&text);
    // What the workload above makes every server export, at the least.
    for name in [
        "errands_jobs_enqueued_total",
        "errands_jobs_completed_total",
        "errands_jobs_dead_total",
        "errands_job_run_seconds",
        "errands_queue_jobs",
        "errands_workers_connected",
        "errands_store_commit_seconds",
        "errands_event_subscribers",
    ] {
        assert!(
            families.contains_key(name),
            "{name} is not exported:\n{text}"
        );
    }
    for (name, (kind, help)) in &families {
        let (_, described, table_help) = METRICS
            .iter()
            .find(|(described, _, _)| described == name)
            .unwrap_or_else(|| panic!("{name} is exported but not in METRICS"));
        assert_eq!(kind.as_deref(), Some(described.as_str()), "{name}");
        assert_eq!(
            help.as_deref(),
            Some(*table_help),
            "{name} has no # HELP line"
        );
    }
}

#[tokio::test]
async fn readiness_means_the_store_answers() {
    let (server, _client, _database) = server().await;
    let response = reqwest::get(format!("{}/readyz", server.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn connected_workers_are_listed_with_what_they_hold() {
    let (server, client, _database) = server().await;
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let worker = Worker::builder(client.clone())
        .name("listing-test")
        .queues(["a", "b"])
        .capacity(3)
        .handle_raw("hold", move |_ctx: JobContext, _args: Value| {
            let started = started_tx.clone();
            async move {
                started.send(()).unwrap();
                std::future::pending::<Result<Value, HandlerError>>().await
            }
        })
        .build();
    tokio::spawn(worker.run());
    client
        .enqueue_raw("hold", Value::Null, EnqueueOptions::new().queue("a"))
        .await
        .unwrap();
    started.recv().await.unwrap();
    let listed: Value = reqwest::get(format!("{}/v1/workers", server.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let worker = &listed["workers"][0];
    assert_eq!(worker["name"], "listing-test");
    assert_eq!(worker["queues"], json!(["a", "b"]));
    assert_eq!(worker["capacity"], 3);
    assert_eq!(worker["running"], 1);
    assert_eq!(worker["pid"], std::process::id());
    assert_eq!(worker["sdk"], "errands-rust");
    assert!(worker["connected_at"].is_string() && worker["last_seen"].is_string());
}

#[tokio::test]
async fn gauges_of_a_queue_that_is_gone_leave_the_output() {
    let (server, client, _database) = server().await;
    let queue = "metrics-short-lived";
    let options = EnqueueOptions::new()
        .queue(queue)
        .delay(Duration::from_secs(3600));
    let handle = client.enqueue_raw("m", json!(null), options).await.unwrap();
    let series = format!("errands_queue_jobs{{queue=\"{queue}\",state=\"scheduled\"}}");
    assert_eq!(sample(&scrape(&server).await, &series), 1.0);
    client.delete(handle.id).await.unwrap();
    // The exporter drops a gauge two seconds after it was last set: scrape until it is gone.
    let deadline = tokio::time::Instant::now() + WAIT;
    let is_queue_gauge = |line: &str| {
        line.starts_with("errands_queue_") && line.contains(&format!("queue=\"{queue}\""))
    };
    while scrape(&server).await.lines().any(is_queue_gauge) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted queue's gauges are still scraped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The job series (counters and histograms labelled by queue) of `queue` in an exposition.
fn job_series_of<'a>(metrics: &'a str, queue: &str) -> Vec<&'a str> {
    let label = format!("queue=\"{queue}\"");
    metrics
        .lines()
        .filter(|line| line.starts_with("errands_job") && line.contains(&label))
        .collect()
}

#[tokio::test]
async fn counters_and_histograms_of_a_queue_that_is_gone_leave_the_output() {
    let (server, client, _database) = server().await;
    let (gone, stays) = ("metrics-series-gone", "metrics-series-stays");
    let worker = Worker::builder(client.clone())
        .queues([gone, stays])
        .handle_raw("m", |_ctx: JobContext, _args: Value| async move {
            Ok(json!("done"))
        })
        .build();
    let running = tokio::spawn(worker.run());
    let mut ids = Vec::new();
    for queue in [gone, gone, stays] {
        let options = EnqueueOptions::new().queue(queue);
        let id = client
            .enqueue_raw("m", json!(null), options)
            .await
            .unwrap()
            .id;
        client.wait(id, WAIT).await.unwrap();
        ids.push((queue, id));
    }
    running.abort();
    let before = scrape(&server).await;
    let labels = format!("queue=\"{gone}\",kind=\"m\"");
    assert_eq!(
        sample(
            &before,
            &format!("errands_jobs_completed_total{{{labels}}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &before,
            &format!("errands_job_run_seconds_count{{{labels}}}")
        ),
        2.0
    );
    for (queue, id) in &ids {
        if *queue == gone {
            client.delete(*id).await.unwrap();
        }
    }
    // The very next scrape reads the queue list without it: its series go with it.
    let after = scrape(&server).await;
    assert_eq!(job_series_of(&after, gone), Vec::<&str>::new());
    // The queue that still has a job, quiet as it is, keeps its counts.
    let kept = format!("errands_jobs_completed_total{{queue=\"{stays}\",kind=\"m\"}}");
    assert_eq!(sample(&after, &kept), 1.0);
    assert_eq!(sample(&scrape(&server).await, &kept), 1.0);
}

#[tokio::test]
async fn kinds_beyond_the_series_bound_are_counted_under_other() {
    let (store, _database) = common::test_store().await;
    let config = ServerConfig {
        metrics_max_series: 2,
        ..ServerConfig::default()
    };
    let server = RunningServer::start(store, Arc::new(SystemClock), config)
        .await
        .unwrap();
    let client = Client::new(server.url(), None).unwrap();
    let queue = "metrics-bounded";
    for kind in ["k1", "k2", "k3", "k4", "k5"] {
        for _ in 0..2 {
            let options = EnqueueOptions::new().queue(queue);
            client
                .enqueue_raw(kind, json!(null), options)
                .await
                .unwrap();
        }
    }
    let text = scrape(&server).await;
    let enqueued: Vec<(&str, f64)> = text
        .lines()
        .filter_map(|line| {
            let (series, value) = line
                .strip_prefix("errands_jobs_enqueued_total{")?
                .rsplit_once(' ')?;
            Some((series, value.parse().ok()?))
        })
        .collect();
    assert_eq!(
        enqueued,
        vec![
            ("queue=\"metrics-bounded\",kind=\"k1\"}", 2.0),
            ("queue=\"metrics-bounded\",kind=\"k2\"}", 2.0),
            ("queue=\"_other\",kind=\"_other\"}", 6.0),
        ]
    );
}
