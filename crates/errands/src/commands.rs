//! Commands that talk to a running server over its HTTP API.

use anyhow::{bail, Context};
use clap::Args;
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

use crate::table;

/// Where the server is.
#[derive(Args, Clone)]
pub struct Remote {
    /// Server URL.
    #[arg(
        long,
        env = "ERRANDS_URL",
        default_value = "http://127.0.0.1:7733",
        global = true
    )]
    url: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// Options of `errands enqueue`.
#[derive(Args)]
pub struct EnqueueArgs {
    /// Task name.
    kind: String,
    /// Queue name.
    #[arg(long, default_value = "default")]
    queue: String,
    /// Arguments as JSON.
    #[arg(long, default_value = "null")]
    args: String,
    /// Wait this long before the job is due, e.g. 10s or 5m.
    #[arg(long, value_parser = humantime::parse_duration)]
    delay: Option<std::time::Duration>,
    /// Higher runs first.
    #[arg(long)]
    priority: Option<i32>,
    /// Attempts before the job is dead.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Deduplication key.
    #[arg(long)]
    unique_key: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

/// A command about one job.
#[derive(Args)]
pub struct JobArgs {
    /// Job id.
    id: String,
    #[command(flatten)]
    remote: Remote,
}

/// Options of `errands jobs`.
#[derive(Args)]
pub struct JobsArgs {
    /// Only this queue.
    #[arg(long)]
    queue: Option<String>,
    /// Only this state (scheduled, queued, running, completed, dead, cancelled).
    #[arg(long)]
    state: Option<String>,
    /// Only this kind.
    #[arg(long)]
    kind: Option<String>,
    /// Most jobs to show.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    remote: Remote,
}

/// A command about one queue.
#[derive(Args)]
pub struct QueueArgs {
    /// Queue name.
    name: String,
    #[command(flatten)]
    remote: Remote,
}

impl Remote {
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = format!("{}{}", self.url.trim_end_matches('/'), path);
        let request = reqwest::Client::new().request(method, url);
        match std::env::var("ERRANDS_TOKEN") {
            Ok(token) if !token.is_empty() => request.bearer_auth(token),
            _ => request,
        }
    }

    /// Sends a request and returns its JSON body, or fails with the server's error message.
    pub(crate) async fn call(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the errands server at {}", self.url))?;
        let status = response.status();
        let body: Value = if status == reqwest::StatusCode::NO_CONTENT {
            Value::Null
        } else {
            response.json().await.context("server sent invalid JSON")?
        };
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        match error["field"].as_str() {
            Some(field) => bail!(
                "{status}: {field}: {}",
                error["message"].as_str().unwrap_or("")
            ),
            None => bail!(
                "{status}: {}",
                error["message"].as_str().unwrap_or("request failed")
            ),
        }
    }

    /// Every entry of a paged listing (`/v1/queues`, `/v1/cron`, `/v1/workers`), following
    /// its `next_cursor` to the last page: `{field: [...]}`.
    pub(crate) async fn list_all(&self, path: &str, field: &str) -> anyhow::Result<Value> {
        let mut entries = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut request = self.request(Method::GET, path);
            if let Some(after) = &after {
                request = request.query(&[("after", after)]);
            }
            let mut page = self.call(request).await?;
            if let Some(Value::Array(items)) = page.get_mut(field).map(Value::take) {
                entries.extend(items);
            }
            match page["next_cursor"].as_str() {
                // A cursor that does not move would loop forever: stop instead.
                Some(next) if after.as_deref() != Some(next) => after = Some(next.to_owned()),
                _ => return Ok(json!({ field: entries })),
            }
        }
    }

    pub(crate) fn print(&self, value: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            print!("{}", human(value));
        }
    }
}

/// `errands enqueue`.
pub async fn enqueue(args: EnqueueArgs) -> anyhow::Result<()> {
    let job_args: Value = serde_json::from_str(&args.args).context("--args is not valid JSON")?;
    let mut body = json!({"kind": args.kind, "queue": args.queue, "args": job_args});
    if let Some(delay) = args.delay {
        body["delay"] = json!(delay.as_secs_f64());
    }
    if let Some(priority) = args.priority {
        body["priority"] = json!(priority);
    }
    if let Some(max_attempts) = args.max_attempts {
        body["max_attempts"] = json!(max_attempts);
    }
    if let Some(key) = args.unique_key {
        body["unique_key"] = json!(key);
    }
    let remote = &args.remote;
    let reply = remote
        .call(remote.request(Method::POST, "/v1/jobs").json(&body))
        .await?;
    remote.print(&reply, |r| {
        let note = if r["created"] == json!(false) {
            " (existing job: unique key)"
        } else {
            ""
        };
        format!("{} {}{note}\n", text(&r["id"]), text(&r["state"]))
    });
    Ok(())
}

/// `errands job ID`.
pub async fn job(args: JobArgs) -> anyhow::Result<()> {
    let remote = &args.remote;
    let job = remote
        .call(remote.request(Method::GET, &format!("/v1/jobs/{}", args.id)))
        .await?;
    remote.print(&job, table::job_detail);
    Ok(())
}

/// `errands jobs`.
pub async fn jobs(args: JobsArgs) -> anyhow::Result<()> {
    let remote = &args.remote;
    let mut query = vec![("limit", args.limit.to_string())];
    for (key, value) in [
        ("queue", args.queue),
        ("state", args.state),
        ("kind", args.kind),
    ] {
        if let Some(value) = value {
            query.push((key, value));
        }
    }
    let page = remote
        .call(remote.request(Method::GET, "/v1/jobs").query(&query))
        .await?;
    remote.print(&page, |p| table::jobs(&p["jobs"]));
    Ok(())
}

/// `errands queues`.
pub async fn queues(remote: Remote) -> anyhow::Result<()> {
    let reply = remote.list_all("/v1/queues", "queues").await?;
    remote.print(&reply, |r| table::queues(&r["queues"]));
    Ok(())
}

/// `errands cancel ID` and `errands retry ID`.
pub async fn job_action(args: JobArgs, action: &str) -> anyhow::Result<()> {
    let remote = &args.remote;
    let path = format!("/v1/jobs/{}/{action}", args.id);
    let job = remote.call(remote.request(Method::POST, &path)).await?;
    remote.print(&job, |j| {
        format!("{} {}\n", text(&j["id"]), text(&j["state"]))
    });
    Ok(())
}

/// `errands pause NAME` and `errands resume NAME`.
pub async fn queue_action(args: QueueArgs, action: &str) -> anyhow::Result<()> {
    let remote = &args.remote;
    let path = format!("/v1/queues/{}/{action}", args.name);
    let queue = remote.call(remote.request(Method::POST, &path)).await?;
    remote.print(&queue, |q| {
        let state = if q["paused"] == json!(true) {
            "paused"
        } else {
            "running"
        };
        format!("{} {state}\n", text(&q["name"]))
    });
    Ok(())
}

/// A JSON value as plain text (strings without quotes, null as "-").
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `errands workers`.
pub async fn workers(remote: Remote) -> anyhow::Result<()> {
    let reply = remote.list_all("/v1/workers", "workers").await?;
    remote.print(&reply, |r| table::workers(&r["workers"]));
    Ok(())
}
