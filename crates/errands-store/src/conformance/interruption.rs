//! Conformance cases: attempts interrupted by their worker shutting down.

use errands_core::lifecycle::MAX_FREE_INTERRUPTIONS;
use errands_core::{Backoff, EnqueueRequest, Job, JobId, JobState};

use super::{add, claim, job, t0, Harness};
use crate::{Reported, Store, StoreError};

/// Interrupts `id` as `worker`, expecting the store to take it.
async fn interrupt(store: &impl Store, id: JobId, worker: &str) -> Reported {
    store.interrupt(id, worker, t0()).await.expect("interrupt")
}

/// The job of a `Requeued` outcome.
fn requeued(outcome: Reported) -> Job {
    match outcome {
        Reported::Requeued(job) => *job,
        other => panic!("expected the job requeued, got {other:?}"),
    }
}

/// An interrupted job is `queued` again at once with its attempt not used, no error recorded,
/// and runs as the same attempt on the next worker.
pub async fn interrupted_job_is_queued_with_its_attempt_unused<H: Harness>(harness: &H) {
    let store = harness.store();
    let id = add(store, job("a"), t0()).await;
    assert_eq!(claim(store, &["default"], 1, "stopping", t0()).await, [id]);

    let back = requeued(interrupt(store, id, "stopping").await);
    assert_eq!((back.state, back.attempt), (JobState::Queued, 0));
    assert_eq!(back.interruptions, 1);
    assert_eq!(back, store.get(id).await.expect("get"));
    assert!(back.errors.is_empty());
    assert_eq!(
        (back.worker_id, back.started_at, back.deadline),
        (None, None, None)
    );

    let again = store
        .claim(
            crate::ClaimRequest {
                queues: vec!["default".into()],
                limit: 1,
                worker_id: "next".into(),
                node_id: super::NODE.into(),
            },
            t0(),
        )
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempt), (id, 1));
    store
        .complete(id, "next", None, t0())
        .await
        .expect("complete on the next worker");
}

/// Past the cap of free interruptions an interruption is a failed attempt (`Interrupted`)
/// under the retry policy, so a job that always outlives the grace period still ends `dead`.
pub async fn interruptions_past_the_cap_count_as_failures<H: Harness>(harness: &H) {
    let store = harness.store();
    let request = EnqueueRequest {
        max_attempts: Some(2),
        backoff: Some(Backoff::None),
        ..job("a")
    };
    let id = add(store, request, t0()).await;
    for n in 1..=MAX_FREE_INTERRUPTIONS {
        claim(store, &["default"], 1, "w", t0()).await;
        let back = requeued(interrupt(store, id, "w").await);
        assert_eq!((back.attempt, back.interruptions), (0, n));
    }

    claim(store, &["default"], 1, "w", t0()).await;
    let Reported::Failed(failed) = interrupt(store, id, "w").await else {
        panic!("the interruption past the cap must fail the attempt");
    };
    assert_eq!((failed.state, failed.attempt), (JobState::Queued, 1));
    assert_eq!(failed.errors.len(), 1);
    assert_eq!(
        (failed.errors[0].kind.as_str(), failed.errors[0].attempt),
        ("Interrupted", 1)
    );

    claim(store, &["default"], 1, "w", t0()).await;
    let Reported::Failed(dead) = interrupt(store, id, "w").await else {
        panic!("the last attempt interrupted past the cap must fail");
    };
    assert_eq!((dead.state, dead.attempt), (JobState::Dead, 2));
    assert_eq!(dead.finished_at, Some(t0()));
    assert_eq!(store.get(id).await.expect("get").state, JobState::Dead);

    // Retried by hand it keeps its interruptions, unless its attempts start over.
    let kept = store.retry(id, false, t0()).await.expect("retry");
    assert_eq!(
        (kept.attempt, kept.interruptions),
        (2, MAX_FREE_INTERRUPTIONS)
    );
    claim(store, &["default"], 1, "w", t0()).await;
    let Reported::Failed(dead) = interrupt(store, id, "w").await else {
        panic!("still past the cap");
    };
    assert_eq!(dead.state, JobState::Dead);
    let reset = store.retry(id, true, t0()).await.expect("retry");
    assert_eq!((reset.attempt, reset.interruptions), (0, 0));
}

/// An interruption reported by a worker that does not hold the job (another worker's job, or
/// one it already completed) is refused and changes nothing.
pub async fn interruption_without_the_lease_changes_nothing<H: Harness>(harness: &H) {
    let store = harness.store();
    let theirs = add(store, job("a"), t0()).await;
    let done = add(store, job("b"), t0()).await;
    assert_eq!(
        claim(store, &["default"], 1, "holder", t0()).await,
        [theirs]
    );
    assert_eq!(claim(store, &["default"], 1, "w", t0()).await, [done]);
    store
        .complete(done, "w", None, t0())
        .await
        .expect("complete");
    let before = (
        store.get(theirs).await.expect("get"),
        store.get(done).await.expect("get"),
    );

    for (id, worker) in [(theirs, "w"), (done, "w"), (JobId::new(), "w")] {
        let refused = store.interrupt(id, worker, t0()).await;
        assert!(
            matches!(
                refused,
                Err(StoreError::NotLeased(_) | StoreError::NotFound(_))
            ),
            "interrupting {id} as {worker} gave {refused:?}"
        );
    }
    let after = (
        store.get(theirs).await.expect("get"),
        store.get(done).await.expect("get"),
    );
    assert_eq!(before, after);
    assert_eq!((after.0.state, after.0.attempt), (JobState::Running, 1));
    assert_eq!(after.1.state, JobState::Completed);
}
