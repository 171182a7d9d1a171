//! Cron schedules: declaring, listing, pausing and triggering them, and firing the due ones
//! from the maintenance pass.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use errands_core::cron::{validate_name, CronEntry, CronSpec};
use errands_store::Enqueued;

use super::{telemetry, Engine};
use crate::error::EngineError;

impl Engine {
    /// Creates or replaces the schedule `name`, returning it and whether it is new. The spec is
    /// validated first; errors name the field (`schedule`, `tz`, `job.kind`, …).
    pub async fn put_cron(
        &self,
        name: &str,
        spec: CronSpec,
    ) -> Result<(CronEntry, bool), EngineError> {
        validate_name(name)?;
        let now = self.now();
        spec.validate(&self.limits, now)?;
        let (stored, created) = self.store.put_cron(name, spec, now).await?;
        // Its first fire time may be sooner than the maintenance loop planned to wake.
        self.maintenance.notify_one();
        Ok((stored.entry(), created))
    }

    /// One schedule, with its next fire times; `None` if there is no such schedule.
    pub async fn get_cron(&self, name: &str) -> Result<Option<CronEntry>, EngineError> {
        Ok(self.store.get_cron(name).await?.map(|c| c.entry()))
    }

    /// Every schedule, by name, with its next fire times.
    pub async fn list_cron(&self) -> Result<Vec<CronEntry>, EngineError> {
        let stored = self.store.list_cron().await?;
        Ok(stored.into_iter().map(|c| c.entry()).collect())
    }

    /// Deletes a schedule (jobs it already enqueued stay). False if there was none.
    pub async fn delete_cron(&self, name: &str) -> Result<bool, EngineError> {
        Ok(self.store.delete_cron(name).await?)
    }

    /// Pauses or resumes a schedule. A resumed schedule next fires at its first fire time
    /// after now. `None` if there is no such schedule.
    pub async fn set_cron_paused(
        &self,
        name: &str,
        paused: bool,
    ) -> Result<Option<CronEntry>, EngineError> {
        let stored = self.store.set_cron_paused(name, paused, self.now()).await?;
        if stored.is_some() && !paused {
            self.maintenance.notify_one();
        }
        Ok(stored.map(|c| c.entry()))
    }

    /// Enqueues a schedule's job now, outside its timing (paused or not), under the unique key
    /// `cron:{name}:manual:{now}`. `None` if there is no such schedule.
    pub async fn trigger_cron(&self, name: &str) -> Result<Option<Enqueued>, EngineError> {
        let Some(stored) = self.store.get_cron(name).await? else {
            return Ok(None);
        };
        let request = stored.spec.manual_request(name, self.now());
        Ok(self.enqueue(vec![request], false).await?.pop())
    }

    /// Enqueues the jobs of every schedule due at `now`, then wakes their queues. A failure is
    /// logged, not returned, so it never stops the rest of the maintenance pass.
    pub(crate) async fn fire_cron(&self, now: DateTime<Utc>) {
        let fired = match self.store.fire_due_cron(now).await {
            Ok(fired) => fired,
            Err(error) => {
                tracing::error!(%error, "firing cron schedules failed");
                return;
            }
        };
        let mut queues = HashSet::new();
        for cron in &fired {
            if !cron.job.created {
                continue;
            }
            tracing::debug!(cron = %cron.name, fire_time = %cron.fire_time, job_id = %cron.job.id,
                queue = %cron.queue, kind = %cron.kind, "cron schedule fired");
            telemetry::enqueued(&self.series, &cron.queue, &cron.kind, 1);
            self.publish_state(cron.job.id, &cron.queue, &cron.kind, cron.job.state, 0);
            queues.insert(cron.queue.as_str());
        }
        for queue in queues {
            self.signals.notify(queue);
        }
    }
}
