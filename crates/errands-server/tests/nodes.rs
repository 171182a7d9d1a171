//! Two server nodes in one process on one PostgreSQL database: what one node shows about the
//! other's workers. (Multi-node behaviour with real processes, kills included, is tested in
//! crates/errands/tests/multinode.rs.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::RawWorker;
use errands_core::SystemClock;
use errands_server::{RunningServer, ServerConfig};
use errands_store_postgres::testing::TestDatabase;
use errands_store_postgres::{PostgresOptions, PostgresStore};
use serde_json::{json, Value};
use tokio::time::Instant;

async fn node(database: &TestDatabase) -> RunningServer {
    let store = PostgresStore::connect(&database.url(), PostgresOptions::default())
        .await
        .unwrap();
    let config = ServerConfig {
        // Renewed (and workers recorded) every 100 ms.
        node_lease: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    RunningServer::start(Arc::new(store), Arc::new(SystemClock), config)
        .await
        .unwrap()
}

async fn workers(server: &RunningServer) -> Vec<Value> {
    let reply: Value = reqwest::get(format!("{}/v1/workers", server.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["workers"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn every_node_lists_the_workers_of_every_node() {
    let database = TestDatabase::create().await;
    let (a, b) = (node(&database).await, node(&database).await);
    let url = format!("ws://{}/v1/worker", a.addr);
    let mut worker = RawWorker::connect(&url, None).await;
    worker
        .send_json(&json!({"type": "hello", "queues": ["q"], "capacity": 2, "name": "on-a"}))
        .await;
    worker.recv_type("welcome").await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let listed = workers(&b).await;
        if let Some(found) = listed.iter().find(|w| w["name"] == "on-a") {
            break found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "node B never listed A's worker: {listed:?}"
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(seen["node"], a.engine.node_id());
    assert_eq!(seen["capacity"], 2);
    let on_a = workers(&a).await;
    assert_eq!(on_a.len(), 1);
    assert_eq!(on_a[0]["node"], a.engine.node_id());

    drop(worker);
    let deadline = Instant::now() + Duration::from_secs(20);
    while workers(&b).await.iter().any(|w| w["name"] == "on-a") {
        assert!(
            Instant::now() < deadline,
            "node B kept listing a worker that left"
        );
        tokio::task::yield_now().await;
    }
}
