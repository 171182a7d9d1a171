//! Enqueue inside the application's own PostgreSQL transaction: a rollback leaves no job and
//! wakes nothing, a commit makes the job and its wake-up, bad input is refused by field.

use std::time::Duration;

use errands_client::transactional::{enqueue_in, enqueue_request_in};
use errands_client::{EnqueueOptions, EnqueueRequest, Error, Job};
use errands_store_postgres::testing::TestDatabase;
use errands_store_postgres::PostgresStore;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

#[derive(Serialize, Deserialize)]
struct Welcome {
    user: i64,
}

impl Job for Welcome {
    const KIND: &'static str = "welcome";
    type Output = ();
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A connection listening on the `errands` channel, and the payloads it receives.
async fn listen(url: &str) -> (Client, mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    client.batch_execute("LISTEN errands").await.unwrap();
    (client, rx)
}

async fn jobs_of_kind(client: &Client, kind: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM errands.jobs WHERE kind = $1",
            &[&kind],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn rollback_leaves_nothing_and_commit_enqueues_and_wakes() {
    let database = TestDatabase::create().await;
    PostgresStore::migrate(&database.url()).await.unwrap();
    let mut app = connect(&database.url()).await;
    app.batch_execute("CREATE TABLE users (id bigint PRIMARY KEY)")
        .await
        .unwrap();
    let (_listener, mut notices) = listen(&database.url()).await;

    let tx = app.transaction().await.unwrap();
    tx.execute("INSERT INTO users VALUES (1)", &[])
        .await
        .unwrap();
    enqueue_in(
        &tx,
        &Welcome { user: 1 },
        EnqueueOptions::new().queue("mail"),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(jobs_of_kind(&app, "welcome").await, 0);

    let tx = app.transaction().await.unwrap();
    tx.execute("INSERT INTO users VALUES (2)", &[])
        .await
        .unwrap();
    let handle = enqueue_in(
        &tx,
        &Welcome { user: 2 },
        EnqueueOptions::new().queue("mail"),
    )
    .await
    .unwrap();
    assert!(handle.created);
    tx.commit().await.unwrap();
    assert_eq!(jobs_of_kind(&app, "welcome").await, 1);
    // Notifications arrive in commit order: the first one is the committed job's, so the
    // rolled-back transaction sent none.
    let first = tokio::time::timeout(Duration::from_secs(10), notices.recv())
        .await
        .expect("a notice after the commit")
        .unwrap();
    let notice: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(notice, serde_json::json!({"t": "ready", "queue": "mail"}));
    let stored: serde_json::Value = app
        .query_one(
            "SELECT args FROM errands.jobs WHERE id = $1",
            &[&handle.id.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, serde_json::json!({"user": 2}));
}

#[tokio::test]
async fn bad_fields_are_refused_by_name() {
    let database = TestDatabase::create().await;
    PostgresStore::migrate(&database.url()).await.unwrap();
    let app = connect(&database.url()).await;
    let request = EnqueueRequest {
        delay: Some(-5.0),
        ..EnqueueRequest::new("welcome")
    };
    match enqueue_request_in(&app, &request).await {
        Err(Error::Rejected { field, .. }) => assert_eq!(field.as_deref(), Some("delay")),
        other => panic!("expected a rejection of delay, got {other:?}"),
    }
    assert_eq!(jobs_of_kind(&app, "welcome").await, 0);
}

#[tokio::test]
async fn headers_are_stored_and_bad_ones_refused_by_name() {
    let database = TestDatabase::create().await;
    PostgresStore::migrate(&database.url()).await.unwrap();
    let app = connect(&database.url()).await;
    let options = EnqueueOptions::new().header("x-tenant", "42");
    let enqueued = enqueue_in(&app, &Welcome { user: 1 }, options)
        .await
        .unwrap();
    let stored: serde_json::Value = app
        .query_one(
            "SELECT headers FROM errands.jobs WHERE id = $1",
            &[&enqueued.id.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, serde_json::json!({"x-tenant": "42"}));

    let cases = [
        ("bad name", "v", "headers"),
        ("x-ok", "line\nbreak", "headers.x-ok"),
    ];
    for (name, value, field) in cases {
        let request = EnqueueRequest {
            headers: [(name.to_owned(), value.to_owned())].into(),
            ..EnqueueRequest::new("welcome")
        };
        match enqueue_request_in(&app, &request).await {
            Err(Error::Rejected { field: got, .. }) => assert_eq!(got.as_deref(), Some(field)),
            other => panic!("expected a rejection of {field}, got {other:?}"),
        }
    }
    assert_eq!(jobs_of_kind(&app, "welcome").await, 1);
}
