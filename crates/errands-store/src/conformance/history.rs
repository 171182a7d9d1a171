//! Conformance cases: a job's error history stays bounded however often it fails.

use errands_core::lifecycle::{
    FailureCause, ERROR_HISTORY_FIRST, ERROR_HISTORY_LATEST, MAX_TRACEBACK_BYTES,
};
use errands_core::{EnqueueRequest, JobId};

use super::{add, claim, error, job, t0, Harness};
use crate::{Report, Store};

/// Retry at once, so each attempt can be claimed straight after the last failed.
const AT_ONCE: FailureCause = FailureCause::Reported {
    retry: true,
    retry_after: Some(0.0),
};

/// Fails the job's next attempt through whichever path `attempt` picks: a single fail, a
/// batched report, or its worker being lost. Every path must cap the history.
async fn fail_once(store: &impl Store, id: JobId, attempt: u32) {
    let now = t0();
    assert_eq!(claim(store, &["default"], 1, "w", now).await, [id]);
    let mut failure = error(attempt, now);
    failure.traceback = Some("frame\n".repeat(10_000));
    match attempt % 3 {
        0 => {
            store
                .fail(id, "w", failure, AT_ONCE, now)
                .await
                .expect("fail");
        }
        1 => {
            let report = Report::Fail {
                id,
                error: failure,
                cause: AT_ONCE,
            };
            let outcome = store.report("w", vec![report], now).await.remove(0);
            outcome.expect("report");
        }
        _ => {
            store.release_worker("w", now).await.expect("release");
        }
    }
}

/// Conformance case.
pub async fn error_history_keeps_the_first_and_latest_attempts<H: Harness>(harness: &H) {
    let store = harness.store();
    let request = EnqueueRequest {
        max_attempts: Some(100),
        ..job("flaky")
    };
    let id = add(store, request, t0()).await;
    for attempt in 1..=25 {
        fail_once(store, id, attempt).await;
    }
    let failed = store.get(id).await.expect("get");
    assert_eq!(failed.attempt, 25);
    let attempts: Vec<u32> = failed.errors.iter().map(|e| e.attempt).collect();
    let latest = (26 - ERROR_HISTORY_LATEST as u32)..=25;
    let expected: Vec<u32> = (1..=ERROR_HISTORY_FIRST as u32).chain(latest).collect();
    assert_eq!(attempts, expected);
    for error in &failed.errors {
        let traceback = error.traceback.as_deref().unwrap_or_default();
        assert!(
            traceback.len() <= MAX_TRACEBACK_BYTES,
            "{} bytes",
            traceback.len()
        );
    }
    let lost = failed.errors.iter().find(|e| e.attempt == 23).expect("23");
    assert_eq!(lost.kind, "WorkerLost", "the lost worker's attempt is kept");
}
