//! Dispatch with a deep backlog: 20,000 jobs drained by raw workers (2 × 5) while 1,000, then
//! 1,000,000, other jobs wait in the same queue, each case on a fresh server. The jobs to drain
//! are enqueued first, so in the queue's first-in-first-out order the backlog stays queued
//! behind them for the whole drain. A 20,000-job drain lasts only seconds, so each depth runs
//! [`ROUNDS`] of them (fresh worker connections each time) and keeps the median rate. Also the
//! server's memory with the deep backlog.

use anyhow::{ensure, Result};

use crate::backend::Backend;
use crate::drain::{CAPACITY, CONNECTIONS};
use crate::enqueue::prefill;
use crate::nodes::Nodes;
use crate::phase::Phase;
use crate::raw_worker;
use crate::report::{thousands, Report, Row, Target, Unit};
use crate::{Ctx, KIND, QUEUE};

/// The kind of the jobs that only wait.
const BACKLOG_KIND: &str = "bench.backlog";
/// Drains of 20,000 jobs per depth; the median rate is reported.
const ROUNDS: u64 = 3;
/// Least share of the shallow rate the deep-backlog drain must reach.
const DEEP_SHARE_TARGET: f64 = 0.80;
/// Most resident memory with the deep backlog, in MB.
const RSS_TARGET_MB: f64 = 300.0;

/// What one backlog depth gave.
struct Depth {
    backlog: u64,
    rate: f64,
}

/// Scenario 6, on SQLite only: the drain rate with a shallow and a deep backlog, their ratio, and the RSS.
pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let drained = ctx.scaled(20_000);
    let mut depths = Vec::new();
    for backlog in [ctx.scaled(1_000), ctx.scaled(1_000_000)] {
        depths.push(one_depth(ctx, report, drained, backlog).await?);
    }
    let (shallow, deep) = (&depths[0], &depths[1]);
    report.push(
        Row::new(
            format!(
                "6. backlog {} vs {} queued",
                thousands(deep.backlog),
                thousands(shallow.backlog)
            ),
            "deep rate / shallow rate",
            deep.rate / shallow.rate,
            Unit::Ratio,
            Target::AtLeast(DEEP_SHARE_TARGET),
        )
        .on(Backend::Sqlite),
    );
    Ok(())
}

/// Drains `drained` jobs [`ROUNDS`] times ahead of a backlog of `backlog` jobs on a fresh
/// server.
async fn one_depth(ctx: &Ctx, report: &mut Report, drained: u64, backlog: u64) -> Result<Depth> {
    let nodes = Nodes::start(ctx, Backend::Sqlite, 1).await?;
    let server = nodes.first();
    let ahead = drained * ROUNDS;
    prefill(server, KIND, 0, ahead).await?;
    let fill = prefill(server, BACKLOG_KIND, ahead, backlog).await?;
    let counts = server.counts(QUEUE).await?;
    ensure!(
        counts.queued == ahead + backlog,
        "expected {} queued, found {counts:?}",
        ahead + backlog
    );
    let (rss_filled, _) = server.rss()?;

    let phase = Phase::start(&nodes).await?;
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        let result =
            raw_worker::drain(&server.worker_url(), QUEUE, CONNECTIONS, CAPACITY, drained).await?;
        ensure!(
            result.errors == 0,
            "the server sent {} error messages to the raw workers",
            result.errors
        );
        rates.push(result.rate(drained));
    }
    let seen = phase.finish(ahead).await?;
    let (rss_drained, rss_peak) = server.rss()?;
    let after = server.wait_completed(QUEUE, ahead).await?;
    nodes.stop().await?;

    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let rate = sorted[sorted.len() / 2];
    let scenario = format!(
        "6. drain {} jobs ahead of {} queued, raw {CONNECTIONS}×{CAPACITY} (median of {ROUNDS})",
        thousands(drained),
        thousands(backlog)
    );
    report.push(
        Row::new(&scenario, "rate", rate, Unit::JobsPerSec, Target::None).on(Backend::Sqlite),
    );
    let mb = |bytes: u64| bytes as f64 / 1e6;
    if backlog >= ctx.scaled(1_000_000) {
        report.push(
            Row::new(
                format!("6. server memory with {} queued", thousands(backlog)),
                "VmRSS",
                mb(rss_filled.max(rss_drained)),
                Unit::Megabytes,
                Target::Below(RSS_TARGET_MB),
            )
            .on(Backend::Sqlite),
        );
    }
    let rounds: Vec<String> = rates.iter().map(|r| thousands(*r as u64)).collect();
    report.note(format!(
        "6. backlog {}: rounds drained at {} jobs/s; setup enqueued the backlog at {} jobs/s \
         (batches of 10,000); RSS {:.1} MB after the enqueue, {:.1} MB after the drains, peak \
         (VmHWM) {:.1} MB; after the drains {} queued, {} completed; drains: {seen}",
        thousands(backlog),
        rounds.join(" / "),
        thousands((backlog as f64 / fill.as_secs_f64()) as u64),
        mb(rss_filled),
        mb(rss_drained),
        mb(rss_peak),
        thousands(after.queued),
        thousands(after.completed),
    ));
    Ok(Depth { backlog, rate })
}
