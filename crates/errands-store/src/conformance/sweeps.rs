//! Conformance cases: promotion of due jobs and purging of expired ones.

use chrono::Duration;
use errands_core::{EnqueueRequest, JobState};

use super::{add, claim, job, t0, Harness};
use crate::Store;

/// Conformance case.
pub async fn scheduled_jobs_are_promoted_when_due<H: Harness>(harness: &H) {
    let store = harness.store();
    let id = add(
        store,
        EnqueueRequest {
            delay: Some(60.0),
            ..job("later")
        },
        t0(),
    )
    .await;
    assert_eq!(store.get(id).await.expect("get").state, JobState::Scheduled);
    assert_eq!(
        store.next_wakeup().await.expect("wakeup"),
        Some(t0() + Duration::seconds(60))
    );
    assert!(store
        .promote_due(t0() + Duration::seconds(59))
        .await
        .expect("promote")
        .is_empty());
    store
        .promote_due(t0() + Duration::seconds(60))
        .await
        .expect("promote");
    assert_eq!(store.get(id).await.expect("get").state, JobState::Queued);
}

/// Conformance case.
pub async fn retention_purges_finished_jobs<H: Harness>(harness: &H) {
    let store = harness.store();
    let short = add(
        store,
        EnqueueRequest {
            retention: Some(10.0),
            ..job("a")
        },
        t0(),
    )
    .await;
    let long = add(
        store,
        EnqueueRequest {
            retention: Some(100.0),
            ..job("b")
        },
        t0(),
    )
    .await;
    claim(store, &["default"], 2, "w", t0()).await;
    store
        .complete(short, "w", None, t0())
        .await
        .expect("complete");
    store
        .complete(long, "w", None, t0())
        .await
        .expect("complete");
    assert_eq!(
        store
            .purge_expired(t0() + Duration::seconds(9))
            .await
            .expect("purge"),
        0
    );
    assert_eq!(
        store
            .purge_expired(t0() + Duration::seconds(10))
            .await
            .expect("purge"),
        1
    );
    assert!(store.get(short).await.is_err());
    assert_eq!(
        store.get(long).await.expect("get").state,
        JobState::Completed
    );
}
