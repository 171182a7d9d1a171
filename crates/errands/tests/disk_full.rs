//! A full disk under a real `errands serve --sync full` on SQLite (a small tmpfs): writes are
//! refused with a clear 503, readiness says so, a worker's reports wait instead of being
//! dropped, and once space is freed everything carries on without a restart: every
//! acknowledged job completes once, nothing stays running.
//!
//! Mounting the tmpfs needs root, as CI runs; elsewhere the test fails saying so.

#[path = "multinode/cluster.rs"]
#[allow(dead_code)] // Helpers shared with multinode.rs; this test uses a few.
mod cluster;

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cluster::server::ServerProcess;
use cluster::{RawWorker, WAIT};
use serde_json::{json, Value};
use tokio::time::Instant;

/// The tmpfs: room for the database, not for much more.
const DISK: &str = "size=24m";
/// Jobs a worker holds when the disk fills up.
const HELD: usize = 5;
/// Arguments big enough that a few enqueues need new pages.
const ARGS_BYTES: usize = 200_000;

/// A tmpfs mounted on a temporary directory; unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", DISK, "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            mounted.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the disk is full. Returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn enqueue(http: &reqwest::Client, url: &str, n: usize) -> (u16, Value) {
    let job =
        json!({"kind": "full", "queue": "full", "args": {"n": n, "pad": "x".repeat(ARGS_BYTES)}});
    let response = http
        .post(format!("{url}/v1/jobs"))
        .json(&job)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls job `id` until it is completed, failing with the server's log at `deadline`.
async fn wait_completed(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    deadline: Instant,
    log: &Path,
) -> Value {
    loop {
        let job: Value = http
            .get(format!("{url}/v1/jobs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["state"] == "completed" {
            return job;
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("never completed: {job}\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_recovers_without_a_restart() {
    let disk = SmallDisk::mount();
    // The log lives off the small disk, so the server can say what went wrong.
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("server.log");
    let db = disk.path().join("errands.db");
    let args = [
        OsStr::new("--sync"),
        OsStr::new("full"),
        OsStr::new("--db"),
        db.as_os_str(),
    ];
    let mut server = ServerProcess::start(None, &args, log.clone()).await;
    let (http, url) = (reqwest::Client::new(), server.url.clone());
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let mut acked = Vec::new();
    for n in 0..HELD {
        let (status, body) = enqueue(&http, &url, n).await;
        assert_eq!(status, 201, "{body}");
        acked.push(body["id"].as_str().unwrap().to_owned());
    }
    let mut worker = RawWorker::connect_url(&server.worker_url(), &["full"], HELD as u32).await;
    let mut held = Vec::new();
    for _ in 0..HELD {
        held.push(worker.recv_job().await["id"].as_str().unwrap().to_owned());
    }

    // The disk fills up: enqueues are refused (503, a JSON body saying why), until one is.
    let filler = disk.fill();
    let mut refused = None;
    for n in HELD..HELD + 200 {
        let (status, body) = enqueue(&http, &url, n).await;
        if status == 201 {
            acked.push(body["id"].as_str().unwrap().to_owned());
            continue;
        }
        refused = Some((status, body));
        break;
    }
    let (status, body) = refused.expect("no enqueue was refused on a full disk");
    assert_eq!(status, 503, "{body}\n{}", log_text());
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503, "ready on a full disk");

    // The worker finishes its jobs while the disk is full: its reports must wait, not vanish.
    for id in &held {
        worker.complete(id).await;
    }
    std::fs::remove_file(&filler).unwrap();

    // Space is back: the reports land, enqueues work again, the same process serves on.
    let deadline = Instant::now() + WAIT;
    for id in &held {
        let job = wait_completed(&http, &url, id, deadline, &log).await;
        assert_eq!(job["attempt"], 1, "{job}");
    }
    let (status, body) = enqueue(&http, &url, 10_000).await;
    assert_eq!(status, 201, "{body}\n{}", log_text());
    acked.push(body["id"].as_str().unwrap().to_owned());
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status().as_u16(),
        200,
        "not ready after space came back"
    );

    // Every acknowledged job after those reaches the same worker connection and completes.
    for _ in HELD..acked.len() {
        let job = worker.recv_job().await;
        worker.complete(job["id"].as_str().unwrap()).await;
    }
    for id in &acked {
        wait_completed(&http, &url, id, Instant::now() + WAIT, &log).await;
    }
    assert!(server.is_running(), "the server exited");
    eprintln!(
        "disk full: {} acknowledged jobs completed, {HELD} held through the full disk",
        acked.len()
    );
}
