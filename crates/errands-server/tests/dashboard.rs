//! The dashboard's assets are public and cached by ETag; with a token, `/v1/events` also takes it
//! as `?token=` (browsers cannot set headers on a WebSocket), and no other route does.
//! The dashboard itself is tested in a browser by dashboard-tests/.

mod common;

use common::{TestServer, WAIT};
use errands_server::ServerConfig;
use futures_util::StreamExt;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "s3cret/+&=";

async fn with_token() -> TestServer {
    TestServer::with_config(ServerConfig {
        token: Some(TOKEN.to_owned()),
        ..ServerConfig::default()
    })
    .await
}

fn encoded_token() -> String {
    TOKEN
        .replace('/', "%2F")
        .replace('+', "%2B")
        .replace('&', "%26")
        .replace('=', "%3D")
}

#[tokio::test]
async fn the_page_and_assets_are_public_with_types_and_cache_headers() {
    let s = with_token().await;
    let http = reqwest::Client::new();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let response = http.get(s.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()[CONTENT_TYPE], content_type, "{path}");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache", "{path}");
        let etag = response.headers()[ETAG].clone();
        let again = http
            .get(s.url(path))
            .header(IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    let page = http.get(s.url("/")).send().await.unwrap();
    assert!(page.headers().contains_key("content-security-policy"));
    assert!(page.text().await.unwrap().contains("/assets/app.js"));

    for missing in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/../Cargo.toml",
    ] {
        let response = http.get(s.url(missing)).send().await.unwrap();
        assert_ne!(response.status(), StatusCode::OK, "{missing}");
    }
    // The data is not public.
    let response = http.get(s.url("/v1/queues")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn events_take_the_token_in_the_query_and_keep_their_filters() {
    let s = with_token().await;
    let url = format!(
        "ws://{}/v1/events?queue=watched&token={}",
        s.server.addr,
        encoded_token()
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    s.enqueue(json!({"kind": "other", "queue": "unwatched"}))
        .await;
    let id = s.enqueue(json!({"kind": "seen", "queue": "watched"})).await;
    let frame = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("an event")
        .unwrap()
        .unwrap();
    let Message::Text(text) = frame else {
        panic!("not text: {frame:?}")
    };
    let event: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(event["id"], id.as_str(), "the queue filter still applies");
}

#[tokio::test]
async fn a_wrong_query_token_and_the_query_token_elsewhere_are_refused() {
    let s = with_token().await;
    let http = reqwest::Client::new();
    let status = |path: String| {
        let http = http.clone();
        async move { http.get(path).send().await.unwrap().status() }
    };
    assert_eq!(
        status(s.url("/v1/events?token=wrong")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(s.url(&format!("/v1/events?token={}", encoded_token()))).await,
        StatusCode::OK
    );
    for path in ["/v1/queues", "/v1/jobs", "/v1/workers", "/metrics"] {
        let url = s.url(&format!("{path}?token={}", encoded_token()));
        assert_eq!(status(url).await, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn without_a_configured_token_a_stale_query_token_is_ignored() {
    let s = TestServer::start().await;
    let response = reqwest::get(s.url("/v1/events?token=old&queue=q"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
