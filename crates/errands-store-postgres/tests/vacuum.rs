//! A node vacuums `errands.jobs` as its own claims and completions leave dead rows, so claims
//! stay cheap over a long drain even with autovacuum off (as on the CI's PostgreSQL).

use std::time::Duration;

use chrono::Utc;
use errands_core::enqueue::Limits;
use errands_core::{EnqueueRequest, NewJob};
use errands_store::{ClaimRequest, Report, Store};
use errands_store_postgres::testing::TestDatabase;
use errands_store_postgres::{PostgresOptions, PostgresStore};

/// Enqueues, claims and completes `count` jobs of queue `q` through `store`.
async fn drain(store: &PostgresStore, count: usize) {
    let now = Utc::now();
    let jobs: Vec<NewJob> = (0..count)
        .map(|_| {
            let mut request = EnqueueRequest::new("k");
            request.queue = Some("q".into());
            request.validate(&Limits::default(), now).unwrap()
        })
        .collect();
    store.enqueue(jobs).await.unwrap();
    loop {
        let request = ClaimRequest {
            queues: vec!["q".into()],
            limit: 500,
            worker_id: "w".into(),
            node_id: "n".into(),
        };
        let claimed = store.claim(request, Utc::now()).await.unwrap();
        if claimed.is_empty() {
            return;
        }
        let reports = claimed
            .iter()
            .map(|job| Report::Complete {
                id: job.id,
                result: None,
            })
            .collect();
        for outcome in store.report("w", reports, Utc::now()).await {
            outcome.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_vacuums_the_jobs_table_after_thousands_of_its_own_writes() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::connect(&database.url(), PostgresOptions::default())
        .await
        .unwrap();
    // 1,000 jobs claimed and completed: 2,000 dead row versions, not enough.
    drain(&store, 1_000).await;
    assert_eq!(store.vacuums(), 0);
    // 5,000 more: past 10,000 row versions, a vacuum starts on its own connection.
    drain(&store, 5_000).await;
    let mut vacuums = store.vacuums_watch();
    let waited = tokio::time::timeout(Duration::from_secs(30), vacuums.wait_for(|n| *n > 0));
    assert!(
        matches!(waited.await, Ok(Ok(_))),
        "no vacuum after 12,000 row versions"
    );
    drop(store);
}
