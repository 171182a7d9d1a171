//! A measured phase of a scenario, seen from the servers' side: the CPU their threads and the
//! bench used (see [`crate::cpu`]), and how many store commits they made and how long they
//! took, from the servers' `errands_store_commit_seconds` histograms on `GET /metrics`. On
//! PostgreSQL also the CPU of the database's backends, what they waited on
//! ([`crate::pg_waits`]), and the transactions and WAL written meanwhile.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Result;

use crate::cpu::{process_ticks, seconds_between, Probe, Usage};
use crate::nodes::Nodes;
use crate::pg::Counters;
use crate::pg_waits::{Sampler, Waits};
use crate::report::thousands;
use crate::server::CommitStats;

/// Other processes' CPU (percent of one core) above which a phase's figure is flagged.
const NOISY_PERCENT: f64 = 20.0;

/// Started just before a timed phase, finished just after it.
pub struct Phase<'a> {
    nodes: &'a Nodes,
    commits: Option<CommitStats>,
    postgres: Option<PgProbe>,
    probe: Probe,
}

/// What is read from PostgreSQL around a phase.
struct PgProbe {
    counters: Counters,
    backends: BTreeMap<u32, u64>,
    sampler: Sampler,
}

impl<'a> Phase<'a> {
    /// Reads the commit counters (and on PostgreSQL starts the wait sampler), then starts the
    /// CPU probe, so the scrapes are not measured.
    pub async fn start(nodes: &'a Nodes) -> Result<Self> {
        let commits = nodes.commit_stats().await;
        let postgres = match nodes.database() {
            Some(db) => Some(PgProbe {
                counters: db.counters().await?,
                sampler: Sampler::start(&db.admin_url(), db.name()).await?,
                backends: process_ticks(&db.backend_pids().await?),
            }),
            None => None,
        };
        Ok(Self {
            nodes,
            commits,
            postgres,
            probe: Probe::start(&nodes.pids())?,
        })
    }

    /// Stops the CPU probe, then reads the commit counters again. `jobs` is how many jobs the
    /// phase moved, to show jobs per commit.
    pub async fn finish(self, jobs: u64) -> Result<Seen> {
        let (postgres, backend_cpu) = match (self.postgres, self.nodes.database()) {
            (Some(probe), Some(db)) => {
                let after = process_ticks(&db.backend_pids().await?);
                let cpu = seconds_between(&probe.backends, &after);
                let waits = probe.sampler.finish().await?;
                let counters = db.counters().await?.since(probe.counters);
                (Some((counters, waits)), Some(cpu))
            }
            _ => (None, None),
        };
        let usage = self.probe.finish(backend_cpu)?;
        let commits = match (self.commits, self.nodes.commit_stats().await) {
            (Some(before), Some(after)) => Some(after.since(before)),
            _ => None,
        };
        Ok(Seen {
            usage,
            commits,
            jobs,
            postgres,
        })
    }
}

/// What a phase cost the servers.
pub struct Seen {
    /// CPU used by the servers' threads and by the bench.
    pub usage: Usage,
    /// Store commits made during the phase, when the servers expose them.
    pub commits: Option<CommitStats>,
    /// Jobs the phase moved.
    pub jobs: u64,
    /// On PostgreSQL: transaction ids and WAL used (machine-wide counters, so other
    /// databases' work counts too), and what the backends were doing.
    pub postgres: Option<(Counters, Waits)>,
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
        if let Some((counters, waits)) = &self.postgres {
            let jobs = self.jobs.max(1) as f64;
            write!(
                f,
                "; PostgreSQL: {} transaction ids ({:.2} per job), {:.1} MB WAL ({:.0} bytes \
                 per job); {waits}",
                thousands(counters.next_xid),
                counters.next_xid as f64 / jobs,
                counters.wal_bytes as f64 / 1e6,
                counters.wal_bytes as f64 / jobs,
            )?;
        }
        Ok(())
    }
}
