//! `errands check`: a probe for monitors and orchestrators. It exits non-zero, saying why,
//! when the server is unreachable or not ready, when a queue's oldest ready job is older than
//! `--max-age`, or when no connected worker serves a queue named with `--queue`. With
//! `--queue`, only the named queues are looked at.

use anyhow::bail;
use clap::Args;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use crate::commands::{text, Remote};

/// Options of `errands check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Fail when a queue's oldest ready job is older than this, e.g. 5m (only the queues
    /// named with --queue, when there are some).
    #[arg(long, value_parser = humantime::parse_duration)]
    max_age: Option<std::time::Duration>,
    /// Check only this queue, and fail when no connected worker serves it (repeatable).
    #[arg(long = "queue")]
    queues: Vec<String>,
    #[command(flatten)]
    remote: Remote,
}

/// What the probe found: printed with `--json`, whether it passed or not.
#[derive(Debug, Serialize)]
struct Outcome {
    /// True when there is no problem.
    ok: bool,
    /// Every problem found; empty when `ok`.
    problems: Vec<Problem>,
}

/// One reason the probe fails.
#[derive(Debug, Serialize)]
struct Problem {
    /// What failed: `unreachable`, `not_ready`, `too_old` or `unserved`.
    reason: &'static str,
    /// The queue it is about, if it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<String>,
    /// The oldest ready job's age in seconds, for `too_old`.
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_ready_age: Option<f64>,
    /// The `--max-age` limit in seconds, for `too_old`.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_age: Option<f64>,
    /// The same, for a person.
    message: String,
}

impl Problem {
    fn about_server(reason: &'static str, message: String) -> Self {
        Self {
            reason,
            queue: None,
            oldest_ready_age: None,
            max_age: None,
            message,
        }
    }
}

/// `errands check`.
pub async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let problems = match probe(&args).await {
        Ok(problems) => problems,
        // The server did not answer the questions about its queues: that is the problem.
        Err(error) => vec![Problem::about_server(
            server_reason(&error),
            format!("{error:#}"),
        )],
    };
    let outcome = Outcome {
        ok: problems.is_empty(),
        problems,
    };
    if args.remote.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else if outcome.ok {
        println!("ok");
    }
    if outcome.ok {
        return Ok(());
    }
    let messages: Vec<&str> = outcome
        .problems
        .iter()
        .map(|p| p.message.as_str())
        .collect();
    bail!("{}", messages.join("\n"))
}

/// `unreachable` when no HTTP answer came at all, else `not_ready`.
fn server_reason(error: &anyhow::Error) -> &'static str {
    match error.downcast_ref::<reqwest::Error>() {
        Some(error) if error.is_connect() || error.is_timeout() => "unreachable",
        _ => "not_ready",
    }
}

/// Asks the server; an error means it is unreachable or not ready.
async fn probe(args: &CheckArgs) -> anyhow::Result<Vec<Problem>> {
    let remote = &args.remote;
    remote
        .call(remote.request(Method::GET, "/readyz"))
        .await
        .map_err(|error| error.context("server is not ready"))?;
    let mut problems = Vec::new();
    if let Some(max_age) = args.max_age {
        let reply = remote.list_all("/v1/queues", "queues").await?;
        problems.extend(too_old(&reply, &args.queues, max_age.as_secs_f64()));
    }
    if !args.queues.is_empty() {
        let reply = remote.list_all("/v1/workers", "workers").await?;
        problems.extend(unserved(&reply, &args.queues));
    }
    Ok(problems)
}

/// The queues of a `/v1/queues` reply whose oldest ready job is older than `max_age`
/// seconds; only those in `only`, unless it is empty.
fn too_old(reply: &Value, only: &[String], max_age: f64) -> Vec<Problem> {
    let queues = reply["queues"].as_array().into_iter().flatten();
    queues
        .filter(|queue| only.is_empty() || only.iter().any(|name| queue["name"] == name.as_str()))
        .filter_map(|queue| {
            let age = queue["oldest_ready_age"]
                .as_f64()
                .filter(|age| *age > max_age)?;
            let name = text(&queue["name"]);
            Some(Problem {
                reason: "too_old",
                message: format!(
                    "queue {name}: oldest ready job is {age:.1}s old (limit {max_age}s)"
                ),
                queue: Some(name),
                oldest_ready_age: Some(age),
                max_age: Some(max_age),
            })
        })
        .collect()
}

/// The queues of `wanted` that no connected worker serves, according to a `/v1/workers`
/// reply (a worker of capacity 0 serves nothing).
fn unserved(reply: &Value, wanted: &[String]) -> Vec<Problem> {
    let served: Vec<&str> = reply["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|worker| worker["capacity"].as_u64().unwrap_or(0) > 0)
        .flat_map(|worker| worker["queues"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    wanted
        .iter()
        .filter(|queue| !served.contains(&queue.as_str()))
        .map(|queue| Problem {
            reason: "unserved",
            queue: Some(queue.clone()),
            oldest_ready_age: None,
            max_age: None,
            message: format!("queue {queue}: no connected worker serves it"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn queues() -> Value {
        json!({"queues": [
            {"name": "emails", "oldest_ready_age": 30.0},
            {"name": "reports", "oldest_ready_age": 900.0},
            {"name": "idle", "oldest_ready_age": null},
        ]})
    }

    #[test]
    fn every_queue_is_checked_when_none_is_named() {
        let problems = too_old(&queues(), &[], 60.0);
        let named: Vec<_> = problems.iter().map(|p| p.queue.as_deref()).collect();
        assert_eq!(named, [Some("reports")]);
        assert_eq!(problems[0].oldest_ready_age, Some(900.0));
        assert_eq!(problems[0].max_age, Some(60.0));
    }

    #[test]
    fn only_the_named_queues_are_checked() {
        assert!(too_old(&queues(), &["emails".into()], 60.0).is_empty());
        let problems = too_old(&queues(), &["emails".into(), "idle".into()], 10.0);
        let named: Vec<_> = problems.iter().map(|p| p.queue.as_deref()).collect();
        assert_eq!(named, [Some("emails")]);
    }

    #[test]
    fn a_queue_is_served_only_by_a_worker_with_capacity() {
        let workers = json!({"workers": [
            {"queues": ["emails"], "capacity": 0},
            {"queues": ["images", "reports"], "capacity": 4},
        ]});
        let wanted = ["emails".to_owned(), "reports".to_owned()];
        let problems = unserved(&workers, &wanted);
        let named: Vec<_> = problems.iter().map(|p| p.queue.as_deref()).collect();
        assert_eq!(named, [Some("emails")]);
        assert_eq!(problems[0].reason, "unserved");
    }
}
