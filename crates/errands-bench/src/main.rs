//! `errands-bench`: benchmarks a real `errands serve --sync full` process, each scenario on a
//! fresh server and database, and prints the figures as a markdown table with their targets.
//!
//! ```text
//! cargo build --release -p errands -p errands-bench
//! cargo run --release -p errands-bench -- [--quick]
//! ```

mod backlog;
mod cpu;
mod drain;
mod enqueue;
mod latency;
mod phase;
mod raw_worker;
mod report;
mod server;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, ValueEnum};

use report::Report;

/// The queue every benchmark job goes to.
pub const QUEUE: &str = "bench";
/// The kind of the benchmark's no-op jobs.
pub const KIND: &str = "bench.noop";

/// Benchmarks a real errands server: enqueue and drain throughput, enqueue-to-start latency,
/// and dispatch with a deep backlog.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Divide every job count by 10, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Also write the markdown table to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A group of figures, run on its own server(s).
#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Scenario {
    /// 1. batch enqueue.
    Batch,
    /// 2. one-by-one enqueue from 16 tasks.
    Single,
    /// 3 and 4. raw and SDK drains.
    Drain,
    /// 5. enqueue-to-start latency.
    Latency,
    /// 6. deep backlog.
    Backlog,
}

/// What every scenario needs: the server binary and the size of the run.
pub struct Ctx {
    /// The `errands` binary to start.
    pub bin: PathBuf,
    /// Every count is divided by this (10 with `--quick`).
    pub divisor: u64,
}

impl Ctx {
    /// `full`, the count of a full run, scaled to this run.
    pub fn scaled(&self, full: u64) -> u64 {
        (full / self.divisor).max(1)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let ctx = Ctx {
        bin: server::find_binary()?,
        divisor: if args.quick { 10 } else { 1 },
    };
    let chosen = |s: Scenario| args.only.is_empty() || args.only.contains(&s);
    eprintln!(
        "errands-bench: {} run against {}",
        if args.quick {
            "quick (counts ÷ 10)"
        } else {
            "full"
        },
        ctx.bin.display()
    );

    let mut report = Report::default();
    let mut failed = Vec::new();
    for scenario in Scenario::value_variants() {
        if !chosen(*scenario) {
            continue;
        }
        eprintln!("== {scenario:?}");
        let outcome = match scenario {
            Scenario::Batch => enqueue::batch(&ctx, &mut report).await,
            Scenario::Single => enqueue::one_by_one(&ctx, &mut report).await,
            Scenario::Drain => drain::run(&ctx, &mut report).await,
            Scenario::Latency => latency::run(&ctx, &mut report).await,
            Scenario::Backlog => backlog::run(&ctx, &mut report).await,
        };
        if let Err(error) = outcome {
            eprintln!("   {scenario:?} failed: {error:#}");
            report.note(format!("scenario {scenario:?} FAILED: {error:#}"));
            failed.push(*scenario);
        }
    }

    let table = report.to_markdown();
    println!("{table}");
    if let Some(path) = &args.out {
        std::fs::write(path, &table)?;
    }
    eprintln!(
        "{} figure(s) missed their target; {} scenario(s) failed",
        report.misses(),
        failed.len()
    );
    anyhow::ensure!(failed.is_empty(), "scenarios failed: {failed:?}");
    Ok(())
}
