//! Notices between stores on one database: job events reach a store only while it follows
//! them, every other notice always. Notifications arrive in commit order, so a store that
//! receives a later notice would have received an earlier event first.

use std::time::Duration;

use errands_core::event::Change;
use errands_core::{JobId, JobState};
use errands_store::{Notice, Store};
use errands_store_postgres::testing::TestDatabase;
use errands_store_postgres::{PostgresOptions, PostgresStore};
use tokio::sync::broadcast;

fn event(id: JobId) -> Notice {
    Notice::Event {
        node: "a".into(),
        id,
        queue: "q".into(),
        kind: "k".into(),
        change: Change::State {
            state: JobState::Completed,
            attempt: 1,
        },
    }
}

fn ready(queue: &str) -> Notice {
    Notice::Ready {
        queue: queue.into(),
    }
}

/// The next notice other than a resync, waiting at most 30 s.
async fn next(notices: &mut broadcast::Receiver<Notice>) -> Notice {
    let wait = async {
        loop {
            match notices.recv().await.expect("notice stream") {
                Notice::Resync => continue,
                notice => return notice,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("a notice within 30 s")
}

#[tokio::test]
async fn job_events_reach_a_store_only_while_it_follows_them() {
    let database = TestDatabase::create().await;
    let url = database.url();
    let connect = || PostgresStore::connect(&url, PostgresOptions::default());
    let (sender, receiver) = (connect().await.unwrap(), connect().await.unwrap());
    let mut notices = receiver.notices().expect("a shared store has notices");
    // The listener answers commands once it is listening: from here on nothing is missed.
    receiver.follow_events(false).await.unwrap();

    // Not following: the event is not delivered, the ready notice after it is.
    let first = JobId::new();
    sender.publish(vec![event(first)]).await.unwrap();
    sender.publish(vec![ready("first")]).await.unwrap();
    assert_eq!(next(&mut notices).await, ready("first"));

    // Following: events committed after the call returns arrive, in order.
    receiver.follow_events(true).await.unwrap();
    let second = JobId::new();
    sender.publish(vec![event(second)]).await.unwrap();
    sender.publish(vec![ready("second")]).await.unwrap();
    assert_eq!(next(&mut notices).await, event(second));
    assert_eq!(next(&mut notices).await, ready("second"));

    // Stopped again.
    receiver.follow_events(false).await.unwrap();
    sender.publish(vec![event(JobId::new())]).await.unwrap();
    sender.publish(vec![ready("third")]).await.unwrap();
    assert_eq!(next(&mut notices).await, ready("third"));
}
