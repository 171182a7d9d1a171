//! `errands-bench`: benchmarks real `errands serve --sync full` processes, each scenario on
//! fresh servers and a fresh database (a SQLite file, or a PostgreSQL database shared by one
//! or more nodes), and prints the figures as a markdown table with their targets.
//!
//! ```text
//! cargo build --release -p errands -p errands-bench
//! cargo run --release -p errands-bench -- [--quick] [--backend sqlite|postgres|both]
//! ```

mod backend;
mod backlog;
mod cpu;
mod drain;
mod enqueue;
mod latency;
mod nodes;
mod pg;
mod pg_waits;
mod phase;
mod raw_worker;
mod report;
mod server;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, ValueEnum};

use backend::{Backend, BackendChoice};
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
    /// Divide every job count by 10, for a smoke run (the same as `--divide 10`).
    #[arg(long)]
    quick: bool,
    /// Divide every job count by this, for a shorter run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    divide: Option<u64>,
    /// The stores to run every scenario on.
    #[arg(long, value_enum, default_value = "both")]
    backend: BackendChoice,
    /// The PostgreSQL server to create each scenario's database on (no database name).
    #[arg(
        long,
        env = "ERRANDS_BENCH_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    postgres: String,
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

/// What every scenario needs: the server binary, the stores and the size of the run.
pub struct Ctx {
    /// The `errands` binary to start.
    pub bin: PathBuf,
    /// Every count is divided by this (10 with `--quick`).
    pub divisor: u64,
    /// The stores each scenario runs on, SQLite first.
    pub backends: &'static [Backend],
    /// `postgres://user@host:port` of the PostgreSQL server, without a database name.
    pub postgres: String,
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
    let divisor = args.divide.unwrap_or(if args.quick { 10 } else { 1 });
    let ctx = Ctx {
        bin: server::find_binary()?,
        divisor,
        backends: args.backend.backends(),
        postgres: args.postgres.trim_end_matches('/').to_owned(),
    };
    let chosen = |s: Scenario| args.only.is_empty() || args.only.contains(&s);
    eprintln!(
        "errands-bench: {} run on {:?} against {}",
        if divisor == 1 {
            "full".to_owned()
        } else {
            format!("short (counts ÷ {divisor})")
        },
        ctx.backends,
        ctx.bin.display()
    );

    let mut report = Report::default();
    if ctx.backends.contains(&Backend::Postgres) {
        report.note(format!(
            "PostgreSQL server: {}",
            pg::describe(&ctx.postgres).await?
        ));
    }
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
            Scenario::Backlog if ctx.backends.contains(&Backend::Sqlite) => {
                backlog::run(&ctx, &mut report).await
            }
            Scenario::Backlog => {
                report.note("6. backlog: measured on SQLite only, not run");
                Ok(())
            }
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
