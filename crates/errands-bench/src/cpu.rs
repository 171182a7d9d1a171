//! Where CPU time went during a measured phase: the server's threads (what `top -H` shows)
//! and the bench's own process, read from `/proc`. On a 2-core machine the bench competes
//! with the server, so both matter when reading a figure.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Kernel clock ticks per second for `/proc/*/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU ticks used so far by each thread of a process, by thread id.
#[derive(Clone, Debug)]
struct Snapshot {
    threads: BTreeMap<u32, (String, u64)>,
}

impl Snapshot {
    /// Reads `/proc/<pid>/task/*/stat` (`pid` may be `"self"`).
    fn read(pid: &str) -> Result<Self> {
        let mut threads = BTreeMap::new();
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .with_context(|| format!("listing /proc/{pid}/task"))?;
        for task in tasks {
            let task = task?;
            let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            // A thread may end between the listing and the read; it is simply left out.
            if let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) {
                if let Some(entry) = parse_stat(&stat) {
                    threads.insert(tid, entry);
                }
            }
        }
        Ok(Self { threads })
    }
}

/// A thread's name and its user + system ticks, from one `stat` line.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    // The name is in parentheses and may contain spaces; fields after it are plain.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// Busy ticks of the whole machine so far, from the first line of `/proc/stat`.
fn machine_busy() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_machine_busy(&stat).context("unreadable /proc/stat")
}

/// user + nice + system + irq + softirq + steal of the `cpu` line (idle and iowait left out).
fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// The threads of several processes, keyed by thread id (unique machine-wide).
fn read_all(pids: &[u32]) -> Result<Snapshot> {
    let mut threads = BTreeMap::new();
    for pid in pids {
        threads.extend(Snapshot::read(&pid.to_string())?.threads);
    }
    Ok(Snapshot { threads })
}

/// User + system ticks of each process in `pids` (single-threaded ones: PostgreSQL
/// backends); a process that has gone is left out.
pub fn process_ticks(pids: &[u32]) -> BTreeMap<u32, u64> {
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((*pid, parse_stat(&stat)?.1))
        })
        .collect()
}

/// CPU seconds the processes used between two [`process_ticks`] readings; a process missing
/// from `before` started meanwhile and counts from zero.
pub fn seconds_between(before: &BTreeMap<u32, u64>, after: &BTreeMap<u32, u64>) -> f64 {
    let ticks: u64 = after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum();
    ticks as f64 / TICKS_PER_SEC
}

/// Measures the CPU used by the servers (one or more nodes) and by the bench between
/// [`Probe::start`] and [`Probe::finish`].
pub struct Probe {
    server_pids: Vec<u32>,
    started: Instant,
    server: Snapshot,
    bench: Snapshot,
    machine: u64,
}

impl Probe {
    /// Starts measuring the servers `server_pids`.
    pub fn start(server_pids: &[u32]) -> Result<Self> {
        Ok(Self {
            server: read_all(server_pids)?,
            bench: Snapshot::read("self")?,
            machine: machine_busy()?,
            server_pids: server_pids.to_vec(),
            started: Instant::now(),
        })
    }

    /// What was used since the start; `postgres` is the CPU seconds PostgreSQL's backends
    /// serving the servers used meanwhile, measured by the caller, kept out of "others".
    pub fn finish(self, postgres: Option<f64>) -> Result<Usage> {
        let server = read_all(&self.server_pids)?;
        let bench = Snapshot::read("self")?;
        let machine = machine_busy()?.saturating_sub(self.machine) as f64 / TICKS_PER_SEC;
        let server = by_name(&self.server, &server);
        let bench: f64 = by_name(&self.bench, &bench).values().map(|(_, s)| s).sum();
        let server_total: f64 = server.values().map(|(_, s)| s).sum();
        let pg = postgres.unwrap_or(0.0);
        Ok(Usage {
            wall: self.started.elapsed(),
            server,
            bench,
            postgres,
            others: (machine - server_total - bench - pg).max(0.0),
        })
    }
}

/// CPU seconds used between two snapshots, summed by thread name, with the thread count.
fn by_name(before: &Snapshot, after: &Snapshot) -> BTreeMap<String, (usize, f64)> {
    let mut names: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for (tid, (name, ticks)) in &after.threads {
        let earlier = before.threads.get(tid).map_or(0, |(_, t)| *t);
        let used = ticks.saturating_sub(earlier) as f64 / TICKS_PER_SEC;
        let entry = names.entry(name.clone()).or_default();
        entry.0 += 1;
        entry.1 += used;
    }
    names
}

/// CPU used during one measured phase.
#[derive(Clone, Debug)]
pub struct Usage {
    /// How long the phase lasted.
    pub wall: Duration,
    /// The server's CPU seconds by thread name, with how many threads bear that name.
    pub server: BTreeMap<String, (usize, f64)>,
    /// The bench process's CPU seconds.
    pub bench: f64,
    /// CPU seconds of the PostgreSQL backends serving the servers, on PostgreSQL.
    pub postgres: Option<f64>,
    /// CPU seconds every other process on the machine used meanwhile: the noise on the figure.
    pub others: f64,
}

impl Usage {
    /// The server's CPU seconds over all threads.
    pub fn server_total(&self) -> f64 {
        self.server.values().map(|(_, s)| s).sum()
    }

    /// Share of one core that other processes used meanwhile, in percent.
    pub fn others_percent(&self) -> f64 {
        self.percent(self.others)
    }

    fn percent(&self, seconds: f64) -> f64 {
        100.0 * seconds / self.wall.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Usage {
    /// E.g. `server 1.52 s CPU in 1.80 s (84%: tokio-runtime-w ×2 61%, errands-sqlite-w 23%);
    /// bench 70%; other processes 3%`. Percentages are of one core.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.server_total();
        write!(
            f,
            "server {total:.2} s CPU in {:.2} s wall ({:.0}%",
            self.wall.as_secs_f64(),
            self.percent(total)
        )?;
        let mut busiest: Vec<_> = self.server.iter().filter(|(_, (_, s))| *s > 0.0).collect();
        busiest.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        for (i, (name, (count, seconds))) in busiest.iter().take(4).enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            let count = if *count > 1 {
                format!(" ×{count}")
            } else {
                String::new()
            };
            write!(f, "{sep}{name}{count} {:.0}%", self.percent(*seconds))?;
        }
        write!(f, "); bench {:.0}%", self.percent(self.bench))?;
        if let Some(postgres) = self.postgres {
            write!(
                f,
                "; PostgreSQL backends {postgres:.2} s CPU ({:.0}%)",
                self.percent(postgres)
            )?;
        }
        write!(f, "; other processes {:.0}%", self.others_percent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(10 + 1 + 5 + 2 + 3 + 4));
    }

    #[test]
    fn reads_names_with_spaces_and_times() {
        let stat = "42 (tokio runtime) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 4 0";
        assert_eq!(parse_stat(stat), Some(("tokio runtime".into(), 175)));
    }
}
