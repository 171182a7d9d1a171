//! A measured phase of a scenario, seen from the server's side: the CPU its threads and the
//! bench used (see [`crate::cpu`]), and how many store commits it made and how long they took,
//! from the server's `errands_store_commit_seconds` histogram on `GET /metrics`.

use std::fmt;

use anyhow::Result;

use crate::cpu::{Probe, Usage};
use crate::report::thousands;
use crate::server::{CommitStats, Server};

/// Other processes' CPU (percent of one core) above which a phase's figure is flagged.
const NOISY_PERCENT: f64 = 20.0;

/// Started just before a timed phase, finished just after it.
pub struct Phase<'a> {
    server: &'a Server,
    commits: Option<CommitStats>,
    probe: Probe,
}

impl<'a> Phase<'a> {
    /// Reads the commit counters, then starts the CPU probe (so the scrape is not measured).
    pub async fn start(server: &'a Server) -> Result<Self> {
        let commits = server.commit_stats().await;
        Ok(Self {
            server,
            commits,
            probe: Probe::start(server.pid())?,
        })
    }

    /// Stops the CPU probe, then reads the commit counters again. `jobs` is how many jobs the
    /// phase moved, to show jobs per commit.
    pub async fn finish(self, jobs: u64) -> Result<Seen> {
        let usage = self.probe.finish()?;
        let commits = match (self.commits, self.server.commit_stats().await) {
            (Some(before), Some(after)) => Some(after.since(before)),
            _ => None,
        };
        Ok(Seen {
            usage,
            commits,
            jobs,
        })
    }
}

/// What a phase cost the server.
pub struct Seen {
    /// CPU used by the server's threads and by the bench.
    pub usage: Usage,
    /// Store commits made during the phase, when the server exposes them.
    pub commits: Option<CommitStats>,
    /// Jobs the phase moved.
    pub jobs: u64,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.usage.others_percent() > NOISY_PERCENT {
            write!(
                f,
                "**other processes were busy: this figure is disturbed**; "
            )?;
        }
        write!(f, "{}", self.usage)?;
        if let Some(commits) = self.commits.filter(|c| c.count > 0.0) {
            write!(
                f,
                "; {} store commits ({:.1} jobs per commit), COMMIT statements took {:.3} ms on \
                 average and {:.0}% of the wall time",
                thousands(commits.count as u64),
                self.jobs as f64 / commits.count,
                1e3 * commits.seconds / commits.count,
                100.0 * commits.seconds / self.usage.wall.as_secs_f64()
            )?;
        }
        Ok(())
    }
}
