//! Enqueue-to-start latency on an idle worker: one raw worker is connected and idle; jobs are
//! enqueued one at a time, and each is timed from just before its `POST /v1/jobs` to its `job`
//! frame arriving at the worker. On PostgreSQL also with the worker connected to a second node
//! sharing the database, so the wake-up travels by `LISTEN/NOTIFY`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use futures_util::SinkExt;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use tokio::time::Instant;

use crate::backend::Backend;
use crate::nodes::Nodes;
use crate::phase::Phase;
use crate::raw_worker::{self, Socket};
use crate::report::{thousands, Report, Row, Target, Unit};
use crate::server::Server;
use crate::{Ctx, KIND, QUEUE};

/// Jobs sent first to open connections and warm caches, not counted.
const WARMUP: u64 = 20;
/// The worker's capacity: more than the one job it ever holds, so it always has room.
const CAPACITY: u32 = 10;
/// The cross-node p99 target on PostgreSQL (issue 10), in milliseconds.
const PG_CROSS_NODE_P99_MS: f64 = 10.0;
/// Longest wait for one job's frame or completion.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The `p` quantile (0–1) of sorted samples, by nearest rank; zero when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One enqueue, timed.
struct Sample {
    /// From just before the POST to the job frame's arrival.
    to_start: Duration,
    /// From just before the POST to its response.
    post: Duration,
}

/// Scenario 5 on each store: 2,000 jobs enqueued one at a time to an idle worker on the same
/// node; on PostgreSQL also with the worker on another node than the enqueue.
pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let mut p99 = BTreeMap::new();
    let mut same_scenario = String::new();
    for &backend in ctx.backends {
        let (scenario, same) = measure(ctx, report, backend, false).await?;
        p99.insert(backend, same);
        same_scenario = scenario;
        if backend == Backend::Postgres {
            let (_, cross) = measure(ctx, report, backend, true).await?;
            report.push(
                Row::new(
                    "5. enqueue-to-start latency, worker on another node vs the same node",
                    "p99 cross-node / p99 same node",
                    cross / same,
                    Unit::Ratio,
                    Target::None,
                )
                .on(backend),
            );
        }
    }
    report.versus_sqlite(same_scenario, "p99", &p99);
    Ok(())
}

/// The latency scenario on fresh nodes of `backend`: the worker on the node enqueued to, or
/// (`cross_node`) on a second node. Returns the scenario's name and its p99 in milliseconds.
async fn measure(
    ctx: &Ctx,
    report: &mut Report,
    backend: Backend,
    cross_node: bool,
) -> Result<(String, f64)> {
    let count = ctx.scaled(2_000);
    let nodes = Nodes::start(ctx, backend, if cross_node { 2 } else { 1 }).await?;
    let (server, worker_node) = match nodes.servers() {
        [a, b] => (a, b),
        _ => (nodes.first(), nodes.first()),
    };
    let mut socket = raw_worker::connect(&worker_node.worker_url()).await?;
    raw_worker::hello(&mut socket, QUEUE, CAPACITY).await?;
    // The welcome: the worker is registered and idle from here on.
    raw_worker::next_frame(&mut socket)
        .await?
        .context("the server closed the socket after hello")?;

    for n in 0..WARMUP {
        one_job(server, &mut socket, n).await?;
    }
    let phase = Phase::start(&nodes).await?;
    let mut samples = Vec::with_capacity(count as usize);
    for n in WARMUP..WARMUP + count {
        samples.push(one_job(server, &mut socket, n).await?);
    }
    let seen = phase.finish(count).await?;
    drop(socket);
    nodes.stop().await?;
    let where_ = if cross_node {
        "worker on another node"
    } else {
        "idle raw worker"
    };
    let scenario = format!(
        "5. enqueue-to-start latency, {where_}, {} jobs",
        thousands(count)
    );
    let p99 = push_latencies(report, &scenario, backend, cross_node, &samples);
    report.note(format!(
        "5. latency, {where_}, {backend}: {}; {seen}",
        post_note(&samples)
    ));
    Ok((scenario, p99))
}

/// The p50, p99 and max rows of `samples`, with their targets; returns the p99 in ms.
fn push_latencies(
    report: &mut Report,
    scenario: &str,
    backend: Backend,
    cross_node: bool,
    samples: &[Sample],
) -> f64 {
    let mut to_start: Vec<Duration> = samples.iter().map(|s| s.to_start).collect();
    to_start.sort();
    let (p50_target, p99_target) = match (backend, cross_node) {
        (Backend::Sqlite, _) => (Target::Below(1.0), Target::Below(5.0)),
        (Backend::Postgres, true) => (Target::None, Target::Below(PG_CROSS_NODE_P99_MS)),
        (Backend::Postgres, false) => (Target::None, Target::None),
    };
    let p99 = ms(percentile(&to_start, 0.99));
    let max = to_start.last().copied().unwrap_or_default();
    for (metric, value, target) in [
        ("p50", ms(percentile(&to_start, 0.50)), p50_target),
        ("p99", p99, p99_target),
        ("max", ms(max), Target::None),
    ] {
        report.push(Row::new(scenario, metric, value, Unit::Millis, target).on(backend));
    }
    p99
}

/// The POST's own round trip, and how often the job frame beat its reply.
fn post_note(samples: &[Sample]) -> String {
    let mut post: Vec<Duration> = samples.iter().map(|s| s.post).collect();
    post.sort();
    let before_reply = samples.iter().filter(|s| s.to_start < s.post).count();
    format!(
        "the POST's own round trip (enqueue committed) was p50 {:.3} ms, p99 {:.3} ms, \
         max {:.3} ms; the job frame arrived before the POST's reply in {} of {} jobs",
        ms(percentile(&post, 0.50)),
        ms(percentile(&post, 0.99)),
        ms(post.last().copied().unwrap_or_default()),
        thousands(before_reply as u64),
        thousands(samples.len() as u64),
    )
}

/// A duration in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Enqueues job `n`, times it to its arrival, completes it, and waits until the completion is
/// stored so the worker and the server are idle again before the next one.
async fn one_job(server: &Server, socket: &mut Socket, n: u64) -> Result<Sample> {
    let body = format!(r#"{{"kind":"{KIND}","queue":"{QUEUE}","args":{{"n":{n}}}}}"#);
    let url = format!("{}/v1/jobs", server.url());
    let sent = Instant::now();
    let post = async {
        let response = server
            .http()
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .context("POST /v1/jobs")?;
        let status = response.status();
        let reply: Value = response.json().await?;
        let replied = sent.elapsed();
        ensure!(status.as_u16() == 201, "POST /v1/jobs: {status}: {reply}");
        let id = reply["id"]
            .as_str()
            .context("no id in the reply")?
            .to_owned();
        Ok((id, replied))
    };
    let arrival = async {
        loop {
            let frame = raw_worker::next_frame(socket)
                .await?
                .context("the server closed the worker socket")?;
            if !frame.errors.is_empty() {
                bail!("server error: {}", frame.errors.join("; "));
            }
            if !frame.jobs.is_empty() {
                return Ok((sent.elapsed(), frame.jobs));
            }
        }
    };
    let both = async { tokio::try_join!(post, arrival) };
    let ((id, post), (to_start, jobs)) = tokio::time::timeout(STEP_TIMEOUT, both)
        .await
        .with_context(|| format!("job {n} did not arrive within {STEP_TIMEOUT:?}"))??;
    ensure!(
        jobs == [id.clone()],
        "expected job {id} alone, the worker got {jobs:?}"
    );
    socket.send(raw_worker::completions(&jobs)).await?;
    wait_finished(server, &id).await?;
    Ok(Sample { to_start, post })
}

/// Re-reads the job until it is completed.
async fn wait_finished(server: &Server, id: &str) -> Result<()> {
    let url = format!("{}/v1/jobs/{id}", server.url());
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let job: Value = server.http().get(&url).send().await?.json().await?;
        if job["state"] == "completed" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("job {id} is still {} after {STEP_TIMEOUT:?}", job["state"]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&samples, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
