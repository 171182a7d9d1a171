//! Drain throughput: 100,000 pre-enqueued no-op jobs completed by workers of total capacity
//! 10 (2 connections × 5), first by raw socket workers, then by the SDK's `Worker`, each on a
//! fresh server, and the SDK's rate as a share of the raw one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use errands_client::{Client, Worker};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::enqueue::prefill;
use crate::phase::Phase;
use crate::raw_worker;
use crate::report::{thousands, Report, Row, Target, Unit};
use crate::server::Server;
use crate::{Ctx, KIND, QUEUE};

/// Worker connections in a drain.
pub const CONNECTIONS: usize = 2;
/// Capacity of each connection (total capacity 10).
pub const CAPACITY: u32 = 5;
/// Raw drain target, jobs per second.
const DRAIN_TARGET: f64 = 50_000.0;
/// Least share of the raw rate the SDK must reach.
const SDK_SHARE_TARGET: f64 = 0.90;
/// Longest an SDK drain may take.
const SDK_TIMEOUT: Duration = Duration::from_secs(900);

/// Scenarios 3 and 4: the raw drain, the SDK drain, and their ratio.
pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let total = ctx.scaled(100_000);
    let scenario = |n: u8, who: &str| {
        format!(
            "{n}. drain {} no-op jobs, {who} workers {CONNECTIONS}×{CAPACITY}",
            thousands(total)
        )
    };

    let server = prepared(ctx, total).await?;
    let phase = Phase::start(&server).await?;
    let raw = raw_worker::drain(&server.worker_url(), QUEUE, CONNECTIONS, CAPACITY, total).await?;
    let seen = phase.finish(total).await?;
    ensure!(
        raw.errors == 0,
        "the server sent {} error messages to the raw workers",
        raw.errors
    );
    server.wait_completed(QUEUE, total).await?;
    server.stop().await?;
    let raw_rate = raw.rate(total);
    report.push(Row::new(
        scenario(3, "raw socket"),
        "rate",
        raw_rate,
        Unit::JobsPerSec,
        Target::AtLeast(DRAIN_TARGET),
    ));
    report.note(format!("3. raw drain: {seen}"));

    let server = prepared(ctx, total).await?;
    let phase = Phase::start(&server).await?;
    let sdk_elapsed = sdk_drain(&server, total).await?;
    let seen = phase.finish(total).await?;
    server.wait_completed(QUEUE, total).await?;
    server.stop().await?;
    let sdk_rate = total as f64 / sdk_elapsed.as_secs_f64();
    report.push(Row::new(
        scenario(4, "SDK"),
        "rate",
        sdk_rate,
        Unit::JobsPerSec,
        Target::None,
    ));
    report.push(Row::new(
        "4. SDK drain vs raw drain",
        "SDK rate / raw rate",
        sdk_rate / raw_rate,
        Unit::Ratio,
        Target::AtLeast(SDK_SHARE_TARGET),
    ));
    report.note(format!("4. SDK drain: {seen}"));
    Ok(())
}

/// A fresh server with `total` jobs queued.
async fn prepared(ctx: &Ctx, total: u64) -> Result<Server> {
    let server = Server::start(&ctx.bin).await?;
    prefill(&server, KIND, 0, total).await?;
    let counts = server.counts(QUEUE).await?;
    ensure!(
        counts.queued == total,
        "expected {total} queued, found {counts:?}"
    );
    Ok(server)
}

/// Runs SDK workers with a no-op handler until it has been called `total` times; returns the
/// time from starting the workers to the last call (the handler is ready at once, so that is
/// when the last result goes to the SDK to report).
async fn sdk_drain(server: &Server, total: u64) -> Result<Duration> {
    let client = Client::new(server.url(), None)?;
    let handled = Arc::new(AtomicU64::new(0));
    let finished_at = Arc::new(OnceLock::new());
    let done = Arc::new(Notify::new());
    let started = Instant::now();
    let mut shutdowns = Vec::new();
    let mut runs = Vec::new();
    for i in 0..CONNECTIONS {
        let (handled, finished_at, done) = (handled.clone(), finished_at.clone(), done.clone());
        let worker = Worker::builder(client.clone())
            .queues([QUEUE])
            .capacity(CAPACITY)
            .name(format!("errands-bench-sdk-{i}"))
            .handle_raw(KIND, move |_ctx, _args| {
                if handled.fetch_add(1, Ordering::Relaxed) + 1 == total {
                    let _ = finished_at.set(Instant::now());
                    done.notify_one();
                }
                async { Ok(Value::Null) }
            })
            .build();
        shutdowns.push(worker.shutdown_handle());
        runs.push(tokio::spawn(worker.run()));
    }
    let waited = tokio::time::timeout(SDK_TIMEOUT, done.notified()).await;
    for shutdown in &shutdowns {
        shutdown.shutdown();
    }
    for run in runs {
        run.await.context("an SDK worker panicked")??;
    }
    waited.with_context(|| {
        format!(
            "SDK drain timed out with {} of {total} jobs handled",
            handled.load(Ordering::Relaxed)
        )
    })?;
    let finished = finished_at.get().context("no finish time recorded")?;
    Ok(*finished - started)
}
