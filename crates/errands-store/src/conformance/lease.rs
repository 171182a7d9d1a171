//! Conformance cases: claims, reports under a lease, and leases ending.

use chrono::Duration;
use errands_core::lifecycle::FailureCause;
use errands_core::{Backoff, EnqueueRequest, JobState};

use super::{add, claim, error, job, t0, Harness, NODE, RETRY};
use crate::{ClaimRequest, Reap, Store, StoreError};
use serde_json::json;

/// Conformance case.
pub async fn claim_follows_priority_then_age<H: Harness>(harness: &H) {
    let store = harness.store();
    let old_low = add(store, job("a"), t0()).await;
    let new_high = add(
        store,
        EnqueueRequest {
            priority: Some(5),
            ..job("b")
        },
        t0() + Duration::seconds(1),
    )
    .await;
    let new_low = add(store, job("c"), t0() + Duration::seconds(2)).await;
    let now = t0() + Duration::seconds(3);
    assert_eq!(
        claim(store, &["default"], 2, "w1", now).await,
        [new_high, old_low]
    );
    assert_eq!(claim(store, &["default"], 5, "w1", now).await, [new_low]);
    assert!(claim(store, &["default"], 5, "w1", now).await.is_empty());
    let running = store.get(new_high).await.expect("get");
    assert_eq!(running.state, JobState::Running);
    assert_eq!(running.attempt, 1);
    assert_eq!(running.worker_id.as_deref(), Some("w1"));
    assert_eq!(running.started_at, Some(now));
}

/// Conformance case.
pub async fn claim_walks_queues_in_order<H: Harness>(harness: &H) {
    let store = harness.store();
    let batch = add(
        store,
        EnqueueRequest {
            queue: Some("batch".into()),
            ..job("b")
        },
        t0(),
    )
    .await;
    let urgent = add(
        store,
        EnqueueRequest {
            queue: Some("urgent".into()),
            ..job("u")
        },
        t0(),
    )
    .await;
    assert_eq!(
        claim(store, &["urgent", "batch"], 1, "w", t0()).await,
        [urgent]
    );
    assert_eq!(
        claim(store, &["urgent", "batch"], 5, "w", t0()).await,
        [batch]
    );
}

/// Conformance case.
pub async fn complete_needs_the_lease<H: Harness>(harness: &H) {
    let store = harness.store();
    let id = add(
        store,
        EnqueueRequest {
            timeout: Some(10.0),
            ..job("a")
        },
        t0(),
    )
    .await;
    assert!(matches!(
        store.complete(id, "w1", None, t0()).await,
        Err(StoreError::NotLeased(_))
    ));
    claim(store, &["default"], 1, "w1", t0()).await;
    let running = store.get(id).await.expect("get");
    assert_eq!(running.deadline, Some(t0() + Duration::seconds(10)));
    assert!(matches!(
        store.complete(id, "w2", None, t0()).await,
        Err(StoreError::NotLeased(_))
    ));
    let completed = store
        .complete(id, "w1", Some(json!({"ok": 1})), t0())
        .await
        .expect("complete");
    assert_eq!(
        (
            completed.id,
            completed.queue.as_str(),
            completed.kind.as_str()
        ),
        (id, "default", "a")
    );
    assert_eq!(completed.attempt, 1);
    assert_eq!(completed.started_at, Some(t0()));
    let done = store.get(id).await.expect("get");
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.result, Some(json!({"ok": 1})));
    assert_eq!(done.finished_at, Some(t0()));
    assert_eq!(done.worker_id, None);
    assert_eq!(done.deadline, None);
    assert!(matches!(
        store.complete(id, "w1", None, t0()).await,
        Err(StoreError::NotLeased(_))
    ));
}

/// Conformance case.
pub async fn failures_retry_then_die<H: Harness>(harness: &H) {
    let store = harness.store();
    let request = EnqueueRequest {
        max_attempts: Some(2),
        backoff: Some(Backoff::Fixed { delay: 5.0 }),
        ..job("flaky")
    };
    let id = add(store, request, t0()).await;
    claim(store, &["default"], 1, "w", t0()).await;
    let failed = store
        .fail(id, "w", error(1, t0()), RETRY, t0())
        .await
        .expect("fail");
    assert_eq!(failed.state, JobState::Scheduled);
    assert_eq!(failed.run_at, t0() + Duration::seconds(5));
    assert_eq!(failed.errors.len(), 1);
    assert_eq!(failed.errors[0].kind, "Boom");
    assert!(
        claim(store, &["default"], 1, "w", t0()).await.is_empty(),
        "not due yet"
    );
    let later = t0() + Duration::seconds(5);
    let promoted = store.promote_due(later).await.expect("promote");
    assert_eq!(
        promoted,
        [crate::MovedJob {
            id,
            queue: "default".into(),
            kind: "flaky".into(),
            attempt: 1,
        }]
    );
    assert_eq!(claim(store, &["default"], 1, "w", later).await, [id]);
    let dead = store
        .fail(id, "w", error(2, later), RETRY, later)
        .await
        .expect("fail");
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.attempt, 2);
    assert_eq!(dead.errors.len(), 2);
    assert_eq!(dead.finished_at, Some(later));
}

/// Conformance case.
pub async fn refused_retry_is_dead<H: Harness>(harness: &H) {
    let store = harness.store();
    let id = add(store, job("a"), t0()).await;
    claim(store, &["default"], 1, "w", t0()).await;
    let cause = FailureCause::Reported {
        retry: false,
        retry_after: None,
    };
    let dead = store
        .fail(id, "w", error(1, t0()), cause, t0())
        .await
        .expect("fail");
    assert_eq!(dead.state, JobState::Dead);
}

/// Conformance case.
pub async fn lost_worker_requeues<H: Harness>(harness: &H) {
    let store = harness.store();
    let mine = add(store, job("a"), t0()).await;
    let theirs = add(store, job("b"), t0()).await;
    claim(store, &["default"], 1, "lost", t0()).await;
    claim(store, &["default"], 1, "alive", t0()).await;
    let released = store.release_worker("lost", t0()).await.expect("release");
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].id, mine);
    assert_eq!(released[0].state, JobState::Queued);
    let requeued = store.get(mine).await.expect("get");
    assert_eq!(requeued.state, JobState::Queued);
    assert_eq!(requeued.errors[0].kind, "WorkerLost");
    assert_eq!(
        store.get(theirs).await.expect("get").state,
        JobState::Running
    );
}

/// The holders of a node are the workers with running jobs recorded against it, each once;
/// a worker whose jobs ended, or a job claimed under another node, is not one.
pub async fn holders_are_the_workers_running_jobs_on_a_node<H: Harness>(harness: &H) {
    let store = harness.store();
    for _ in 0..4 {
        add(store, job("a"), t0()).await;
    }
    claim(store, &["default"], 2, "two-jobs", t0()).await;
    let done = claim(store, &["default"], 1, "finished", t0()).await;
    store
        .complete(done[0], "finished", None, t0())
        .await
        .expect("complete");
    let elsewhere = ClaimRequest {
        queues: vec!["default".into()],
        limit: 1,
        worker_id: "on-another-node".into(),
        node_id: "node-2".into(),
    };
    store.claim(elsewhere, t0()).await.expect("claim");
    assert_eq!(store.holders(NODE).await.expect("holders"), ["two-jobs"]);
    assert_eq!(
        store.holders("node-2").await.expect("holders"),
        ["on-another-node"]
    );
    assert!(store.holders("node-3").await.expect("holders").is_empty());
}

/// Conformance case.
pub async fn unclaimed_jobs_return_unattempted<H: Harness>(harness: &H) {
    let store = harness.store();
    let first = add(store, job("a"), t0()).await;
    let second = add(store, job("b"), t0()).await;
    let elsewhere = add(store, job("c"), t0()).await;
    assert_eq!(
        claim(store, &["default"], 2, "w", t0()).await,
        [first, second]
    );
    claim(store, &["default"], 1, "other", t0()).await;
    store.cancel(second, t0()).await.expect("cancel");

    // Only jobs still leased to this worker move; the cancelled one and another worker's stay.
    let moved = store
        .unclaim("w", vec![first, second, elsewhere])
        .await
        .expect("unclaim");
    assert_eq!(moved.iter().map(|m| m.id).collect::<Vec<_>>(), [first]);
    assert_eq!(moved[0].attempt, 0);
    let back = store.get(first).await.expect("get");
    assert_eq!(back.state, JobState::Queued);
    assert_eq!(back.attempt, 0);
    assert!(back.errors.is_empty());
    assert_eq!(back.worker_id, None);
    assert_eq!(
        store.get(second).await.expect("get").state,
        JobState::Cancelled
    );
    assert_eq!(
        store.get(elsewhere).await.expect("get").state,
        JobState::Running
    );

    // It keeps its place in line and is claimed again as attempt 1.
    let again = store
        .claim(
            ClaimRequest {
                queues: vec!["default".into()],
                limit: 1,
                worker_id: "w".into(),
                node_id: NODE.into(),
            },
            t0(),
        )
        .await
        .expect("claim");
    assert_eq!(again[0].id, first);
    assert_eq!(again[0].attempt, 1);
}

/// A store only one server uses (SQLite), restarted: the new node releases every job the
/// previous process left running, at once, and keeps its own.
pub async fn restart_of_an_unshared_store_releases_other_nodes_jobs<H: Harness>(harness: &H) {
    let store = harness.store();
    let id = add(store, job("a"), t0()).await;
    let mine = add(store, job("b"), t0()).await;
    claim(store, &["default"], 1, "old-process", t0()).await;
    let request = ClaimRequest {
        queues: vec!["default".into()],
        limit: 1,
        worker_id: "new-worker".into(),
        node_id: "node-new".into(),
    };
    store.claim(request, t0()).await.expect("claim");
    let released = store
        .reap_nodes(Reap::AllBut("node-new"), t0())
        .await
        .expect("reap");
    assert_eq!(released.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
    let job = store.get(id).await.expect("get");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.errors[0].kind, "WorkerLost");
    assert!(
        job.errors[0].message.contains(NODE),
        "{}",
        job.errors[0].message
    );
    assert_eq!(store.get(mine).await.expect("get").state, JobState::Running);
}

/// Claims take nothing from a paused queue, whatever the caller believes about it.
pub async fn claim_skips_paused_queues<H: Harness>(harness: &H) {
    let store = harness.store();
    add(store, job("a"), t0()).await;
    let other = add(
        store,
        EnqueueRequest {
            queue: Some("other".into()),
            ..job("b")
        },
        t0(),
    )
    .await;
    store.set_paused("default", true).await.expect("pause");
    assert_eq!(
        claim(store, &["default", "other"], 5, "w", t0()).await,
        [other]
    );
    store.set_paused("default", false).await.expect("resume");
    assert_eq!(claim(store, &["default"], 5, "w", t0()).await.len(), 1);
}

/// A worker that reports after its attempt timed out is refused, and the one error recorded
/// is the timeout's.
pub async fn late_report_after_timeout_is_refused<H: Harness>(harness: &H) {
    let store = harness.store();
    let id = add(
        store,
        EnqueueRequest {
            timeout: Some(1.0),
            ..job("slow")
        },
        t0(),
    )
    .await;
    claim(store, &["default"], 1, "w", t0()).await;
    let later = t0() + Duration::seconds(1);
    assert_eq!(
        store.expire_deadlines(later).await.expect("expire").len(),
        1
    );
    assert!(matches!(
        store.complete(id, "w", None, later).await,
        Err(StoreError::NotLeased(_))
    ));
    assert!(matches!(
        store.fail(id, "w", error(1, later), RETRY, later).await,
        Err(StoreError::NotLeased(_))
    ));
    let job = store.get(id).await.expect("get");
    assert_eq!(job.errors.len(), 1);
    assert_eq!(job.errors[0].kind, "Timeout");
}

/// Conformance case.
pub async fn deadlines_expire<H: Harness>(harness: &H) {
    let store = harness.store();
    let id = add(
        store,
        EnqueueRequest {
            timeout: Some(2.0),
            backoff: Some(Backoff::None),
            ..job("slow")
        },
        t0(),
    )
    .await;
    claim(store, &["default"], 1, "w", t0()).await;
    assert!(store
        .expire_deadlines(t0() + Duration::seconds(1))
        .await
        .expect("expire")
        .is_empty());
    assert_eq!(
        store.next_wakeup().await.expect("wakeup"),
        Some(t0() + Duration::seconds(2))
    );
    let expired = store
        .expire_deadlines(t0() + Duration::seconds(2))
        .await
        .expect("expire");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].worker_id, "w");
    let job = store.get(id).await.expect("get");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.errors[0].kind, "Timeout");
}
