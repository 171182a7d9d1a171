//! Conformance cases: cron schedules.

use chrono::{DateTime, Duration, Utc};
use errands_core::cron::{CatchUp, CronSpec};
use errands_core::JobState;

use super::{job, t0, Harness};
use crate::{JobFilter, Store};

fn every_minute(kind: &str) -> CronSpec {
    CronSpec::new("* * * * *", "UTC", job(kind))
}

fn at_minute(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

/// Conformance case.
pub async fn cron_schedules_are_stored<H: Harness>(harness: &H) {
    let store = harness.store();
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

/// Conformance case.
pub async fn cron_fires_each_fire_time_once<H: Harness>(harness: &H) {
    let store = harness.store();
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

/// Conformance case.
pub async fn cron_catch_up_after_downtime<H: Harness>(harness: &H) {
    let store = harness.store();
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

/// Conformance case.
pub async fn cron_pause_and_resume<H: Harness>(harness: &H) {
    let store = harness.store();
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

/// Conformance case.
pub async fn cron_redeclaring_keeps_the_next_fire_time<H: Harness>(harness: &H) {
    let store = harness.store();
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
