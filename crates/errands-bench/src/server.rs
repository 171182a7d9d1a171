//! Starting and stopping the real `errands serve` process, one per scenario, each on a fresh
//! database in its own temporary directory; plus the few HTTP reads the scenarios check
//! themselves with.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::{sleep, Instant};

/// How long the server may take to answer `/healthz` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the `errands` binary is: `$ERRANDS_BIN`, else next to this executable (both are
/// built into `target/release/`).
pub fn find_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ERRANDS_BIN") {
        let path = PathBuf::from(path);
        ensure!(
            path.is_file(),
            "ERRANDS_BIN={} is not a file; build the server with \
             `cargo build --release -p errands` or fix ERRANDS_BIN",
            path.display()
        );
        return Ok(path);
    }
    let exe = std::env::current_exe().context("finding this executable")?;
    let dir = exe.parent().context("this executable has no directory")?;
    let path = dir.join(format!("errands{}", std::env::consts::EXE_SUFFIX));
    ensure!(
        path.is_file(),
        "no errands binary at {}: build it first with `cargo build --release -p errands` \
         (or point ERRANDS_BIN at one)",
        path.display()
    );
    Ok(path)
}

/// Counts of one queue's jobs by state, from `GET /v1/queues`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    /// Jobs waiting to run.
    pub queued: u64,
    /// Jobs leased to a worker.
    pub running: u64,
    /// Jobs finished successfully.
    pub completed: u64,
}

/// Totals of the server's `errands_store_commit_seconds` histogram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CommitStats {
    /// Commits made.
    pub count: f64,
    /// Seconds spent in their `COMMIT` statements.
    pub seconds: f64,
}

impl CommitStats {
    /// What was added since `before`.
    pub fn since(self, before: CommitStats) -> CommitStats {
        CommitStats {
            count: self.count - before.count,
            seconds: self.seconds - before.seconds,
        }
    }

    /// Reads the histogram's `_count` and `_sum` from Prometheus text.
    fn parse(text: &str) -> Option<Self> {
        let value = |name: &str| {
            text.lines()
                .filter_map(|line| line.strip_prefix(name))
                .find_map(|rest| rest.strip_prefix(' ')?.trim().parse::<f64>().ok())
        };
        Some(Self {
            count: value("errands_store_commit_seconds_count")?,
            seconds: value("errands_store_commit_seconds_sum")?,
        })
    }
}

/// A running `errands serve --sync full`: on a fresh SQLite file of its own, or on a
/// PostgreSQL database it may share with other nodes. Killed when stopped or dropped.
pub struct Server {
    child: Child,
    pid: u32,
    url: String,
    addr: String,
    http: reqwest::Client,
    dir: TempDir,
}

impl Server {
    /// Starts `bin serve` on a free loopback port, on the PostgreSQL database at `postgres`
    /// (`postgres://…/dbname`) or, when `None`, on a new SQLite file in its temporary
    /// directory (which also holds the server's log); waits until it answers `/healthz`.
    pub async fn start_on(bin: &Path, postgres: Option<&str>) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("errands-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let db = match postgres {
            Some(url) => std::ffi::OsString::from(url),
            None => dir.path().join("bench.db").into_os_string(),
        };
        let child = Command::new(bin)
            .arg("serve")
            .arg("--db")
            .arg(db)
            .args(["--listen", &addr, "--sync", "full"])
            .env_remove("ERRANDS_TOKEN")
            .env_remove("ERRANDS_DB")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let mut server = Self {
            child,
            pid,
            url: format!("http://{addr}"),
            addr,
            http: reqwest::Client::new(),
            dir,
        };
        server.wait_healthy().await?;
        Ok(server)
    }

    /// Polls `/healthz` until it answers 200, the process exits, or the start timeout passes.
    async fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("errands serve exited with {status}:\n{}", self.log_tail());
            }
            let health = self.http.get(format!("{}/healthz", self.url)).send().await;
            if matches!(&health, Ok(response) if response.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "errands serve did not answer /healthz within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// The HTTP base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The worker socket's URL.
    pub fn worker_url(&self) -> String {
        format!("ws://{}/v1/worker", self.addr)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// An HTTP client for this server (a pool shared by clones).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The server's resident memory now (`VmRSS`) and at its peak (`VmHWM`), in bytes.
    pub fn rss(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("reading the server's /proc status")?;
        let field = |name: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/{}/status", self.pid))?;
            let kib: u64 = line
                .trim_start_matches(name)
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("unreadable {line:?}"))?;
            Ok(kib * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Counts of `queue`'s jobs by state (all zero when the queue is unknown).
    pub async fn counts(&self, queue: &str) -> Result<Counts> {
        let response = self
            .http
            .get(format!("{}/v1/queues", self.url))
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "GET /v1/queues: {}",
            response.status()
        );
        let body: Value = response.json().await?;
        let Some(entry) = body["queues"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|q| q["name"] == queue)
        else {
            return Ok(Counts::default());
        };
        let count = |state: &str| entry["counts"][state].as_u64().unwrap_or(0);
        Ok(Counts {
            queued: count("queued"),
            running: count("running"),
            completed: count("completed"),
        })
    }

    /// Waits until `queue` has at least `completed` completed jobs, checking every 50 ms.
    pub async fn wait_completed(&self, queue: &str, completed: u64) -> Result<Counts> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let counts = self.counts(queue).await?;
            if counts.completed >= completed {
                return Ok(counts);
            }
            if Instant::now() > deadline {
                bail!("only {counts:?} in {queue} after 30 s; expected {completed} completed");
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// The store-commit totals from `GET /metrics`; `None` when the server does not serve them.
    pub async fn commit_stats(&self) -> Option<CommitStats> {
        let response = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        CommitStats::parse(&response.text().await.ok()?)
    }

    /// Kills the server and removes its directory.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await.context("killing the server")?;
        Ok(())
    }

    /// The last lines of the server's log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commit_totals_from_prometheus_text() {
        let text = "# TYPE errands_store_commit_seconds histogram\n\
                    errands_store_commit_seconds_bucket{le=\"0.001\"} 7\n\
                    errands_store_commit_seconds_sum 0.25\n\
                    errands_store_commit_seconds_count 12\n";
        assert_eq!(
            CommitStats::parse(text),
            Some(CommitStats {
                count: 12.0,
                seconds: 0.25
            })
        );
        assert_eq!(CommitStats::parse("other_metric 1\n"), None);
    }
}
