//! The store conformance suite: written once against [`Store`], run by every backend.
//! Each check gets a fresh, empty store from the factory and drives time by hand.

use chrono::{DateTime, Duration, Utc};
use errands_core::cron::{CatchUp, CronSpec};
use errands_core::lifecycle::FailureCause;
use errands_core::{AttemptError, Backoff, EnqueueRequest, JobId, JobState, Limits, NewJob};
use serde_json::json;

use crate::{ClaimRequest, JobFilter, Store, StoreError};

/// Runs every check against stores made by `make`.
pub async fn run_all<S: Store, F: Fn() -> S>(make: F) {
    enqueue_and_get(&make()).await;
    batch_enqueue_keeps_order(&make()).await;
    enqueue_announces_what_it_stored(&make()).await;
    claim_follows_priority_then_age(&make()).await;
    claim_walks_queues_in_order(&make()).await;
    complete_needs_the_lease(&make()).await;
    failures_retry_then_die(&make()).await;
    refused_retry_is_dead(&make()).await;
    lost_worker_requeues(&make()).await;
    unclaimed_jobs_return_unattempted(&make()).await;
    orphans_after_restart_requeue(&make()).await;
    deadlines_expire(&make()).await;
    scheduled_jobs_are_promoted_when_due(&make()).await;
    unique_keys_deduplicate(&make()).await;
    cancel_and_retry(&make()).await;
    delete_refuses_running_jobs(&make()).await;
    retention_purges_finished_jobs(&make()).await;
    list_filters_and_pages(&make()).await;
    queues_count_and_pause(&make()).await;
    progress_is_recorded(&make()).await;
    cron_schedules_are_stored(&make()).await;
    cron_fires_each_fire_time_once(&make()).await;
    cron_catch_up_after_downtime(&make()).await;
    cron_pause_and_resume(&make()).await;
    cron_redeclaring_keeps_the_next_fire_time(&make()).await;
}

fn t0() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().expect("valid time")
}

fn new_job(request: EnqueueRequest, now: DateTime<Utc>) -> NewJob {
    request
        .validate(&Limits::default(), now)
        .expect("valid request")
}

fn job(kind: &str) -> EnqueueRequest {
    EnqueueRequest::new(kind)
}

async fn add(store: &impl Store, request: EnqueueRequest, now: DateTime<Utc>) -> JobId {
    store
        .enqueue(vec![new_job(request, now)])
        .await
        .expect("enqueue")[0]
        .id
}

async fn claim(
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
    };
    store
        .claim(request, now)
        .await
        .expect("claim")
        .into_iter()
        .map(|job| job.id)
        .collect()
}

fn error(attempt: u32, now: DateTime<Utc>) -> AttemptError {
    AttemptError {
        attempt,
        kind: "Boom".into(),
        message: "it broke".into(),
        traceback: Some("line 1".into()),
        at: now,
    }
}

const RETRY: FailureCause = FailureCause::Reported {
    retry: true,
    retry_after: None,
};

async fn enqueue_and_get(store: &impl Store) {
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

async fn batch_enqueue_keeps_order(store: &impl Store) {
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
async fn enqueue_announces_what_it_stored(store: &impl Store) {
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

async fn claim_follows_priority_then_age(store: &impl Store) {
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

async fn claim_walks_queues_in_order(store: &impl Store) {
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

async fn complete_needs_the_lease(store: &impl Store) {
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

async fn failures_retry_then_die(store: &impl Store) {
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

async fn refused_retry_is_dead(store: &impl Store) {
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

async fn lost_worker_requeues(store: &impl Store) {
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

async fn unclaimed_jobs_return_unattempted(store: &impl Store) {
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
            },
            t0(),
        )
        .await
        .expect("claim");
    assert_eq!(again[0].id, first);
    assert_eq!(again[0].attempt, 1);
}

async fn orphans_after_restart_requeue(store: &impl Store) {
    let id = add(store, job("a"), t0()).await;
    claim(store, &["default"], 1, "old-process", t0()).await;
    let released = store.release_orphans(&[], t0()).await.expect("orphans");
    assert_eq!(released.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
    assert_eq!(store.get(id).await.expect("get").state, JobState::Queued);
}

async fn deadlines_expire(store: &impl Store) {
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

async fn scheduled_jobs_are_promoted_when_due(store: &impl Store) {
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

async fn unique_keys_deduplicate(store: &impl Store) {
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

async fn cancel_and_retry(store: &impl Store) {
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

async fn delete_refuses_running_jobs(store: &impl Store) {
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

async fn retention_purges_finished_jobs(store: &impl Store) {
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

async fn list_filters_and_pages(store: &impl Store) {
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

async fn queues_count_and_pause(store: &impl Store) {
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

async fn progress_is_recorded(store: &impl Store) {
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

fn every_minute(kind: &str) -> CronSpec {
    CronSpec::new("* * * * *", "UTC", job(kind))
}

fn at_minute(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

async fn cron_schedules_are_stored(store: &impl Store) {
    let (stored, created) = store
        .put_cron("b", every_minute("tick"), t0() + Duration::seconds(10))
        .await
        .expect("put");
    assert!(created);
    assert_eq!(stored.next_fire, Some(at_minute(1)));
    assert_eq!((stored.paused, stored.last_fire), (false, None));
    let (_, created) = store
        .put_cron("a", every_minute("tock"), t0())
        .await
        .expect("put");
    assert!(created);
    let got = store.get_cron("b").await.expect("get").expect("exists");
    assert_eq!(got, stored);
    assert_eq!(got.spec.job.kind, "tick");
    let names: Vec<String> = store
        .list_cron()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        store.next_wakeup().await.expect("wakeup"),
        Some(at_minute(1))
    );
    assert!(store.delete_cron("a").await.expect("delete"));
    assert!(!store.delete_cron("a").await.expect("delete again"));
    assert!(store.get_cron("a").await.expect("get").is_none());
    assert!(store
        .set_cron_paused("a", true, t0())
        .await
        .expect("pause")
        .is_none());
}

async fn cron_fires_each_fire_time_once(store: &impl Store) {
    store
        .put_cron("m", every_minute("tick"), t0())
        .await
        .expect("put");
    assert!(store.fire_due_cron(t0()).await.expect("fire").is_empty());
    let fired = store
        .fire_due_cron(at_minute(1) + Duration::milliseconds(300))
        .await
        .expect("fire");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].name, "m");
    assert_eq!(fired[0].fire_time, at_minute(1));
    assert!(fired[0].job.created);
    let job = store.get(fired[0].job.id).await.expect("job");
    assert_eq!(job.kind, "tick");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(
        job.unique_key.as_deref(),
        Some("cron:m:2026-01-01T00:01:00Z")
    );
    // The same moment again, and a moment later in the same minute: nothing new.
    for now in [
        at_minute(1) + Duration::milliseconds(300),
        at_minute(1) + Duration::seconds(30),
    ] {
        assert!(store.fire_due_cron(now).await.expect("fire").is_empty());
    }
    let stored = store.get_cron("m").await.expect("get").expect("exists");
    assert_eq!(stored.last_fire, Some(at_minute(1)));
    assert_eq!(stored.next_fire, Some(at_minute(2)));
    let fired = store.fire_due_cron(at_minute(2)).await.expect("fire");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].fire_time, at_minute(2));
    let all = store
        .list(JobFilter {
            kind: Some("tick".into()),
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(all.jobs.len(), 2);
}

async fn cron_catch_up_after_downtime(store: &impl Store) {
    let hourly = |catch_up| CronSpec {
        catch_up,
        ..CronSpec::new("0 * * * *", "UTC", job("hourly"))
    };
    store
        .put_cron("skip", hourly(CatchUp::Skip), t0())
        .await
        .expect("put");
    store
        .put_cron("once", hourly(CatchUp::RunOnce), t0())
        .await
        .expect("put");
    // Down from 00:00 to 05:10: five fire times were missed.
    let now = t0() + Duration::minutes(5 * 60 + 10);
    let fired = store.fire_due_cron(now).await.expect("fire");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].name, "once");
    assert_eq!(fired[0].fire_time, t0() + Duration::hours(5));
    for name in ["skip", "once"] {
        let stored = store.get_cron(name).await.expect("get").expect("exists");
        assert_eq!(stored.next_fire, Some(t0() + Duration::hours(6)), "{name}");
    }
    assert!(store.fire_due_cron(now).await.expect("fire").is_empty());
}

async fn cron_pause_and_resume(store: &impl Store) {
    store
        .put_cron("p", every_minute("tick"), t0())
        .await
        .expect("put");
    let paused = store
        .set_cron_paused("p", true, t0())
        .await
        .expect("pause")
        .expect("exists");
    assert!(paused.paused);
    assert_eq!(store.next_wakeup().await.expect("wakeup"), None);
    assert!(store
        .fire_due_cron(at_minute(5))
        .await
        .expect("fire")
        .is_empty());
    // Re-declaring without `paused` keeps it paused.
    let (redeclared, _) = store
        .put_cron("p", every_minute("tick"), at_minute(5))
        .await
        .expect("put");
    assert!(redeclared.paused);
    let resumed = store
        .set_cron_paused("p", false, at_minute(5) + Duration::seconds(1))
        .await
        .expect("resume")
        .expect("exists");
    assert!(!resumed.paused);
    assert_eq!(resumed.next_fire, Some(at_minute(6)));
    assert!(store
        .fire_due_cron(at_minute(5) + Duration::seconds(1))
        .await
        .expect("fire")
        .is_empty());
    assert_eq!(
        store.fire_due_cron(at_minute(6)).await.expect("fire").len(),
        1
    );
}

async fn cron_redeclaring_keeps_the_next_fire_time(store: &impl Store) {
    store
        .put_cron("r", every_minute("tick"), t0())
        .await
        .expect("put");
    // Re-declared after its fire time passed but before it fired: the due time still fires.
    let (again, created) = store
        .put_cron(
            "r",
            every_minute("tock"),
            at_minute(1) + Duration::seconds(5),
        )
        .await
        .expect("put");
    assert!(!created);
    assert_eq!(again.next_fire, Some(at_minute(1)));
    assert_eq!(again.spec.job.kind, "tock");
    let fired = store
        .fire_due_cron(at_minute(1) + Duration::seconds(5))
        .await
        .expect("fire");
    assert_eq!((fired.len(), fired[0].kind.as_str()), (1, "tock"));
    // New timing: the next fire time is recomputed.
    let (changed, _) = store
        .put_cron(
            "r",
            CronSpec::new("0 * * * *", "UTC", job("tock")),
            at_minute(1) + Duration::seconds(6),
        )
        .await
        .expect("put");
    assert_eq!(changed.next_fire, Some(t0() + Duration::hours(1)));
    assert_eq!(changed.last_fire, Some(at_minute(1)));
}
