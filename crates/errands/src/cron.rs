//! `errands cron …`: cron schedules on a running server.

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use crate::commands::{text, Remote};
use crate::table;

/// Options of `errands cron`.
#[derive(Args)]
pub struct CronArgs {
    #[command(subcommand)]
    command: CronCommand,
}

#[derive(Subcommand)]
enum CronCommand {
    /// List schedules with their next fire times.
    List(Remote),
    /// Create or replace a schedule.
    Set(SetArgs),
    /// Delete a schedule (jobs it enqueued stay).
    Delete(NameArgs),
    /// Pause a schedule: it enqueues nothing until resumed.
    Pause(NameArgs),
    /// Resume a paused schedule from its next fire time after now.
    Resume(NameArgs),
    /// Enqueue a schedule's job now.
    Trigger(NameArgs),
}

/// A command about one schedule.
#[derive(Args)]
struct NameArgs {
    /// Schedule name.
    name: String,
    #[command(flatten)]
    remote: Remote,
}

/// Options of `errands cron set`.
#[derive(Args)]
struct SetArgs {
    /// Schedule name.
    name: String,
    /// Cron expression (5 fields, or 6 with seconds first) or interval (`every 30s`).
    #[arg(long)]
    schedule: String,
    /// IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    tz: String,
    /// Task name of the job to enqueue.
    #[arg(long)]
    kind: String,
    /// Queue name.
    #[arg(long)]
    queue: Option<String>,
    /// Job arguments as JSON.
    #[arg(long)]
    args: Option<String>,
    /// Higher runs first.
    #[arg(long)]
    priority: Option<i32>,
    /// Attempts before the job is dead.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// What to do about fire times missed while no server ran: skip or run-once.
    #[arg(long, default_value = "skip", value_parser = ["skip", "run-once", "run_once"])]
    catch_up: String,
    #[command(flatten)]
    remote: Remote,
}

/// The path of schedule `name` plus `suffix`, the name percent-encoded.
fn path(name: &str, suffix: &str) -> String {
    let mut path = String::from("/v1/cron/");
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path.push_str(suffix);
    path
}

/// `errands cron …`.
pub async fn run(args: CronArgs) -> anyhow::Result<()> {
    match args.command {
        CronCommand::List(remote) => {
            let reply = remote.list_all("/v1/cron", "schedules").await?;
            remote.print(&reply, |r| table::cron(&r["schedules"]));
            Ok(())
        }
        CronCommand::Set(args) => set(args).await,
        CronCommand::Delete(args) => {
            let remote = &args.remote;
            remote
                .call(remote.request(Method::DELETE, &path(&args.name, "")))
                .await?;
            remote.print(&json!({"deleted": args.name}), |_| {
                format!("{} deleted\n", args.name)
            });
            Ok(())
        }
        CronCommand::Pause(args) => entry_action(args, "/pause").await,
        CronCommand::Resume(args) => entry_action(args, "/resume").await,
        CronCommand::Trigger(args) => {
            let remote = &args.remote;
            let reply = remote
                .call(remote.request(Method::POST, &path(&args.name, "/trigger")))
                .await?;
            remote.print(&reply, |r| {
                format!("{} {}\n", text(&r["id"]), text(&r["state"]))
            });
            Ok(())
        }
    }
}

async fn set(args: SetArgs) -> anyhow::Result<()> {
    let mut job = json!({"kind": args.kind});
    if let Some(queue) = args.queue {
        job["queue"] = json!(queue);
    }
    if let Some(raw) = args.args {
        let value: Value = serde_json::from_str(&raw).context("--args is not valid JSON")?;
        job["args"] = value;
    }
    if let Some(priority) = args.priority {
        job["priority"] = json!(priority);
    }
    if let Some(max_attempts) = args.max_attempts {
        job["max_attempts"] = json!(max_attempts);
    }
    let body = json!({
        "schedule": args.schedule,
        "tz": args.tz,
        "job": job,
        "catch_up": args.catch_up.replace('-', "_"),
    });
    let remote = &args.remote;
    let entry = remote
        .call(
            remote
                .request(Method::PUT, &path(&args.name, ""))
                .json(&body),
        )
        .await?;
    remote.print(&entry, summary);
    Ok(())
}

async fn entry_action(args: NameArgs, action: &str) -> anyhow::Result<()> {
    let remote = &args.remote;
    let entry = remote
        .call(remote.request(Method::POST, &path(&args.name, action)))
        .await?;
    remote.print(&entry, summary);
    Ok(())
}

/// One schedule on a line or two: name, state, next fire times.
fn summary(entry: &Value) -> String {
    let state = if entry["paused"] == json!(true) {
        "paused"
    } else {
        "running"
    };
    let next: Vec<String> = entry["next_fire_times"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let next = if next.is_empty() {
        "-".to_owned()
    } else {
        next.join(", ")
    };
    format!("{} {state}\nnext: {next}\n", text(&entry["name"]))
}
