//! Conformance cases with several store instances on one database, standing for several
//! server nodes: every race a shared store must settle the same way on every backend.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use errands_core::cron::CronSpec;
use errands_core::{EnqueueRequest, JobId, JobState};

use super::{add, claim, error, job, new_job, t0, Harness, RETRY};
use crate::{ClaimRequest, Heartbeat, MinuteCount, Reap, Store, StoreError, MAINTENANCE_ROLE};

/// Three instances on one database.
async fn three<H: Harness>(harness: &H) -> Vec<Arc<H::Store>> {
    vec![
        Arc::new(harness.another().await),
        Arc::new(harness.another().await),
        Arc::new(harness.another().await),
    ]
}

async fn claim_on(
    store: &impl Store,
    node: &str,
    worker: &str,
    limit: usize,
    now: DateTime<Utc>,
) -> Vec<JobId> {
    let request = ClaimRequest {
        queues: vec!["default".into()],
        limit,
        worker_id: worker.to_owned(),
        node_id: node.to_owned(),
    };
    let jobs = store.claim(request, now).await.expect("claim");
    jobs.into_iter().map(|job| job.id).collect()
}

/// Twelve claimers on three instances drain 300 jobs: none is leased twice, none is missed.
pub async fn concurrent_claims_lease_each_job_once<H: Harness>(harness: &H) {
    let jobs: Vec<_> = (0..300).map(|_| new_job(job("a"), t0())).collect();
    let all: HashSet<JobId> = jobs.iter().map(|j| j.id).collect();
    harness.store().enqueue(jobs).await.expect("enqueue");
    let mut claimers = Vec::new();
    for (n, store) in three(harness).await.into_iter().enumerate() {
        for w in 0..4 {
            let store = store.clone();
            claimers.push(tokio::spawn(async move {
                let (node, worker) = (format!("node-{n}"), format!("w-{n}-{w}"));
                let mut mine = Vec::new();
                loop {
                    let got = claim_on(store.as_ref(), &node, &worker, 7, t0()).await;
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got);
                }
            }));
        }
    }
    let mut seen = HashSet::new();
    for claimer in claimers {
        for id in claimer.await.expect("claimer") {
            assert!(seen.insert(id), "job {id} was leased twice");
        }
    }
    assert_eq!(seen, all);
}

/// Completion on one node and cancel on another, at once, twenty times: exactly one of the
/// two applies each time, and the job's state says which.
pub async fn report_racing_cancel_has_one_winner<H: Harness>(harness: &H) {
    let (a, b) = (harness.another().await, harness.another().await);
    for _ in 0..20 {
        let id = add(&a, job("a"), t0()).await;
        claim(&a, &["default"], 1, "w", t0()).await;
        let (completed, cancelled) =
            tokio::join!(a.complete(id, "w", None, t0()), b.cancel(id, t0()));
        assert!(
            completed.is_ok() != cancelled.is_ok(),
            "complete: {completed:?}, cancel: {cancelled:?}"
        );
        let state = a.get(id).await.expect("get").state;
        let expected = if completed.is_ok() {
            JobState::Completed
        } else {
            JobState::Cancelled
        };
        assert_eq!(state, expected);
    }
    for _ in 0..20 {
        let id = add(&a, job("a"), t0()).await;
        claim(&a, &["default"], 1, "w", t0()).await;
        let (failed, cancelled) = tokio::join!(
            a.fail(id, "w", error(1, t0()), RETRY, t0()),
            b.cancel(id, t0())
        );
        cancelled.expect("a job that failed is still cancellable");
        let job = a.get(id).await.expect("get");
        // A cancelled job is never rescheduled by a late failure report.
        assert_eq!(job.state, JobState::Cancelled);
        assert_eq!(job.errors.len(), usize::from(failed.is_ok()));
    }
}

/// The timeout sweep on one node and the worker's completion on another, at once: one wins,
/// and a timeout is recorded exactly when the sweep won.
pub async fn report_racing_timeout_has_one_winner<H: Harness>(harness: &H) {
    let (a, b) = (harness.another().await, harness.another().await);
    let later = t0() + Duration::seconds(1);
    for _ in 0..20 {
        let request = EnqueueRequest {
            timeout: Some(1.0),
            ..job("a")
        };
        let id = add(&a, request, t0()).await;
        claim(&a, &["default"], 1, "w", t0()).await;
        let (completed, expired) =
            tokio::join!(a.complete(id, "w", None, later), b.expire_deadlines(later));
        let expired = expired.expect("expire");
        assert!(
            completed.is_ok() != (expired.len() == 1),
            "{completed:?} {expired:?}"
        );
        let job = a.get(id).await.expect("get");
        assert_eq!(job.errors.len(), expired.len());
        assert_eq!(job.state == JobState::Completed, completed.is_ok());
    }
}

/// Two nodes sweep at the same instant: each due job is promoted once and each overdue job
/// timed out once.
pub async fn simultaneous_sweeps_apply_once<H: Harness>(harness: &H) {
    let (a, b) = (harness.another().await, harness.another().await);
    let delayed: Vec<_> = (0..100)
        .map(|_| {
            let request = EnqueueRequest {
                delay: Some(10.0),
                ..job("later")
            };
            new_job(request, t0())
        })
        .collect();
    a.enqueue(delayed).await.expect("enqueue");
    for _ in 0..10 {
        let request = EnqueueRequest {
            timeout: Some(1.0),
            ..job("slow")
        };
        add(&a, request, t0()).await;
    }
    claim(&a, &["default"], 10, "w", t0()).await;
    let due = t0() + Duration::seconds(10);
    let (left, right) = tokio::join!(a.promote_due(due), b.promote_due(due));
    let promoted: Vec<JobId> = [left.expect("promote"), right.expect("promote")]
        .concat()
        .into_iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(promoted.len(), 100);
    assert_eq!(promoted.iter().collect::<HashSet<_>>().len(), 100);
    let (left, right) = tokio::join!(a.expire_deadlines(due), b.expire_deadlines(due));
    let expired = [left.expect("expire"), right.expect("expire")].concat();
    assert_eq!(expired.len(), 10);
    for job in expired {
        assert_eq!(a.get(job.id).await.expect("get").errors.len(), 1);
    }
}

/// Fifteen enqueues of one unique key through three nodes at once create exactly one job,
/// and every caller is told its id.
pub async fn unique_key_under_concurrent_enqueue_creates_one_job<H: Harness>(harness: &H) {
    let mut tasks = Vec::new();
    for store in three(harness).await {
        for _ in 0..5 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let request = EnqueueRequest {
                    unique_key: Some("only-one".into()),
                    ..job("a")
                };
                store
                    .enqueue(vec![new_job(request, t0())])
                    .await
                    .expect("enqueue")
                    .remove(0)
            }));
        }
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("enqueue task"));
    }
    assert_eq!(outcomes.iter().filter(|o| o.created).count(), 1);
    let ids: HashSet<_> = outcomes.iter().map(|o| o.id).collect();
    assert_eq!(ids.len(), 1);
    let page = harness
        .store()
        .list(crate::JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(page.jobs.len(), 1);
}

/// A node stops renewing its lease while holding a job: before the lease ends nothing is
/// released; after, the job is released with a NodeLost error and requeued, the live node's
/// job stays, and the dead node's late report is refused.
pub async fn dead_node_jobs_are_released_after_its_lease<H: Harness>(harness: &H) {
    let (a, b) = (harness.another().await, harness.another().await);
    let lease = Duration::seconds(15);
    a.heartbeat("node-a", t0(), t0() + lease).await.expect("a");
    b.heartbeat("node-b", t0(), t0() + lease).await.expect("b");
    let lost = add(&a, job("a"), t0()).await;
    let kept = add(&a, job("b"), t0()).await;
    assert_eq!(claim_on(&a, "node-a", "wa", 1, t0()).await, [lost]);
    assert_eq!(claim_on(&b, "node-b", "wb", 1, t0()).await, [kept]);

    let before = t0() + Duration::seconds(10);
    assert!(b
        .reap_nodes(Reap::Expired, before)
        .await
        .expect("reap")
        .is_empty());
    b.heartbeat("node-b", before, before + lease)
        .await
        .expect("b");

    let after = t0() + Duration::seconds(16);
    let released = b.reap_nodes(Reap::Expired, after).await.expect("reap");
    assert_eq!(released.iter().map(|r| r.id).collect::<Vec<_>>(), [lost]);
    assert_eq!(released[0].worker_id, "wa");
    let job = b.get(lost).await.expect("get");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.errors[0].kind, "WorkerLost");
    assert!(job.errors[0].message.contains("node-a"));
    assert_eq!(b.get(kept).await.expect("get").state, JobState::Running);
    assert!(matches!(
        a.complete(lost, "wa", None, after).await,
        Err(StoreError::NotLeased(_))
    ));
    assert!(b
        .reap_nodes(Reap::Expired, after)
        .await
        .expect("reap")
        .is_empty());
}

/// A node that starts while others run registers and sweeps, and takes nothing from them.
pub async fn a_starting_node_steals_nothing<H: Harness>(harness: &H) {
    let (a, c) = (harness.another().await, harness.another().await);
    a.heartbeat("node-a", t0(), t0() + Duration::seconds(15))
        .await
        .expect("a");
    let id = add(&a, job("a"), t0()).await;
    claim_on(&a, "node-a", "wa", 1, t0()).await;
    let now = t0() + Duration::seconds(5);
    let joined = c
        .heartbeat("node-c", now, now + Duration::seconds(15))
        .await
        .expect("c");
    assert_eq!(joined, Heartbeat::Registered);
    assert!(c
        .reap_nodes(Reap::Expired, now)
        .await
        .expect("reap")
        .is_empty());
    assert_eq!(c.get(id).await.expect("get").state, JobState::Running);
    a.complete(id, "wa", None, now).await.expect("complete");
}

/// A node presumed dead (its jobs released) is told so by its next heartbeat, so it can drop
/// the workers whose jobs it no longer holds.
pub async fn a_reaped_node_learns_it_on_its_next_heartbeat<H: Harness>(harness: &H) {
    let (a, b) = (harness.another().await, harness.another().await);
    let lease = Duration::seconds(15);
    let first = a.heartbeat("node-a", t0(), t0() + lease).await.expect("a");
    assert_eq!(first, Heartbeat::Registered);
    let renewed = a
        .heartbeat("node-a", t0() + Duration::seconds(5), t0() + lease * 2)
        .await
        .expect("a");
    assert_eq!(renewed, Heartbeat::Renewed);
    let after = t0() + Duration::seconds(31);
    b.reap_nodes(Reap::Expired, after).await.expect("reap");
    let back = a
        .heartbeat("node-a", after, after + lease)
        .await
        .expect("a");
    assert_eq!(back, Heartbeat::Registered);
}

/// Two nodes asking to lead at once: one holds the lease until it expires, then the other
/// takes it and the first is refused.
pub async fn leader_lease_has_one_holder<H: Harness>(harness: &H) {
    let (a, b) = (harness.another().await, harness.another().await);
    let until = t0() + Duration::seconds(10);
    let (left, right) = tokio::join!(
        a.try_lead(MAINTENANCE_ROLE, "node-a", t0(), until),
        b.try_lead(MAINTENANCE_ROLE, "node-b", t0(), until)
    );
    let (left, right) = (left.expect("lead"), right.expect("lead"));
    assert!(left != right, "exactly one leader: {left} {right}");
    let (leader, leader_id, other, other_id) = if left {
        (&a, "node-a", &b, "node-b")
    } else {
        (&b, "node-b", &a, "node-a")
    };
    let mid = t0() + Duration::seconds(5);
    assert!(!other
        .try_lead(MAINTENANCE_ROLE, other_id, mid, mid + Duration::seconds(10))
        .await
        .expect("lead"));
    assert!(leader
        .try_lead(
            MAINTENANCE_ROLE,
            leader_id,
            mid,
            mid + Duration::seconds(10)
        )
        .await
        .expect("renew"));
    let expired = t0() + Duration::seconds(16);
    assert!(other
        .try_lead(
            MAINTENANCE_ROLE,
            other_id,
            expired,
            expired + Duration::seconds(10)
        )
        .await
        .expect("take over"));
    assert!(!leader
        .try_lead(
            MAINTENANCE_ROLE,
            leader_id,
            expired,
            expired + Duration::seconds(10)
        )
        .await
        .expect("refused"));
}

/// A pause made through one node stops claims through another, and a resume lets them go.
pub async fn pause_through_one_instance_stops_claims_through_another<H: Harness>(harness: &H) {
    let (a, b) = (harness.another().await, harness.another().await);
    add(&a, job("a"), t0()).await;
    a.set_paused("default", true).await.expect("pause");
    assert!(claim(&b, &["default"], 5, "w", t0()).await.is_empty());
    assert_eq!(b.paused_queues().await.expect("paused"), ["default"]);
    a.set_paused("default", false).await.expect("resume");
    assert_eq!(claim(&b, &["default"], 5, "w", t0()).await.len(), 1);
}

/// Two nodes fire due cron schedules at the same instant: each fire time is enqueued once.
pub async fn cron_fires_once_across_instances<H: Harness>(harness: &H) {
    let (a, b) = (harness.another().await, harness.another().await);
    for name in ["one", "two", "three"] {
        let spec = CronSpec::new("* * * * *", "UTC", job(name));
        a.put_cron(name, spec, t0()).await.expect("put");
    }
    let due = t0() + Duration::minutes(1);
    let (left, right) = tokio::join!(a.fire_due_cron(due), b.fire_due_cron(due));
    let fired = [left.expect("fire"), right.expect("fire")].concat();
    assert_eq!(fired.iter().filter(|f| f.job.created).count(), 3);
    let page = a
        .list(crate::JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(page.jobs.len(), 3);
}

/// Throughput each instance records is read by every instance, each node's replacing what
/// it recorded before, and minutes before the window are forgotten. An unshared store
/// records nothing: its one node counts everything itself.
pub async fn throughput_recorded_by_each_instance_is_read_by_every_instance<H: Harness>(
    harness: &H,
) {
    let (a, b) = (harness.another().await, harness.another().await);
    let count = |node: &str, minute: i64, count: u64| MinuteCount {
        node_id: node.into(),
        queue: "q".into(),
        minute,
        count,
    };
    a.record_throughput("node-a", vec![count("node-a", 100, 1)], 90)
        .await
        .expect("record");
    a.record_throughput(
        "node-a",
        vec![count("node-a", 100, 3), count("node-a", 101, 1)],
        90,
    )
    .await
    .expect("record");
    b.record_throughput("node-b", vec![count("node-b", 100, 5)], 90)
        .await
        .expect("record");
    let read = b.recorded_throughput(90).await.expect("read");
    if !a.shared() {
        assert_eq!(read, None);
        return;
    }
    assert_eq!(
        read,
        Some(vec![
            count("node-a", 100, 3),
            count("node-b", 100, 5),
            count("node-a", 101, 1)
        ])
    );
    // A later window: minute 100 is forgotten by whichever node records next.
    b.record_throughput("node-b", vec![], 101)
        .await
        .expect("record");
    assert_eq!(
        a.recorded_throughput(0).await.expect("read"),
        Some(vec![count("node-a", 101, 1)])
    );
}
