//! The command line against a real server process.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_errands");

struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// Starts a server on a port the system picks, and reads that port from its log: a port
    /// picked by the test could be taken by another test's server before this one binds it.
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--memory", "--listen", "127.0.0.1:0"])
            .args(extra)
            // The listen address is read from the text log.
            .env_remove("ERRANDS_LOG_FORMAT")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut log = BufReader::new(child.stdout.take().unwrap()).lines();
        let listen = log
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                let rest = line.split_once("errands serving listen=")?.1;
                Some(rest.split_whitespace().next()?.to_owned())
            })
            .expect("the server logs where it listens");
        // Keep reading, so the server never blocks on a full pipe.
        std::thread::spawn(move || log.for_each(drop));
        Self {
            child,
            url: format!("http://{listen}"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("ERRANDS_URL", &self.url)
            .env_remove("ERRANDS_TOKEN")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let output = self.run(&all);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn enqueue_inspect_cancel_and_retry_from_the_command_line() {
    let server = Server::start(&[]);
    let enqueued = server.json(&[
        "enqueue",
        "send_email",
        "--queue",
        "emails",
        "--args",
        r#"{"to":"a@b"}"#,
        "--delay",
        "10s",
    ]);
    let id = enqueued["id"].as_str().unwrap().to_owned();
    assert_eq!(enqueued["state"], "scheduled");

    let job = server.json(&["job", &id]);
    assert_eq!(job["kind"], "send_email");
    assert_eq!(job["args"]["to"], "a@b");

    let human = server.run(&["job", &id]);
    assert!(stdout(&human).contains("send_email"));

    let listed = server.json(&["jobs", "--state", "scheduled"]);
    assert_eq!(listed["jobs"][0]["id"], id.as_str());

    let table = stdout(&server.run(&["queues"]));
    assert!(table.starts_with("QUEUE"), "{table}");
    assert!(table.contains("emails"));

    assert_eq!(server.json(&["cancel", &id])["state"], "cancelled");
    assert_eq!(server.json(&["retry", &id])["state"], "queued");
    assert_eq!(server.json(&["pause", "emails"])["paused"], true);
    assert_eq!(server.json(&["resume", "emails"])["paused"], false);
    assert_eq!(server.json(&["workers"])["workers"], Value::Array(vec![]));
}

#[test]
fn errors_are_reported_with_the_server_s_reason_and_a_failing_exit_code() {
    let server = Server::start(&[]);
    let bad = server.run(&["enqueue", "x", "--args", "{not json"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--args is not valid JSON"));
    let missing = server.run(&["job", "0193a5b2-7c1e-7d4a-9f1e-2b7d8c9e0a11"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

#[test]
fn check_fails_saying_why() {
    let server = Server::start(&[]);
    assert!(server.run(&["check"]).status.success());
    let unserved = server.run(&["check", "--queue", "emails"]);
    assert!(!unserved.status.success());
    assert!(String::from_utf8_lossy(&unserved.stderr).contains("no connected worker serves it"));
    server.json(&["enqueue", "a"]);
    let too_old = server.run(&["check", "--max-age", "0s"]);
    assert!(!too_old.status.success());
    assert!(String::from_utf8_lossy(&too_old.stderr).contains("oldest ready job"));
    let unreachable = Command::new(BIN)
        .args(["check", "--url", &unused_url()])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));
}

/// A URL where nothing listens.
fn unused_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

/// `errands check ... --json`: its exit code and the JSON it printed, which it prints whether
/// the check passes or fails.
fn check_json(server_url: &str, args: &[&str]) -> (bool, Value) {
    let output = Command::new(BIN)
        .arg("check")
        .args(args)
        .args(["--json", "--url", server_url])
        .env_remove("ERRANDS_TOKEN")
        .output()
        .unwrap();
    let printed = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{args:?} printed no JSON ({error}): {}", stdout(&output)));
    (output.status.success(), printed)
}

/// A worker connection over the raw socket protocol, serving `queues` while it is kept.
type WorkerSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn connect_worker(
    runtime: &tokio::runtime::Runtime,
    server_url: &str,
    queues: &[&str],
) -> WorkerSocket {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("{}/v1/worker", server_url.replacen("http", "ws", 1));
    let hello = serde_json::json!({"type": "hello", "queues": queues, "capacity": 1});
    runtime.block_on(async move {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        socket.send(Message::text(hello.to_string())).await.unwrap();
        let welcome = socket.next().await.unwrap().unwrap();
        assert!(welcome.to_text().unwrap().contains("welcome"), "{welcome}");
        socket
    })
}

#[test]
fn check_with_queue_looks_at_that_queue_only() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = Server::start(&[]);
    // A backlog on a queue nobody serves, and a worker on `emails`, which has no jobs.
    server.json(&["enqueue", "report", "--queue", "backlog"]);
    let _worker = connect_worker(&runtime, &server.url, &["emails"]);

    let (passed, scoped) = check_json(&server.url, &["--queue", "emails", "--max-age", "0s"]);
    assert!(passed, "{scoped}");
    assert_eq!(scoped, serde_json::json!({"ok": true, "problems": []}));

    let (passed, everything) = check_json(&server.url, &["--max-age", "0s"]);
    assert!(!passed);
    assert_eq!(everything["ok"], false);
    let problem = &everything["problems"][0];
    assert_eq!(problem["reason"], "too_old");
    assert_eq!(problem["queue"], "backlog");
    assert_eq!(problem["max_age"], 0.0);
    assert!(problem["oldest_ready_age"].as_f64().unwrap() > 0.0);
    assert_eq!(everything["problems"].as_array().unwrap().len(), 1);

    let (passed, both) = check_json(
        &server.url,
        &["--queue", "emails", "--queue", "backlog", "--max-age", "0s"],
    );
    assert!(!passed);
    let reasons: Vec<(&str, &str)> = both["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["reason"].as_str().unwrap(), p["queue"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, [("too_old", "backlog"), ("unserved", "backlog")]);
}

#[test]
fn check_json_reports_an_unreachable_server() {
    let (passed, printed) = check_json(&unused_url(), &[]);
    assert!(!passed);
    assert_eq!(printed["ok"], false);
    assert_eq!(printed["problems"][0]["reason"], "unreachable");
    let message = printed["problems"][0]["message"].as_str().unwrap();
    assert!(message.contains("cannot reach"), "{message}");
}

#[test]
fn a_token_protects_every_command() {
    let server = Server::start(&["--token", "s3cret"]);
    let refused = server.run(&["queues"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let allowed = Command::new(BIN)
        .args(["queues", "--json"])
        .env("ERRANDS_URL", &server.url)
        .env("ERRANDS_TOKEN", "s3cret")
        .output()
        .unwrap();
    assert!(allowed.status.success());
}

#[test]
fn cron_schedules_from_the_command_line() {
    let server = Server::start(&[]);
    let set = server.json(&[
        "cron",
        "set",
        "nightly",
        "--schedule",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--kind",
        "report",
        "--queue",
        "reports",
        "--args",
        r#"{"full":true}"#,
        "--catch-up",
        "run-once",
    ]);
    assert_eq!(set["name"], "nightly");
    assert_eq!(set["catch_up"], "run_once");
    assert_eq!(set["job"]["args"]["full"], true);
    assert_eq!(set["next_fire_times"].as_array().unwrap().len(), 5);

    let listed = server.json(&["cron", "list"]);
    assert_eq!(listed["schedules"][0]["name"], "nightly");
    let table = stdout(&server.run(&["cron", "list"]));
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("nightly") && table.contains("Europe/Berlin"),
        "{table}"
    );
    assert!(table.contains("NEXT"), "{table}");

    let triggered = server.json(&["cron", "trigger", "nightly"]);
    let job = server.json(&["job", triggered["id"].as_str().unwrap()]);
    assert_eq!(job["kind"], "report");
    assert_eq!(job["queue"], "reports");

    assert_eq!(server.json(&["cron", "pause", "nightly"])["paused"], true);
    let human = stdout(&server.run(&["cron", "resume", "nightly"]));
    assert!(human.contains("nightly running"), "{human}");
    server.json(&["cron", "delete", "nightly"]);
    assert_eq!(
        server.json(&["cron", "list"])["schedules"],
        Value::Array(vec![])
    );

    let bad = server.run(&["cron", "set", "x", "--schedule", "* * *", "--kind", "k"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("schedule"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let missing = server.run(&["cron", "delete", "nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

#[test]
fn stream_bounds_of_zero_are_refused_naming_the_flag() {
    for (flag, value) in [
        ("--worker-hello-timeout", "0s"),
        ("--worker-outbound-messages", "0"),
        ("--event-buffer-events", "0"),
    ] {
        let output = Command::new(BIN)
            .args(["serve", "--memory", "--listen", "127.0.0.1:0", flag, value])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{flag}: {stderr}");
    }
}

#[test]
fn a_worker_that_never_says_hello_is_closed_after_the_hello_timeout() {
    use std::io::Read;
    let server = Server::start(&["--worker-hello-timeout", "200ms"]);
    let address = server.url.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    // A bounded wait: a server that kept the socket would fail the read with a timeout.
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let upgrade = format!(
        "GET /v1/worker HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    std::io::Write::write_all(&mut socket, upgrade.as_bytes()).unwrap();
    let mut received = Vec::new();
    let read = socket.read_to_end(&mut received);
    assert!(read.is_ok(), "the socket stayed open: {read:?}");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains("no hello within"), "{text}");
}

/// The `name` (or other `key`) of every entry of `field` in a listing the CLI printed.
fn listed(value: &Value, field: &str, key: &str) -> Vec<String> {
    value[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry[key].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn listings_and_check_follow_every_page() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // A one-byte page budget: every page holds one entry, so only following the cursors
    // shows more than the first.
    let server = Server::start(&["--max-list-bytes", "1"]);
    for queue in ["q1", "q2", "q3"] {
        server.json(&["enqueue", "report", "--queue", queue]);
        let name = format!("s-{queue}");
        server.json(&[
            "cron",
            "set",
            &name,
            "--schedule",
            "0 * * * *",
            "--kind",
            "report",
        ]);
    }
    // Workers on queues without jobs, so every job stays ready.
    let _first = connect_worker(&runtime, &server.url, &["w1"]);
    let _second = connect_worker(&runtime, &server.url, &["w2"]);

    let queues = server.json(&["queues"]);
    assert_eq!(listed(&queues, "queues", "name"), ["q1", "q2", "q3"]);
    let schedules = server.json(&["cron", "list"]);
    assert_eq!(
        listed(&schedules, "schedules", "name"),
        ["s-q1", "s-q2", "s-q3"]
    );
    let workers = server.json(&["workers"]);
    assert_eq!(listed(&workers, "workers", "id").len(), 2);

    // The worker on w2 is on the second page of workers; q3 on the third page of queues.
    let (passed, served) = check_json(&server.url, &["--queue", "w2"]);
    assert!(passed, "{served}");
    let (passed, too_old) = check_json(&server.url, &["--max-age", "0s"]);
    assert!(!passed);
    let problems: Vec<&str> = too_old["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["queue"].as_str().unwrap())
        .collect();
    assert_eq!(problems, ["q1", "q2", "q3"]);
}

#[test]
fn metrics_max_series_bounds_the_job_series() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = Server::start(&["--metrics-max-series", "1"]);
    for kind in ["first", "second", "third"] {
        server.json(&["enqueue", kind, "--queue", "bounded"]);
    }
    let url = format!("{}/metrics", server.url);
    let text = runtime.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() });
    let enqueued: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("errands_jobs_enqueued_total{"))
        .collect();
    assert_eq!(
        enqueued,
        [
            "errands_jobs_enqueued_total{queue=\"bounded\",kind=\"first\"} 1",
            "errands_jobs_enqueued_total{queue=\"_other\",kind=\"_other\"} 2",
        ]
    );
}
