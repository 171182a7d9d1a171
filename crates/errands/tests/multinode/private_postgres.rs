//! A PostgreSQL server of the test's own (initdb in a temporary directory, on a free port),
//! so a test can restart it without disturbing any other test using the machine's server.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, its commands run as the
//! `postgres` user through `runuser`, and the data directory is handed to that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::free_port;

/// The directory of PostgreSQL's server programs (`initdb`, `pg_ctl`): the newest under
/// Debian's `/usr/lib/postgresql/<version>/bin`.
fn server_bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs under /usr/lib/postgresql (scripts/postgres.sh installs them)")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let version = path.file_name()?.to_str()?.parse().ok()?;
            path.join("bin/initdb").exists().then(|| (version, path.join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
        .1
}

fn running_as_root() -> bool {
    let id = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

/// Runs PostgreSQL program `program` with `args`, as `postgres` when running as root.
fn run(program: &Path, args: &[&str]) -> Output {
    let mut command = if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    let output = command.args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A running private server. Stopped (immediately) and deleted when dropped.
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// Creates a cluster with trust authentication for `postgres` and starts it on a free
    /// port of 127.0.0.1 (no Unix socket).
    pub fn start() -> Self {
        let bin = server_bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if running_as_root() {
            let owned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(owned.success(), "chown of the data directory failed");
        }
        let data_arg = data.to_str().unwrap();
        run(
            &bin.join("initdb"),
            &[
                "-D",
                data_arg,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        let server = Self {
            bin,
            data,
            port: free_port(),
            _dir: dir,
        };
        server.pg_ctl(&["start", "-l", &server.log_path()]);
        server
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// `pg_ctl restart -m fast`, as `pg_ctlcluster … restart` does: every connection is
    /// ended, the server shuts down cleanly and starts again. Returns once it accepts
    /// connections.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast", "-l", &self.log_path()]);
    }

    /// Stops the server (`-m fast`): connections end and new ones are refused until
    /// [`Self::start_again`].
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]);
    }

    /// Starts the server after [`Self::stop`]; returns once it accepts connections.
    pub fn start_again(&self) {
        self.pg_ctl(&["start", "-l", &self.log_path()]);
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> String {
        self.data.join("server.log").to_str().unwrap().to_owned()
    }

    fn pg_ctl(&self, action: &[&str]) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off",
            self.port
        );
        let mut args = vec!["-D", self.data.to_str().unwrap(), "-w", "-o", &options];
        args.extend_from_slice(action);
        run(&self.bin.join("pg_ctl"), &args);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap_or_default().to_owned();
        let _ = std::panic::catch_unwind(|| {
            run(
                &self.bin.join("pg_ctl"),
                &["-D", &data, "-w", "stop", "-m", "immediate"],
            )
        });
    }
}
