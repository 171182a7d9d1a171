//! The listings ordered by name or id (`GET /v1/queues`, `/v1/cron`, `/v1/workers`) come a
//! page at a time: `limit`, `after` and `next_cursor`, bounded in entries and in bytes.

mod common;

use common::{assert_error, TestServer};
use errands_core::cron::CronSpec;
use errands_core::EnqueueRequest;
use errands_server::ServerConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Walks a listing `limit` entries at a time from the first page: every entry of `field`, and
/// the number of pages it took. Each page but the last ends with a cursor at its last entry.
async fn walk(s: &TestServer, path: &str, field: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    for pages in 1.. {
        let mut query = format!("limit={limit}");
        if let Some(after) = &after {
            query.push_str(&format!("&after={after}"));
        }
        let (status, page) = s.get(&format!("{path}?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page[field].as_array().unwrap().clone();
        assert!(items.len() <= limit, "{page}");
        entries.extend(items);
        match page["next_cursor"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return (entries, pages),
        }
    }
    unreachable!()
}

fn strings<'a>(entries: &'a [Value], key: &str) -> Vec<&'a str> {
    entries.iter().map(|e| e[key].as_str().unwrap()).collect()
}

#[tokio::test]
async fn queues_come_by_name_a_page_at_a_time() {
    let s = TestServer::start().await;
    for queue in ["q3", "q0", "q4", "q1", "q2"] {
        s.enqueue(json!({"kind": "a", "queue": queue})).await;
    }
    let (status, first) = s.get("/v1/queues?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        strings(first["queues"].as_array().unwrap(), "name"),
        ["q0", "q1"]
    );
    assert_eq!(first["next_cursor"], "q1");
    let (queues, pages) = walk(&s, "/v1/queues", "queues", 2).await;
    assert_eq!(strings(&queues, "name"), ["q0", "q1", "q2", "q3", "q4"]);
    assert_eq!(pages, 3);
    // Without a limit, one page holds them all and says it is the last.
    let (_, all) = s.get("/v1/queues").await;
    assert_eq!(all["queues"].as_array().unwrap().len(), 5);
    assert_eq!(all["next_cursor"], Value::Null);
}

#[tokio::test]
async fn cron_schedules_come_by_name_a_page_at_a_time() {
    let s = TestServer::start().await;
    for name in ["nightly", "hourly", "weekly", "backup", "reports"] {
        let spec = json!({"schedule": "0 * * * *", "job": {"kind": name}});
        let (status, body) = s
            .send(s.http.put(s.url(&format!("/v1/cron/{name}"))).json(&spec))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, first) = s.get("/v1/cron?limit=3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        strings(first["schedules"].as_array().unwrap(), "name"),
        ["backup", "hourly", "nightly"]
    );
    assert_eq!(first["next_cursor"], "nightly");
    let (schedules, pages) = walk(&s, "/v1/cron", "schedules", 2).await;
    assert_eq!(
        strings(&schedules, "name"),
        ["backup", "hourly", "nightly", "reports", "weekly"]
    );
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn workers_come_by_id_a_page_at_a_time() {
    let s = TestServer::start().await;
    let mut workers = Vec::new();
    for name in ["w1", "w2", "w3"] {
        let hello = json!({"type": "hello", "queues": ["default"], "capacity": 1, "name": name});
        workers.push(s.worker(hello).await);
    }
    let (status, first) = s.get("/v1/workers?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["workers"].as_array().unwrap().len(), 1);
    assert_eq!(first["next_cursor"], first["workers"][0]["id"]);
    let (listed, pages) = walk(&s, "/v1/workers", "workers", 1).await;
    assert_eq!(pages, 3);
    let ids = strings(&listed, "id");
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(ids, sorted, "not in id order, or listed twice");
    // Ids are time-ordered, so id order is connection order.
    assert_eq!(strings(&listed, "name"), ["w1", "w2", "w3"]);
}

#[tokio::test]
async fn a_page_of_schedules_is_cut_by_bytes_and_continues_at_its_cursor() {
    let s = TestServer::with_config(ServerConfig {
        max_list_bytes: 20_000,
        ..ServerConfig::default()
    })
    .await;
    for i in 0..12 {
        let spec = json!({"schedule": "0 * * * *", "job": {"kind": "a", "args": "x".repeat(4000)}});
        let path = format!("/v1/cron/s{i:02}");
        let (status, body) = s.send(s.http.put(s.url(&path)).json(&spec)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let response = s.http.get(s.url("/v1/cron")).send().await.unwrap();
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.len() <= 20_100, "{} bytes", bytes.len());
    let page: Value = serde_json::from_slice(&bytes).unwrap();
    let first = page["schedules"].as_array().unwrap().len();
    assert!(
        (1..12).contains(&first),
        "{first} schedules in the first page"
    );
    let (schedules, _) = walk(&s, "/v1/cron", "schedules", 1000).await;
    let expected: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    assert_eq!(strings(&schedules, "name"), expected);
}

#[tokio::test]
async fn bad_paging_values_are_refused_naming_the_field() {
    let s = TestServer::start().await;
    let long = "x".repeat(1025);
    for path in ["/v1/queues", "/v1/cron", "/v1/workers"] {
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=many", "limit"),
            ("limit=-1", "limit"),
            ("after=", "after"),
            (&format!("after={long}") as &str, "after"),
            ("cursor=x", "cursor"),
            ("limit=1&limit=2", "limit"),
        ] {
            let response = s.get(&format!("{path}?{query}")).await;
            assert_error(
                &response,
                StatusCode::BAD_REQUEST,
                "invalid_field",
                Some(field),
            );
        }
    }
}

#[tokio::test]
async fn the_rust_client_lists_every_schedule_across_pages() {
    // A one-byte page budget: every page holds one schedule.
    let s = TestServer::with_config(ServerConfig {
        max_list_bytes: 1,
        ..ServerConfig::default()
    })
    .await;
    let client = errands_client::Client::new(s.url(""), None).unwrap();
    for name in ["c", "a", "b"] {
        let spec = CronSpec::new("0 * * * *", "UTC", EnqueueRequest::new("tick"));
        client.put_cron(name, &spec).await.unwrap();
    }
    let (_, first) = s.get("/v1/cron").await;
    assert_eq!(first["schedules"].as_array().unwrap().len(), 1);
    let names: Vec<String> = client
        .list_cron()
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}
