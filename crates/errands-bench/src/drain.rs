//! Drain throughput: 100,000 pre-enqueued no-op jobs completed by workers of total capacity
//! 10. On SQLite (2 connections × 5) first by raw socket workers, then by the SDK's `Worker`,
//! each on a fresh server, and the SDK's rate as a share of the raw one. On PostgreSQL by SDK
//! workers on one node (2 × 5) and on three nodes sharing the database (one worker on each,
//! 4 + 3 + 3), and the dead tuples each drain left in `errands.jobs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use errands_client::{Client, Worker};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::Backend;
use crate::enqueue::prefill;
use crate::nodes::Nodes;
use crate::phase::Phase;
use crate::raw_worker;
use crate::report::{thousands, Report, Row, Target, Unit};
use crate::server::Server;
use crate::{Ctx, KIND, QUEUE};

/// Worker connections in a drain.
pub const CONNECTIONS: usize = 2;
/// Capacity of each connection (total capacity 10).
pub const CAPACITY: u32 = 5;
/// Total worker capacity in every drain.
const TOTAL_CAPACITY: u32 = CONNECTIONS as u32 * CAPACITY;
/// One-node PostgreSQL SDK drain target (issue 10), jobs per second.
const PG_DRAIN_TARGET: f64 = 10_000.0;
/// Least share of the one-node PostgreSQL rate three nodes must reach.
const PG_NODES_SHARE_TARGET: f64 = 0.80;
/// Raw drain target, jobs per second.
const DRAIN_TARGET: f64 = 50_000.0;
/// Least share of the raw rate the SDK must reach.
const SDK_SHARE_TARGET: f64 = 0.90;
/// Longest an SDK drain may take.
const SDK_TIMEOUT: Duration = Duration::from_secs(900);

/// Scenarios 3 and 4: on SQLite the raw drain, the SDK drain and their ratio; on PostgreSQL
/// the SDK drain on one node and on three, with the dead tuples each left; and PostgreSQL's
/// one-node rate as a share of SQLite's.
pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let total = ctx.scaled(100_000);
    let mut sdk_rates = BTreeMap::new();
    for &backend in ctx.backends {
        let rate = match backend {
            Backend::Sqlite => run_sqlite(ctx, report, total).await?,
            Backend::Postgres => run_postgres(ctx, report, total).await?,
        };
        sdk_rates.insert(backend, rate);
    }
    report.versus_sqlite(
        format!(
            "4. drain {} no-op jobs, SDK workers, one node",
            thousands(total)
        ),
        "rate",
        &sdk_rates,
    );
    Ok(())
}

/// The name of a drain scenario: `n`, the job count and the workers.
fn scenario(n: u8, total: u64, workers: &str) -> String {
    format!("{n}. drain {} no-op jobs, {workers}", thousands(total))
}

/// The raw drain, the SDK drain and their ratio on SQLite; returns the SDK rate.
async fn run_sqlite(ctx: &Ctx, report: &mut Report, total: u64) -> Result<f64> {
    let backend = Backend::Sqlite;
    let nodes = prepared(ctx, backend, 1, total).await?;
    let server = nodes.first();
    let phase = Phase::start(&nodes).await?;
    let raw = raw_worker::drain(&server.worker_url(), QUEUE, CONNECTIONS, CAPACITY, total).await?;
    let seen = phase.finish(total).await?;
    ensure!(
        raw.errors == 0,
        "the server sent {} error messages to the raw workers",
        raw.errors
    );
    server.wait_completed(QUEUE, total).await?;
    nodes.stop().await?;
    let raw_rate = raw.rate(total);
    let raw_workers = format!("raw socket workers {CONNECTIONS}×{CAPACITY}");
    report.push(
        Row::new(
            scenario(3, total, &raw_workers),
            "rate",
            raw_rate,
            Unit::JobsPerSec,
            Target::AtLeast(DRAIN_TARGET),
        )
        .on(backend),
    );
    report.note(format!("3. raw drain, {backend}: {seen}"));

    let sdk_rate = sdk_scenario(ctx, report, backend, &[CONNECTIONS], total).await?;
    report.push(
        Row::new(
            "4. SDK drain vs raw drain",
            "SDK rate / raw rate",
            sdk_rate / raw_rate,
            Unit::Ratio,
            Target::AtLeast(SDK_SHARE_TARGET),
        )
        .on(backend),
    );
    Ok(sdk_rate)
}

/// The SDK drain on one PostgreSQL node and on three, and the ratio; returns the one-node rate.
async fn run_postgres(ctx: &Ctx, report: &mut Report, total: u64) -> Result<f64> {
    let backend = Backend::Postgres;
    let one = sdk_scenario(ctx, report, backend, &[CONNECTIONS], total).await?;
    let three = sdk_scenario(ctx, report, backend, &[1, 1, 1], total).await?;
    report.push(
        Row::new(
            format!("4. drain {} no-op jobs, SDK workers", thousands(total)),
            "3 nodes rate / 1 node rate",
            three / one,
            Unit::Ratio,
            Target::AtLeast(PG_NODES_SHARE_TARGET),
        )
        .on(backend),
    );
    Ok(one)
}

/// One SDK drain on fresh nodes: `per_node[i]` workers on node `i`, total capacity
/// [`TOTAL_CAPACITY`] shared among them. Pushes the rate (and on PostgreSQL the dead tuples
/// left in `errands.jobs`); returns the rate.
async fn sdk_scenario(
    ctx: &Ctx,
    report: &mut Report,
    backend: Backend,
    per_node: &[usize],
    total: u64,
) -> Result<f64> {
    let nodes = prepared(ctx, backend, per_node.len(), total).await?;
    let workers = spread(nodes.servers(), per_node);
    let label = describe(&workers, per_node.len());
    let phase = Phase::start(&nodes).await?;
    let elapsed = sdk_drain(&workers, total).await?;
    let seen = phase.finish(total).await?;
    nodes.first().wait_completed(QUEUE, total).await?;
    let table = nodes.stop().await?;
    let rate = total as f64 / elapsed.as_secs_f64();
    let name = scenario(4, total, &label);
    let target = match (backend, per_node.len()) {
        (Backend::Postgres, 1) => Target::AtLeast(PG_DRAIN_TARGET),
        _ => Target::None,
    };
    report.push(Row::new(&name, "rate", rate, Unit::JobsPerSec, target).on(backend));
    report.note(format!("4. {label}, {backend}: {seen}"));
    if let Some(table) = table {
        report.push(
            Row::new(
                &name,
                "dead tuples in errands.jobs after the drain",
                table.dead as f64,
                Unit::Count,
                Target::None,
            )
            .on(backend),
        );
        report.note(format!("4. {label}, {backend}: {table}"));
    }
    Ok(rate)
}

/// Worker URLs and capacities: `per_node[i]` workers on node `i`, [`TOTAL_CAPACITY`] split
/// as evenly as it goes, the first workers getting the remainder.
fn spread(servers: &[Server], per_node: &[usize]) -> Vec<(String, u32)> {
    let urls: Vec<&str> = servers
        .iter()
        .zip(per_node)
        .flat_map(|(server, n)| std::iter::repeat_n(server.url(), *n))
        .collect();
    let count = urls.len().max(1) as u32;
    urls.iter()
        .enumerate()
        .map(|(i, url)| {
            let extra = u32::from((i as u32) < TOTAL_CAPACITY % count);
            ((*url).to_owned(), TOTAL_CAPACITY / count + extra)
        })
        .collect()
}

/// E.g. `SDK workers 2×5, one node` or `SDK workers 4+3+3 on 3 nodes`.
fn describe(workers: &[(String, u32)], nodes: usize) -> String {
    let capacities: Vec<String> = workers.iter().map(|(_, c)| c.to_string()).collect();
    let all_same = workers.windows(2).all(|w| w[0].1 == w[1].1);
    let shape = match workers.first() {
        Some((_, c)) if all_same => format!("{}×{c}", workers.len()),
        _ => capacities.join("+"),
    };
    if nodes == 1 {
        format!("SDK workers {shape}, one node")
    } else {
        format!("SDK workers {shape} on {nodes} nodes")
    }
}

/// Fresh nodes on `backend` with `total` jobs queued (through the first).
async fn prepared(ctx: &Ctx, backend: Backend, count: usize, total: u64) -> Result<Nodes> {
    let nodes = Nodes::start(ctx, backend, count).await?;
    let server = nodes.first();
    prefill(server, KIND, 0, total).await?;
    let counts = server.counts(QUEUE).await?;
    ensure!(
        counts.queued == total,
        "expected {total} queued, found {counts:?}"
    );
    Ok(nodes)
}

/// Runs SDK workers with a no-op handler until it has been called `total` times; returns the
/// time from starting the workers to the last call (the handler is ready at once, so that is
/// when the last result goes to the SDK to report).
async fn sdk_drain(workers: &[(String, u32)], total: u64) -> Result<Duration> {
    let handled = Arc::new(AtomicU64::new(0));
    let finished_at = Arc::new(OnceLock::new());
    let done = Arc::new(Notify::new());
    let started = Instant::now();
    let mut shutdowns = Vec::new();
    let mut runs = Vec::new();
    for (i, (url, capacity)) in workers.iter().enumerate() {
        let client = Client::new(url, None)?;
        let (handled, finished_at, done) = (handled.clone(), finished_at.clone(), done.clone());
        let worker = Worker::builder(client)
            .queues([QUEUE])
            .capacity(*capacity)
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
