//! `errands serve` as a child process for the integration tests: started on a port of its
//! own with its log in a file, returned once it answers `/healthz`, SIGKILLed when dropped.

use std::ffi::OsStr;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// Longest a server may take to answer `/healthz`.
const START: Duration = Duration::from_secs(60);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `errands serve` process.
pub struct ServerProcess {
    child: Child,
    /// `127.0.0.1:port`.
    pub addr: String,
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// Its stdout and stderr.
    pub log: PathBuf,
    /// When it answered `/healthz` first.
    pub started: Instant,
}

impl ServerProcess {
    /// Starts `errands serve --listen <addr> <args>` (a free port when `addr` is `None`),
    /// logging to `log`, and waits until it answers. The environment's token, log level and
    /// log format are left out, so every test server starts the same way.
    pub async fn start<S: AsRef<OsStr>>(addr: Option<String>, args: &[S], log: PathBuf) -> Self {
        let addr = addr.unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let out = File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_errands"))
            .args(["serve", "--listen", &addr])
            .args(args)
            .env_remove("ERRANDS_TOKEN")
            .env_remove("ERRANDS_LOG_FORMAT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            url: format!("http://{addr}"),
            addr,
            log,
            started: Instant::now(),
        };
        server.wait_healthy().await;
        server
    }

    /// Polls `/healthz` (a bounded loop of short waits) until the server answers.
    async fn wait_healthy(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + START;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("errands serve exited with {status}:\n{}", self.log_text());
            }
            if let Ok(response) = http.get(format!("{}/healthz", self.url)).send().await {
                if response.status().is_success() {
                    self.started = Instant::now();
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "errands serve did not become healthy:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown hooks, no flushing, the process just stops. Returns when it is
    /// gone.
    pub fn kill(&mut self) -> Instant {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        Instant::now()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its worker socket.
    pub fn worker_url(&self) -> String {
        format!("ws://{}/v1/worker", self.addr)
    }

    /// Its event socket, with `query` (`?ids=...`, or empty).
    pub fn events_url(&self, query: &str) -> String {
        format!("ws://{}/v1/events{query}", self.addr)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
