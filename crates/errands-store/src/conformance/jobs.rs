//! Conformance cases: storing, reading, cancelling, retrying and listing jobs.

use chrono::Duration;
use errands_core::{EnqueueRequest, JobId, JobState};
use serde_json::json;

use super::{add, claim, job, new_job, t0, Harness, NODE};
use crate::{ClaimRequest, JobFilter, Report, Reported, Store, StoreError};

/// Conformance case.
pub async fn enqueue_and_get<H: Harness>(harness: &H) {
    let store = harness.store();
    let request = EnqueueRequest {
        args: json!({"to": "a@example.com"}),
        tags: vec!["signup".into()],
        ..job("email")
    };
    let id = add(store, request, t0()).await;
    let stored = store.get(id).await.expect("get");
    assert_eq!(stored.kind, "email");
    assert_eq!(stored.queue, "default");
    assert_eq!(stored.args, json!({"to": "a@example.com"}));
    assert_eq!(stored.state, JobState::Queued);
    assert_eq!(stored.attempt, 0);
    assert_eq!(stored.tags, ["signup"]);
    assert_eq!(stored.created_at, t0());
    let missing = JobId::new();
    assert!(matches!(store.get(missing).await, Err(StoreError::NotFound(id)) if id == missing));
}

/// Conformance case.
pub async fn batch_enqueue_keeps_order<H: Harness>(harness: &H) {
    let store = harness.store();
    let jobs: Vec<_> = (0..50)
        .map(|i| {
            new_job(
                EnqueueRequest {
                    args: json!(i),
                    ..job("n")
                },
                t0(),
            )
        })
        .collect();
    let ids: Vec<_> = jobs.iter().map(|j| j.id).collect();
    let stored = store.enqueue(jobs).await.expect("batch");
    assert_eq!(stored.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert!(stored
        .iter()
        .all(|e| e.created && e.state == JobState::Queued));
}

/// The early announcement carries the same outcome as the reply, and the announced jobs can
/// be claimed by the time it arrives.
/// Conformance case.
pub async fn enqueue_announces_what_it_stored<H: Harness>(harness: &H) {
    let store = harness.store();
    let jobs = vec![new_job(job("a"), t0()), new_job(job("b"), t0())];
    let (committed_tx, committed) = tokio::sync::oneshot::channel();
    let (stored, announced) = tokio::join!(store.enqueue_announcing(jobs, committed_tx), async {
        let announced = committed.await.expect("announced");
        (announced, claim(store, &["default"], 10, "w", t0()).await)
    });
    let stored = stored.expect("enqueue");
    let (announced, mut claimed) = announced;
    assert_eq!(announced, stored);
    claimed.sort();
    let mut ids: Vec<_> = stored.iter().map(|e| e.id).collect();
    ids.sort();
    assert_eq!(claimed, ids);
}

/// Conformance case.
pub async fn unique_keys_deduplicate<H: Harness>(harness: &H) {
    let store = harness.store();
    let keyed = |window: Option<f64>| EnqueueRequest {
        unique_key: Some("k".into()),
        unique_for: window,
        ..job("u")
    };
    let first = add(store, keyed(None), t0()).await;
    let again = store
        .enqueue(vec![new_job(keyed(None), t0())])
        .await
        .expect("enqueue");
    assert_eq!((again[0].id, again[0].created), (first, false));
    claim(store, &["default"], 1, "w", t0()).await;
    store
        .complete(first, "w", None, t0())
        .await
        .expect("complete");
    // Finished, and created before the window: a new job may take the key.
    let later = t0() + Duration::seconds(120);
    let second = add(store, keyed(Some(60.0)), later).await;
    assert_ne!(second, first);
    claim(store, &["default"], 1, "w", t0()).await;
    store
        .complete(second, "w", None, t0())
        .await
        .expect("complete");
    // Finished but inside its window: still deduplicated.
    let inside = store
        .enqueue(vec![new_job(
            keyed(Some(60.0)),
            t0() + Duration::seconds(30),
        )])
        .await
        .expect("enqueue");
    assert_eq!(inside[0].id, second);
    // Twice in one batch: one job.
    let batch = store
        .enqueue(vec![
            new_job(
                EnqueueRequest {
                    unique_key: Some("b".into()),
                    ..job("u")
                },
                t0(),
            ),
            new_job(
                EnqueueRequest {
                    unique_key: Some("b".into()),
                    ..job("u")
                },
                t0(),
            ),
        ])
        .await
        .expect("batch");
    assert_eq!(batch[0].id, batch[1].id);
    assert!(batch[0].created && !batch[1].created);
}

/// Conformance case.
pub async fn cancel_and_retry<H: Harness>(harness: &H) {
    let store = harness.store();
    let queued = add(store, job("a"), t0()).await;
    let (cancelled, holder) = store.cancel(queued, t0()).await.expect("cancel");
    assert_eq!((cancelled.state, holder), (JobState::Cancelled, None));
    let running = add(store, job("b"), t0()).await;
    claim(store, &["default"], 1, "w", t0()).await;
    let (cancelled, holder) = store.cancel(running, t0()).await.expect("cancel");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(holder.as_deref(), Some("w"));
    assert!(matches!(
        store.complete(running, "w", None, t0()).await,
        Err(StoreError::NotLeased(_))
    ));
    let retried = store.retry(running, true, t0()).await.expect("retry");
    assert_eq!((retried.state, retried.attempt), (JobState::Queued, 0));
    assert!(matches!(
        store.retry(running, true, t0()).await,
        Err(StoreError::IllegalTransition {
            state: JobState::Queued,
            ..
        })
    ));
    claim(store, &["default"], 1, "w", t0()).await;
    store
        .complete(running, "w", None, t0())
        .await
        .expect("complete");
    assert!(matches!(
        store.cancel(running, t0()).await,
        Err(StoreError::IllegalTransition {
            state: JobState::Completed,
            ..
        })
    ));
    let extended = store.retry(running, false, t0()).await.expect("retry");
    assert_eq!(extended.attempt, 1);
    assert!(extended.max_attempts >= 2);
}

/// Conformance case.
pub async fn delete_refuses_running_jobs<H: Harness>(harness: &H) {
    let store = harness.store();
    let id = add(store, job("a"), t0()).await;
    claim(store, &["default"], 1, "w", t0()).await;
    assert!(matches!(
        store.delete(id).await,
        Err(StoreError::IllegalTransition { .. })
    ));
    store.cancel(id, t0()).await.expect("cancel");
    store.delete(id).await.expect("delete");
    assert!(matches!(store.get(id).await, Err(StoreError::NotFound(_))));
    assert!(matches!(
        store.delete(id).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Conformance case.
pub async fn list_filters_and_pages<H: Harness>(harness: &H) {
    let store = harness.store();
    for i in 0..5 {
        add(
            store,
            EnqueueRequest {
                queue: Some("q".into()),
                args: json!(i),
                tags: vec![format!("t{}", i % 2)],
                ..job("list")
            },
            t0(),
        )
        .await;
    }
    add(store, job("other"), t0()).await;
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list(JobFilter {
                queue: Some("q".into()),
                before,
                limit: 2,
                ..Default::default()
            })
            .await
            .expect("list");
        seen.extend(page.jobs.iter().map(|j| j.args.clone()));
        match page.next {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen, [json!(4), json!(3), json!(2), json!(1), json!(0)]);
    let tagged = store
        .list(JobFilter {
            tag: Some("t1".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(tagged.jobs.len(), 2);
    let by_kind = store
        .list(JobFilter {
            kind: Some("other".into()),
            state: Some(JobState::Queued),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(by_kind.jobs.len(), 1);
}

/// Conformance case.
pub async fn queues_count_and_pause<H: Harness>(harness: &H) {
    let store = harness.store();
    add(store, job("a"), t0()).await;
    add(store, job("b"), t0() + Duration::seconds(5)).await;
    add(
        store,
        EnqueueRequest {
            delay: Some(60.0),
            ..job("c")
        },
        t0(),
    )
    .await;
    claim(store, &["default"], 1, "w", t0() + Duration::seconds(5)).await;
    store.set_paused("idle", true).await.expect("pause");
    let queues = store
        .queues(t0() + Duration::seconds(10))
        .await
        .expect("queues");
    let default = queues
        .iter()
        .find(|q| q.name == "default")
        .expect("default queue");
    assert_eq!(
        (
            default.counts.queued,
            default.counts.running,
            default.counts.scheduled
        ),
        (1, 1, 1)
    );
    assert_eq!(default.oldest_ready_age, Some(5.0));
    assert!(queues.iter().any(|q| q.name == "idle" && q.paused));
    assert_eq!(store.paused_queues().await.expect("paused"), ["idle"]);
    store.set_paused("idle", false).await.expect("resume");
    assert!(store.paused_queues().await.expect("paused").is_empty());
}

/// Conformance case.
pub async fn progress_is_recorded<H: Harness>(harness: &H) {
    let store = harness.store();
    let id = add(store, job("a"), t0()).await;
    let progress = errands_core::Progress {
        percent: Some(30.0),
        message: Some("extracting".into()),
        data: None,
    };
    assert!(store.progress(id, "w", progress.clone()).await.is_err());
    claim(store, &["default"], 1, "w", t0()).await;
    store
        .progress(id, "w", progress.clone())
        .await
        .expect("progress");
    assert_eq!(store.get(id).await.expect("get").progress, Some(progress));
}

/// A dead job cannot be retried while another unfinished job holds its unique key: two
/// unfinished jobs never share a key.
pub async fn retry_refused_while_another_job_holds_the_key<H: Harness>(harness: &H) {
    let store = harness.store();
    let keyed = || EnqueueRequest {
        unique_key: Some("k".into()),
        max_attempts: Some(1),
        ..job("a")
    };
    let first = add(store, keyed(), t0()).await;
    claim(store, &["default"], 1, "w", t0()).await;
    let cause = errands_core::lifecycle::FailureCause::Reported {
        retry: false,
        retry_after: None,
    };
    store
        .fail(first, "w", super::error(1, t0()), cause, t0())
        .await
        .expect("fail");
    let second = add(store, keyed(), t0()).await;
    assert_ne!(first, second);
    assert!(matches!(
        store.retry(first, false, t0()).await,
        Err(StoreError::UniqueKeyHeld { id, .. }) if id == first
    ));
    assert_eq!(store.get(first).await.expect("get").state, JobState::Dead);
    store.cancel(second, t0()).await.expect("cancel");
    let retried = store.retry(first, false, t0()).await.expect("retry");
    assert_eq!(retried.state, JobState::Queued);
}

/// Headers given at enqueue are kept by every write path (a plain job, a keyed one, a batch)
/// and come back on the stored job, the claimed job, and the completion (single and batched).
/// Conformance case.
pub async fn headers_travel_with_the_job<H: Harness>(harness: &H) {
    let store = harness.store();
    let headers = |n: u32| -> std::collections::BTreeMap<String, String> {
        [
            ("traceparent".to_owned(), format!("00-{n:032x}-{n:016x}-01")),
            ("x-tenant".to_owned(), n.to_string()),
        ]
        .into()
    };
    let with_headers = |n: u32| EnqueueRequest {
        headers: headers(n),
        ..job("traced")
    };
    let plain = add(store, with_headers(1), t0()).await;
    let keyed = add(
        store,
        EnqueueRequest {
            unique_key: Some("k".into()),
            ..with_headers(2)
        },
        t0(),
    )
    .await;
    let batch = store
        .enqueue(vec![
            new_job(with_headers(3), t0()),
            new_job(job("bare"), t0()),
        ])
        .await
        .expect("batch");
    let (batched, bare) = (batch[0].id, batch[1].id);
    assert_eq!(store.get(plain).await.expect("get").headers, headers(1));
    assert_eq!(store.get(keyed).await.expect("get").headers, headers(2));
    assert_eq!(store.get(batched).await.expect("get").headers, headers(3));
    assert!(store.get(bare).await.expect("get").headers.is_empty());

    let request = ClaimRequest {
        queues: vec!["default".into()],
        limit: 10,
        worker_id: "w".into(),
        node_id: NODE.into(),
    };
    let claimed = store.claim(request, t0()).await.expect("claim");
    let claimed_headers = |id| {
        claimed
            .iter()
            .find(|j| j.id == id)
            .map(|j| j.headers.clone())
            .expect("claimed")
    };
    assert_eq!(claimed_headers(plain), headers(1));
    assert!(claimed_headers(bare).is_empty());

    let completed = store
        .complete(plain, "w", None, t0())
        .await
        .expect("complete");
    assert_eq!(completed.headers, headers(1));
    let reports = [keyed, batched]
        .into_iter()
        .map(|id| Report::Complete { id, result: None })
        .collect();
    let outcomes = store.report("w", reports, t0()).await;
    for (outcome, n) in outcomes.into_iter().zip([2, 3]) {
        match outcome.expect("report") {
            Reported::Completed(job) => assert_eq!(job.headers, headers(n)),
            other => panic!("expected a completion, got {other:?}"),
        }
    }
}
