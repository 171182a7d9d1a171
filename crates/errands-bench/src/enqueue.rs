//! Enqueue throughput: batches of jobs from one client (`POST /v1/jobs/batch`), and single
//! jobs from many concurrent client tasks (`POST /v1/jobs`). Also the untimed pre-filling the
//! other scenarios use.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::header::CONTENT_TYPE;
use tokio::time::Instant;

use crate::latency::percentile;
use crate::phase::Phase;
use crate::report::{thousands, Report, Row, Target, Unit};
use crate::server::Server;
use crate::{Ctx, KIND, QUEUE};

/// Batch enqueue target, jobs per second.
const BATCH_TARGET: f64 = 200_000.0;
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

/// Scenario 1: 100,000 jobs in batches of 1,000, then of 10,000, each on a fresh server.
pub async fn batch(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let total = ctx.scaled(100_000);
    for size in [1_000, 10_000] {
        let server = Server::start(&ctx.bin).await?;
        let bodies = batch_bodies(KIND, QUEUE, 0, total, size);
        let phase = Phase::start(&server).await?;
        let started = Instant::now();
        post_batches(&server, bodies).await?;
        let elapsed = started.elapsed();
        let seen = phase.finish(total).await?;
        let counts = server.counts(QUEUE).await?;
        ensure!(
            counts.queued == total,
            "expected {total} queued, found {counts:?}"
        );
        report.push(Row::new(
            format!(
                "1. batch enqueue, {} jobs, {} per request",
                thousands(total),
                thousands(size)
            ),
            "rate",
            total as f64 / elapsed.as_secs_f64(),
            Unit::JobsPerSec,
            Target::AtLeast(BATCH_TARGET),
        ));
        report.note(format!(
            "1. batch enqueue, {} per request: {seen}",
            thousands(size)
        ));
        server.stop().await?;
    }
    Ok(())
}

/// Scenario 2: 10,000 jobs enqueued one per `POST /v1/jobs` by 16 concurrent client tasks.
pub async fn one_by_one(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let total = ctx.scaled(10_000);
    let server = Server::start(&ctx.bin).await?;
    let url = format!("{}/v1/jobs", server.url());
    let phase = Phase::start(&server).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..SINGLE_TASKS {
        // Task t sends jobs t, t + 16, t + 32, ...
        let numbers: Vec<u64> = (task..total).step_by(SINGLE_TASKS as usize).collect();
        let http = server.http().clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
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
            anyhow::Ok(latencies)
        }));
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
    let scenario = format!(
        "2. one-by-one enqueue, {} jobs, {SINGLE_TASKS} client tasks",
        thousands(total)
    );
    report.push(Row::new(
        &scenario,
        "rate",
        total as f64 / elapsed.as_secs_f64(),
        Unit::JobsPerSec,
        Target::None,
    ));
    report.note(format!(
        "2. one-by-one enqueue: request latency p50 {:.2} ms, p99 {:.2} ms; {seen}",
        millis(percentile(&latencies, 0.50)),
        millis(percentile(&latencies, 0.99)),
    ));
    server.stop().await
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
