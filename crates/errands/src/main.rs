//! `errands`: runs the job server, and talks to a running one from the command line.

mod check;
mod commands;
mod cron;
mod logging;
mod serve;
mod table;

use clap::{Parser, Subcommand};

/// errands: a background-job server with an embedded store.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the job server.
    Serve(Box<serve::ServeArgs>),
    /// Bring a database's schema up to this version, then exit.
    Migrate(serve::MigrateArgs),
    /// Enqueue a job.
    Enqueue(commands::EnqueueArgs),
    /// Show one job.
    Job(commands::JobArgs),
    /// List jobs.
    Jobs(commands::JobsArgs),
    /// List queues with counts by state.
    Queues(commands::Remote),
    /// Cancel a job.
    Cancel(commands::JobArgs),
    /// Retry a dead, cancelled or completed job.
    Retry(commands::JobArgs),
    /// List connected workers.
    Workers(commands::Remote),
    /// Check the server for a probe: exits non-zero, saying why, when something is wrong.
    Check(check::CheckArgs),
    /// Pause a queue: it accepts jobs and dispatches none.
    Pause(commands::QueueArgs),
    /// Resume a paused queue.
    Resume(commands::QueueArgs),
    /// Cron schedules: list, set, delete, pause, resume, trigger.
    Cron(cron::CronArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Migrate(args) => serve::migrate(args).await,
        Command::Enqueue(args) => commands::enqueue(args).await,
        Command::Job(args) => commands::job(args).await,
        Command::Jobs(args) => commands::jobs(args).await,
        Command::Queues(remote) => commands::queues(remote).await,
        Command::Cancel(args) => commands::job_action(args, "cancel").await,
        Command::Retry(args) => commands::job_action(args, "retry").await,
        Command::Workers(remote) => commands::workers(remote).await,
        Command::Check(args) => check::check(args).await,
        Command::Pause(args) => commands::queue_action(args, "pause").await,
        Command::Resume(args) => commands::queue_action(args, "resume").await,
        Command::Cron(args) => cron::run(args).await,
    }
}
