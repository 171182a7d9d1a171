//! `errands serve --log-format`: what a real server process writes, read line by line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_errands");
const WAIT: Duration = Duration::from_secs(20);

/// A server process and the lines of its log, as they come.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `errands serve --memory` on a port the system picks, with `extra` flags and
    /// `env` variables.
    fn start(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--memory", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("ERRANDS_LOG_FORMAT")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (sender, lines) = mpsc::channel();
        // Reads on, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The first log line `matches` accepts, reading for at most [`WAIT`].
    fn line_where(&self, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(error) => panic!("no such log line within {WAIT:?}: {error}"),
            }
        }
    }

    /// The first JSON log line whose `message` is `message`; every line before it must be
    /// a JSON object too.
    fn json_line(&self, message: &str) -> Value {
        let line = self.line_where(|line| {
            let parsed: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
            assert!(parsed.is_object(), "{line}");
            parsed["message"] == message
        });
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn enqueue(url: &str, body: Value) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let reply: Value = runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{url}/v1/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    });
    reply["id"].as_str().unwrap().to_owned()
}

/// Connects a worker for `queue` that fails every job it gets `attempts` times: the first
/// attempts ask for a retry at once, the last one for none.
async fn fail_jobs(url: &str, queue: &str, attempts: u32) {
    let socket_url = format!("{}/v1/worker", url.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(socket_url).await.unwrap();
    let hello = json!({"type": "hello", "queues": [queue], "capacity": 1});
    socket.send(Message::text(hello.to_string())).await.unwrap();
    let mut failed = 0;
    while failed < attempts {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("the server sends the job")
            .unwrap()
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["type"] != "job" {
            continue;
        }
        failed += 1;
        let last = failed == attempts;
        let fail = json!({
            "type": "fail", "id": message["id"],
            "error": {"type": "Broken", "message": "it broke"},
            "retry": !last, "retry_after": 0,
        });
        socket.send(Message::text(fail.to_string())).await.unwrap();
    }
    // Stay connected until the last report is written: the caller reads the log meanwhile.
    socket.next().await;
}

#[test]
fn json_logs_are_one_object_per_line_with_the_job_s_fields() {
    let server = Server::start(&["--log-format", "json"], &[]);
    let serving = server.json_line("errands serving");
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["store"], "memory");
    assert!(serving["timestamp"].is_string(), "{serving}");
    let url = format!("http://{}", serving["listen"].as_str().unwrap());

    let id = enqueue(
        &url,
        json!({"kind": "thumbnail", "queue": "images", "max_attempts": 2}),
    );
    let worker_url = url.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(fail_jobs(&worker_url, "images", 2));
    });

    let retried = server.json_line("attempt failed; the job will be retried");
    assert_eq!(retried["level"], "INFO");
    assert_eq!(retried["job_id"], id.as_str());
    assert_eq!(retried["queue"], "images");
    assert_eq!(retried["kind"], "thumbnail");
    assert_eq!(retried["attempt"], 1);
    assert_eq!(retried["how"], "the worker reported a failure");

    let dead = server.json_line("job is dead");
    assert_eq!(dead["level"], "WARN");
    assert_eq!(dead["job_id"], id.as_str());
    assert_eq!(dead["queue"], "images");
    assert_eq!(dead["kind"], "thumbnail");
    assert_eq!(dead["attempt"], 2);
}

#[test]
fn the_format_can_come_from_the_environment() {
    let server = Server::start(&[], &[("ERRANDS_LOG_FORMAT", "json")]);
    let serving = server.json_line("errands serving");
    assert!(serving["listen"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

#[test]
fn text_stays_the_default() {
    let server = Server::start(&[], &[]);
    let serving = server.line_where(|line| line.contains("errands serving"));
    assert!(
        serving.contains("errands serving listen=127.0.0.1:"),
        "{serving}"
    );
    assert!(
        serde_json::from_str::<Value>(&serving).is_err(),
        "{serving}"
    );
    // Not a terminal: no colour codes.
    assert!(!serving.contains('\u{1b}'), "{serving}");
}

#[test]
fn an_unknown_format_is_refused_naming_the_choices() {
    let output = Command::new(BIN)
        .args(["serve", "--memory", "--log-format", "xml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--log-format") && stderr.contains("json"),
        "{stderr}"
    );
}
