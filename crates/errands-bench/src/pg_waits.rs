//! What the benchmark database's backends were doing during a phase: `pg_stat_activity`
//! sampled every [`INTERVAL`] from a connection to the `postgres` database, each backend
//! counted as running (active, no wait event), waiting on a named event (`IO:WALSync`,
//! `LWLock:WALWrite`, `Lock:transactionid`, …), idle in a transaction (waiting for the errands
//! server's next statement inside one), or idle. `pg_stat_statements` is not needed.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pg::connect;

/// How often `pg_stat_activity` is read.
const INTERVAL: Duration = Duration::from_millis(20);

/// The query: the benchmark database's client backends, without the nodes' LISTEN
/// connections (always idle, waiting for notices).
const SAMPLE: &str = "SELECT state, wait_event_type, wait_event FROM pg_stat_activity \
                      WHERE datname = $1 AND backend_type = 'client backend' \
                      AND query NOT LIKE 'LISTEN %'";

/// Samples until [`Sampler::finish`].
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<Waits>>,
}

impl Sampler {
    /// Connects (to the `postgres` database of `admin_url`'s server) and starts sampling the
    /// backends of `database`.
    pub async fn start(admin_url: &str, database: &str) -> Result<Self> {
        let client = connect(admin_url).await?;
        let statement = client.prepare(SAMPLE).await?;
        let database = database.to_owned();
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut waits = Waits::default();
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return Ok(waits),
                    _ = tick.tick() => {}
                }
                let rows = client.query(&statement, &[&database]).await?;
                waits.samples += 1;
                for row in rows {
                    let state: Option<String> = row.get(0);
                    let kind: Option<String> = row.get(1);
                    let event: Option<String> = row.get(2);
                    *waits
                        .by_class
                        .entry(classify(state, kind, event))
                        .or_default() += 1;
                }
            }
        });
        Ok(Self { stop, task })
    }

    /// Stops sampling and returns the tally.
    pub async fn finish(self) -> Result<Waits> {
        let _ = self.stop.send(());
        self.task.await.context("the wait sampler panicked")?
    }
}

/// What one backend was doing in one sample.
fn classify(state: Option<String>, kind: Option<String>, event: Option<String>) -> String {
    match state.as_deref() {
        Some("active") => match (kind, event) {
            (Some(kind), Some(event)) => format!("{kind}:{event}"),
            _ => RUNNING.to_owned(),
        },
        Some("idle") => IDLE.to_owned(),
        Some(other) => other.to_owned(),
        None => "unknown".to_owned(),
    }
}

/// The class of an active backend with no wait event: on the CPU (or runnable).
const RUNNING: &str = "running";
/// The class of a backend waiting for its client outside any transaction.
const IDLE: &str = "idle";

/// Backend states counted over a phase.
#[derive(Clone, Debug, Default)]
pub struct Waits {
    /// Times `pg_stat_activity` was read.
    pub samples: u64,
    /// Backend-samples by class.
    pub by_class: BTreeMap<String, u64>,
}

impl Waits {
    /// Backend-samples that were not idle.
    fn busy(&self) -> u64 {
        self.by_class
            .iter()
            .filter(|(class, _)| class.as_str() != IDLE)
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for Waits {
    /// E.g. `backends not idle: 2.4 on average (of 17 connected; 300 samples): running 61%,
    /// IO:WALSync 20%, idle in transaction 14%, LWLock:WALWrite 5%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.samples == 0 {
            return f.write_str("backends not sampled");
        }
        let busy = self.busy();
        let all: u64 = self.by_class.values().sum();
        write!(
            f,
            "backends not idle: {:.2} on average (of {:.0} connected; {} samples every {} ms)",
            busy as f64 / self.samples as f64,
            all as f64 / self.samples as f64,
            self.samples,
            INTERVAL.as_millis()
        )?;
        let mut classes: Vec<_> = self
            .by_class
            .iter()
            .filter(|(class, _)| class.as_str() != IDLE)
            .collect();
        classes.sort_by(|a, b| b.1.cmp(a.1));
        for (i, (class, n)) in classes.iter().take(6).enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            write!(
                f,
                "{sep}{class} {:.0}%",
                100.0 * **n as f64 / busy.max(1) as f64
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_name_the_wait() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(classify(s("active"), None, None), "running");
        assert_eq!(classify(s("active"), s("IO"), s("WALSync")), "IO:WALSync");
        assert_eq!(
            classify(s("idle in transaction"), s("Client"), s("ClientRead")),
            "idle in transaction"
        );
        assert_eq!(classify(s("idle"), s("Client"), s("ClientRead")), "idle");
    }

    #[test]
    fn shares_leave_idle_out() {
        let mut waits = Waits {
            samples: 2,
            ..Waits::default()
        };
        waits.by_class.insert("idle".into(), 10);
        waits.by_class.insert("running".into(), 3);
        waits.by_class.insert("IO:WALSync".into(), 1);
        let text = waits.to_string();
        assert!(text.starts_with("backends not idle: 2.00 on average (of 7 connected"));
        assert!(text.contains("running 75%, IO:WALSync 25%"), "{text}");
    }
}
