//! With a token configured, every route but `/healthz` needs `Authorization: Bearer <token>`.

mod common;

use common::{assert_error, read_json, TestServer};
use errands_server::ServerConfig;
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite;

const TOKEN: &str = "s3cret";

async fn server() -> TestServer {
    TestServer::with_config(ServerConfig {
        token: Some(TOKEN.to_owned()),
        ..ServerConfig::default()
    })
    .await
}

/// `POST /v1/jobs` with the given `Authorization` header (none if `None`), bypassing the
/// test server's own token.
async fn enqueue_with(
    s: &TestServer,
    authorization: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut request = s
        .http
        .post(s.url("/v1/jobs"))
        .json(&json!({"kind": "guarded"}));
    if let Some(value) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    read_json(request.send().await.unwrap()).await
}

#[tokio::test]
async fn request_without_a_token_is_401_with_a_json_body() {
    let s = server().await;
    let response = enqueue_with(&s, None).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "unauthorized", None);
    assert_eq!(s.job_count().await, 0);
}

#[tokio::test]
async fn request_with_a_wrong_token_is_401() {
    let s = server().await;
    for wrong in [
        "Bearer s3cre",
        "Bearer s3cret2",
        "Bearer S3CRET",
        "s3cret",
        "Basic s3cret",
    ] {
        let response = enqueue_with(&s, Some(wrong)).await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
    assert_eq!(s.job_count().await, 0);
}

#[tokio::test]
async fn request_with_the_right_token_is_served() {
    let s = server().await;
    let (status, body) = enqueue_with(&s, Some("Bearer s3cret")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(s.job_count().await, 1);
}

#[tokio::test]
async fn reads_need_the_token_too() {
    let s = server().await;
    for path in ["/v1/jobs", "/v1/queues", "/openapi.json"] {
        let response = read_json(s.http.get(s.url(path)).send().await.unwrap()).await;
        assert_error(&response, StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let s = server().await;
    let (status, body) = read_json(s.http.get(s.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn worker_socket_without_the_token_is_refused_with_401() {
    let s = server().await;
    match tokio_tungstenite::connect_async(s.worker_url()).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401);
        }
        Err(other) => panic!("expected an HTTP 401, got {other}"),
        Ok(_) => panic!("the worker socket accepted a connection without the token"),
    }
}

#[tokio::test]
async fn worker_socket_with_the_token_is_welcomed() {
    let s = server().await;
    // The test server sends its token on the socket too.
    let mut worker = s
        .worker(json!({"type": "hello", "queues": ["q"], "capacity": 1}))
        .await;
    let id = s.enqueue(json!({"kind": "guarded", "queue": "q"})).await;
    assert_eq!(worker.recv_type("job").await["id"], id);
}
