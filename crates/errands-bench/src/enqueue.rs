//! Enqueue throughput: batches of jobs from one client (`POST /v1/jobs/batch`), and single
//! jobs from many concurrent client tasks (`POST /v1/jobs`). Also the untimed pre-filling the
//! other scenarios use.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::header::CONTENT_TYPE;
use tokio::time::Instant;

use crate::backend::Backend;
use crate::latency::percentile;
use crate::nodes::Nodes;
use crate::phase::Phase;
use crate::report::{thousands, Report, Row, Target, Unit};
use crate::server::Server;
use crate::{Ctx, KIND, QUEUE};

/// Batch enqueue target on SQLite, jobs per second.
const BATCH_TARGET: f64 = 200_000.0;
/// Batch enqueue target on PostgreSQL (issue 10), jobs per second.
const PG_BATCH_TARGET: f64 = 100_000.0;
/// Concurrent client tasks of the one-by-one scenario.
const SINGLE_TASKS: u64 = 16;

/// The JSON of one job: its kind, its queue and a small argument.
fn job_json(kind: &str, queue: &str, n: u64) -> String {
    format!(r#"{{"kind":"{kind}","queue":"{queue}","args":{{"n":{n}}}}}"#)
}

/// Request bodies for `POST /v1/jobs/batch` enqueueing `total` jobs, `batch` per request,
/// numbered from `first`.
pub fn batch_bodies(kind: &str, queue: &str, first: u64, total: u64, batch: u64) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut n = first;
    let end = first + total;
    while n < end {
        let upto = (n + batch).min(end);
        let jobs: Vec<String> = (n..upto).map(|i| job_json(kind, queue, i)).collect();
        bodies.push(format!(r#"{{"jobs":[{}]}}"#, jobs.join(",")));
        n = upto;
    }
    bodies
}

/// Sends each body to `POST /v1/jobs/batch`, one request at a time.
pub async fn post_batches(server: &Server, bodies: Vec<String>) -> Result<()> {
    let url = format!("{}/v1/jobs/batch", server.url());
    for body in bodies {
        let response = server
            .http()
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .context("POST /v1/jobs/batch")?;
        let status = response.status();
        ensure!(
            status.as_u16() == 201,
            "POST /v1/jobs/batch: {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Enqueues `total` jobs of `kind` in batches of 10,000 (setup, not measured) and returns how
/// long it took.
pub async fn prefill(server: &Server, kind: &str, first: u64, total: u64) -> Result<Duration> {
    let started = Instant::now();
    for chunk_start in (first..first + total).step_by(100_000) {
        // Built 100,000 jobs at a time so a million-job prefill holds little memory.
        let count = (first + total - chunk_start).min(100_000);
        post_batches(
            server,
            batch_bodies(kind, QUEUE, chunk_start, count, 10_000),
        )
        .await?;
    }
    Ok(started.elapsed())
}

/// Scenario 1 on each store: 100,000 jobs in batches of 1,000, then of 10,000, each on a
/// fresh server, and PostgreSQL's rates as a share of SQLite's.
pub async fn batch(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let total = ctx.scaled(100_000);
    for size in [1_000, 10_000] {
        let scenario = format!(
            "1. batch enqueue, {} jobs, {} per request",
            thousands(total),
            thousands(size)
        );
        let mut rates = BTreeMap::new();
        for &backend in ctx.backends {
            let rate = batch_on(ctx, report, backend, total, size).await?;
            report.push(
                Row::new(
                    &scenario,
                    "rate",
                    rate,
                    Unit::JobsPerSec,
                    Target::AtLeast(batch_target(backend)),
                )
                .on(backend),
            );
            rates.insert(backend, rate);
        }
        report.versus_sqlite(&scenario, "rate", &rates);
    }
    Ok(())
}

/// The batch-enqueue target on `backend`, jobs per second.
fn batch_target(backend: Backend) -> f64 {
    match backend {
        Backend::Sqlite => BATCH_TARGET,
        Backend::Postgres => PG_BATCH_TARGET,
    }
}

/// Enqueues `total` jobs, `size` per request, on a fresh server on `backend`; returns the rate.
async fn batch_on(
    ctx: &Ctx,
    report: &mut Report,
    backend: Backend,
    total: u64,
    size: u64,
) -> Result<f64> {
    let nodes = Nodes::start(ctx, backend, 1).await?;
    let server = nodes.first();
    let bodies = batch_bodies(KIND, QUEUE, 0, total, size);
    let phase = Phase::start(&nodes).await?;
    let started = Instant::now();
    post_batches(server, bodies).await?;
    let elapsed = started.elapsed();
    let seen = phase.finish(total).await?;
    let counts = server.counts(QUEUE).await?;
    ensure!(
        counts.queued == total,
        "expected {total} queued, found {counts:?}"
    );
    report.note(format!(
        "1. batch enqueue, {} per request, {backend}: {seen}",
        thousands(size)
    ));
    nodes.stop().await?;
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// Scenario 2 on each store: 10,000 jobs enqueued one per `POST /v1/jobs` by 16 concurrent
/// client tasks; the rate and the request latency.
pub async fn one_by_one(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let total = ctx.scaled(10_000);
    let scenario = format!(
        "2. one-by-one enqueue, {} jobs, {SINGLE_TASKS} client tasks",
        thousands(total)
    );
    let mut figures: [BTreeMap<Backend, f64>; 3] = Default::default();
    for &backend in ctx.backends {
        let (rate, latencies) = one_by_one_on(ctx, report, backend, total).await?;
        let ms = |p| millis(percentile(&latencies, p));
        for (i, (metric, value, unit)) in [
            ("rate", rate, Unit::JobsPerSec),
            ("request p50", ms(0.50), Unit::Millis),
            ("request p99", ms(0.99), Unit::Millis),
        ]
        .into_iter()
        .enumerate()
        {
            report.push(Row::new(&scenario, metric, value, unit, Target::None).on(backend));
            figures[i].insert(backend, value);
        }
    }
    for (i, metric) in ["rate", "request p50", "request p99"].iter().enumerate() {
        report.versus_sqlite(&scenario, metric, &figures[i]);
    }
    Ok(())
}

/// Scenario 2 on a fresh server on `backend`: the rate and the sorted request latencies.
async fn one_by_one_on(
    ctx: &Ctx,
    report: &mut Report,
    backend: Backend,
    total: u64,
) -> Result<(f64, Vec<Duration>)> {
    let nodes = Nodes::start(ctx, backend, 1).await?;
    let server = nodes.first();
    let url = format!("{}/v1/jobs", server.url());
    let phase = Phase::start(&nodes).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..SINGLE_TASKS {
        // Task t sends jobs t, t + 16, t + 32, ...
        let numbers: Vec<u64> = (task..total).step_by(SINGLE_TASKS as usize).collect();
        tasks.push(tokio::spawn(post_each(
            server.http().clone(),
            url.clone(),
            numbers,
        )));
    }
    let mut latencies = Vec::with_capacity(total as usize);
    for task in tasks {
        latencies.extend(task.await.context("an enqueue task panicked")??);
    }
    let elapsed = started.elapsed();
    let seen = phase.finish(total).await?;
    let counts = server.counts(QUEUE).await?;
    ensure!(
        counts.queued == total,
        "expected {total} queued, found {counts:?}"
    );
    latencies.sort();
    report.note(format!("2. one-by-one enqueue, {backend}: {seen}"));
    nodes.stop().await?;
    Ok((total as f64 / elapsed.as_secs_f64(), latencies))
}

/// Sends jobs `numbers` one `POST /v1/jobs` at a time; returns each request's latency.
async fn post_each(http: reqwest::Client, url: String, numbers: Vec<u64>) -> Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(numbers.len());
    for n in numbers {
        let sent = Instant::now();
        let response = http
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(job_json(KIND, QUEUE, n))
            .send()
            .await
            .context("POST /v1/jobs")?;
        let status = response.status();
        ensure!(status.as_u16() == 201, "POST /v1/jobs: {status}");
        // Read the body so the connection goes back to the pool.
        response.bytes().await?;
        latencies.push(sent.elapsed());
    }
    Ok(latencies)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_job_once() {
        let bodies = batch_bodies("k", "q", 5, 25, 10);
        assert_eq!(bodies.len(), 3);
        let counts: Vec<usize> = bodies
            .iter()
            .map(|b| {
                let v: serde_json::Value = serde_json::from_str(b).unwrap();
                v["jobs"].as_array().unwrap().len()
            })
            .collect();
        assert_eq!(counts, [10, 10, 5]);
        let last: serde_json::Value = serde_json::from_str(&bodies[2]).unwrap();
        assert_eq!(last["jobs"][4]["args"]["n"], 29);
        assert_eq!(last["jobs"][4]["queue"], "q");
    }
}
