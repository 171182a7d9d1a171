//! The store conformance suite: the contract every backend meets, written once against
//! [`Store`]. Each case is a public async function taking a [`Harness`], which gives it a
//! fresh, empty database and as many store instances on it as the case needs (cases with
//! several instances stand for several server nodes). Time is driven by hand.
//!
//! A backend runs the whole suite, one named test per case, with
//! [`conformance_suite!`](crate::conformance_suite):
//!
//! ```text
//! errands_store::conformance_suite!(MyHarness);
//! ```

pub mod cron;
pub mod history;
pub mod interruption;
pub mod jobs;
pub mod lease;
pub mod multinode;
pub mod sweeps;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use errands_core::lifecycle::FailureCause;
use errands_core::{AttemptError, EnqueueRequest, JobId, Limits, NewJob};

use crate::{ClaimRequest, Store};

/// A fresh database for one case, and store instances on it.
#[async_trait]
pub trait Harness: Send + Sync + Sized + 'static {
    /// The backend under test.
    type Store: Store;

    /// A new, empty, migrated database with one store instance open on it.
    async fn fresh() -> Self;

    /// The first store instance.
    fn store(&self) -> &Self::Store;

    /// Another store instance on the same database, as a second server node would open it.
    async fn another(&self) -> Self::Store;
}

/// Generates one `#[tokio::test]` per conformance case for the harness type given.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ty) => {
        $crate::conformance_suite!(@cases $harness;
            jobs::enqueue_and_get,
            jobs::batch_enqueue_keeps_order,
            jobs::enqueue_announces_what_it_stored,
            jobs::unique_keys_deduplicate,
            jobs::cancel_and_retry,
            jobs::retry_refused_while_another_job_holds_the_key,
            jobs::delete_refuses_running_jobs,
            jobs::list_filters_and_pages,
            jobs::queues_count_and_pause,
            jobs::progress_is_recorded,
            jobs::headers_travel_with_the_job,
            lease::claim_follows_priority_then_age,
            lease::claim_walks_queues_in_order,
            lease::claim_skips_paused_queues,
            lease::complete_needs_the_lease,
            lease::failures_retry_then_die,
            lease::refused_retry_is_dead,
            lease::lost_worker_requeues,
            lease::holders_are_the_workers_running_jobs_on_a_node,
            lease::unclaimed_jobs_return_unattempted,
            lease::restart_of_an_unshared_store_releases_other_nodes_jobs,
            lease::deadlines_expire,
            lease::late_report_after_timeout_is_refused,
            interruption::interrupted_job_is_queued_with_its_attempt_unused,
            interruption::interruptions_past_the_cap_count_as_failures,
            interruption::interruption_without_the_lease_changes_nothing,
            history::error_history_keeps_the_first_and_latest_attempts,
            sweeps::scheduled_jobs_are_promoted_when_due,
            sweeps::retention_purges_finished_jobs,
            cron::cron_schedules_are_stored,
            cron::cron_fires_each_fire_time_once,
            cron::cron_catch_up_after_downtime,
            cron::cron_pause_and_resume,
            cron::cron_redeclaring_keeps_the_next_fire_time,
            multinode::concurrent_claims_lease_each_job_once,
            multinode::report_racing_cancel_has_one_winner,
            multinode::report_racing_timeout_has_one_winner,
            multinode::simultaneous_sweeps_apply_once,
            multinode::unique_key_under_concurrent_enqueue_creates_one_job,
            multinode::dead_node_jobs_are_released_after_its_lease,
            multinode::a_starting_node_steals_nothing,
            multinode::a_reaped_node_learns_it_on_its_next_heartbeat,
            multinode::leader_lease_has_one_holder,
            multinode::pause_through_one_instance_stops_claims_through_another,
            multinode::cron_fires_once_across_instances,
            multinode::throughput_recorded_by_each_instance_is_read_by_every_instance,
        );
    };
    (@cases $harness:ty; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness =
                    <$harness as $crate::conformance::Harness>::fresh().await;
                $crate::conformance::$module::$case(&harness).await;
            }
        )*
    };
}

/// The node id claims in single-node cases are made under.
pub(crate) const NODE: &str = "node-1";

pub(crate) fn t0() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().expect("valid time")
}

pub(crate) fn new_job(request: EnqueueRequest, now: DateTime<Utc>) -> NewJob {
    request
        .validate(&Limits::default(), now)
        .expect("valid request")
}

pub(crate) fn job(kind: &str) -> EnqueueRequest {
    EnqueueRequest::new(kind)
}

pub(crate) async fn add(store: &impl Store, request: EnqueueRequest, now: DateTime<Utc>) -> JobId {
    store
        .enqueue(vec![new_job(request, now)])
        .await
        .expect("enqueue")[0]
        .id
}

pub(crate) async fn claim(
    store: &impl Store,
    queues: &[&str],
    limit: usize,
    worker: &str,
    now: DateTime<Utc>,
) -> Vec<JobId> {
    let request = ClaimRequest {
        queues: queues.iter().map(|q| q.to_string()).collect(),
        limit,
        worker_id: worker.to_owned(),
        node_id: NODE.to_owned(),
    };
    store
        .claim(request, now)
        .await
        .expect("claim")
        .into_iter()
        .map(|job| job.id)
        .collect()
}

pub(crate) fn error(attempt: u32, now: DateTime<Utc>) -> AttemptError {
    AttemptError {
        attempt,
        kind: "Boom".into(),
        message: "it broke".into(),
        traceback: Some("line 1".into()),
        at: now,
    }
}

pub(crate) const RETRY: FailureCause = FailureCause::Reported {
    retry: true,
    retry_after: None,
};
