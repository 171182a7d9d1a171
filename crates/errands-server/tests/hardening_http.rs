//! What a hostile probe of the HTTP side found (issue 11), each kept from coming back:
//! cross-site requests and DNS rebinding, oversized and slow bodies, unbounded listings,
//! slow clients holding connections, an empty token, error bodies that were not JSON,
//! trailing garbage, invisible names, and a readiness probe blind to failing writes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_error, TestServer, WAIT};
use errands_core::ManualClock;
use errands_server::{HttpLimits, RunningServer, ServerConfig};
use errands_store::sqlite::SqliteOptions;
use errands_store::SqliteStore;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BAD: StatusCode = StatusCode::BAD_REQUEST;

/// `POST path` with `body` and extra headers, read as status and JSON.
async fn post_with(
    s: &TestServer,
    path: &str,
    body: &'static str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = s.http.post(s.url(path)).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    s.send(request).await
}

/// `GET path` with extra headers.
async fn get_with(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = s.http.get(s.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    s.send(request).await
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn bodies_not_labelled_json_are_415() {
    let s = TestServer::start().await;
    let job = r#"{"kind":"rm -rf"}"#;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let response = post_with(&s, "/v1/jobs", job, &[("content-type", content_type)]).await;
        assert_error(
            &response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            Some("content-type"),
        );
    }
    // No label at all, but a body.
    let response = post_with(&s, "/v1/jobs", job, &[]).await;
    assert_error(
        &response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        Some("content-type"),
    );
    // A bodiless form post (what `<form enctype=text/plain>` sends) cannot pause a queue.
    let response = post_with(
        &s,
        "/v1/queues/default/pause",
        "",
        &[("content-type", "text/plain")],
    )
    .await;
    assert_error(
        &response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        Some("content-type"),
    );
    assert_eq!(s.queue_paused("default").await, None);
    // JSON with a charset is JSON; a bodiless POST without a label still works.
    let response = post_with(
        &s,
        "/v1/jobs",
        job,
        &[("content-type", "application/json; charset=utf-8")],
    )
    .await;
    assert_eq!(response.0, StatusCode::CREATED, "{}", response.1);
    let (status, body) = s.post_empty("/v1/queues/default/pause").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

impl TestServer {
    /// Whether `queue` is paused, or `None` when it is not listed.
    async fn queue_paused(&self, queue: &str) -> Option<bool> {
        let (_, body) = self.get("/v1/queues").await;
        body["queues"]
            .as_array()?
            .iter()
            .find(|q| q["name"] == queue)
            .and_then(|q| q["paused"].as_bool())
    }
}

#[tokio::test]
async fn pages_of_other_origins_are_refused() {
    let s = TestServer::start().await;
    let job = r#"{"kind":"rm -rf"}"#;
    let cases: [&[(&str, &str)]; 4] = [
        &[JSON, ("origin", "http://evil.example")],
        &[JSON, ("origin", "null")],
        &[JSON, ("sec-fetch-site", "cross-site")],
        &[
            JSON,
            ("sec-fetch-site", "same-site"),
            ("origin", "http://localhost:3000"),
        ],
    ];
    for headers in cases {
        let response = post_with(&s, "/v1/jobs", job, headers).await;
        assert_error(
            &response,
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            Some("origin"),
        );
        let response = get_with(&s, "/v1/jobs", headers).await;
        assert_error(
            &response,
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            Some("origin"),
        );
    }
    assert_eq!(s.job_count().await, 0);
    // The dashboard's own requests: its fetches and its WebSocket name its own origin.
    let own = s.server.url();
    let same: [&[(&str, &str)]; 2] = [
        &[JSON, ("sec-fetch-site", "same-origin"), ("origin", &own)],
        &[JSON, ("origin", &own)],
    ];
    for headers in same {
        let response = post_with(&s, "/v1/jobs", job, headers).await;
        assert_eq!(
            response.0,
            StatusCode::CREATED,
            "{headers:?}: {}",
            response.1
        );
    }
}

#[tokio::test]
async fn a_cross_site_websocket_cannot_become_a_worker() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = TestServer::start().await;
    for path in ["/v1/worker", "/v1/events"] {
        let url = format!("ws://{}{path}", s.server.addr);
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", "http://evil.example".parse().unwrap());
        let refused = tokio_tungstenite::connect_async(request).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
            }
            other => panic!("{path}: expected a refusal, got {other:?}"),
        }
        // The dashboard's own socket still opens.
        let mut request = url.as_str().into_client_request().unwrap();
        let own = s.server.url();
        request.headers_mut().insert("origin", own.parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        drop(socket);
    }
}

#[tokio::test]
async fn allowed_origins_and_hosts_are_configurable() {
    let s = TestServer::with_config(ServerConfig {
        allowed_origins: vec!["https://ops.example.com".into()],
        allowed_hosts: vec!["errands.internal".into()],
        ..ServerConfig::default()
    })
    .await;
    let job = r#"{"kind":"a"}"#;
    let headers = [
        JSON,
        ("origin", "https://ops.example.com"),
        ("sec-fetch-site", "cross-site"),
    ];
    let response = post_with(&s, "/v1/jobs", job, &headers).await;
    assert_eq!(response.0, StatusCode::CREATED, "{}", response.1);
    let response = get_with(&s, "/v1/jobs", &[("host", "errands.internal")]).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    let bad = ServerConfig {
        allowed_origins: vec!["ops.example.com".into()],
        ..ServerConfig::default()
    };
    let clock = Arc::new(ManualClock::new(common::start_time()));
    let store = Arc::new(SqliteStore::temporary().unwrap());
    let error = RunningServer::start(store, clock, bad).await.err().unwrap();
    assert!(error.to_string().contains("ops.example.com"), "{error}");
}

#[tokio::test]
async fn a_rebound_host_name_is_refused_on_loopback() {
    let s = TestServer::start().await;
    let port = s.server.addr.port();
    for host in [
        "evil.example",
        "evil.example:7733",
        "localhost.evil.example",
    ] {
        let response = get_with(&s, "/v1/jobs", &[("host", host)]).await;
        assert_error(
            &response,
            StatusCode::FORBIDDEN,
            "forbidden_host",
            Some("host"),
        );
        let response = post_with(&s, "/v1/jobs", r#"{"kind":"a"}"#, &[JSON, ("host", host)]).await;
        assert_error(
            &response,
            StatusCode::FORBIDDEN,
            "forbidden_host",
            Some("host"),
        );
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let response = get_with(&s, "/v1/jobs", &[("host", &host)]).await;
        assert_eq!(response.0, StatusCode::OK, "{host}: {}", response.1);
    }
    // Liveness answers whatever the name.
    let (status, _) = get_with(&s, "/healthz", &[("host", "evil.example")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_over_the_default_limit_is_413_before_it_is_parsed() {
    let s = TestServer::start().await;
    // 3 MiB of args: over the 2 MiB body limit (and refused as such, not as large args).
    let body = json!({"kind": "a", "args": "x".repeat(3 << 20)});
    let response = s.post("/v1/jobs", &body).await;
    assert_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "too_large", None);
    // A batch may be larger: 3 MiB over 1,000 jobs is fine.
    let jobs = vec![json!({"kind": "a", "args": "y".repeat(3 << 10)}); 1000];
    let (status, body) = s.post("/v1/jobs/batch", &json!({ "jobs": jobs })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_without_waiting_for_the_body() {
    let s = TestServer::start().await;
    let mut stream = TcpStream::connect(s.server.addr).await.unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        s.server.addr,
        1u64 << 30
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let reply = read_reply(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("\"too_large\""), "{reply}");
}

/// Reads what the server sends until it closes the connection or `WAIT` passes.
async fn read_reply(stream: &mut TcpStream) -> String {
    let mut reply = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                reply.extend_from_slice(&buf[..n]);
                if complete(&reply) {
                    break;
                }
            }
            Err(_) => panic!("no reply in time: {}", String::from_utf8_lossy(&reply)),
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// Whether `reply` holds a whole response with a `content-length` body.
fn complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|n| n.trim().parse::<usize>().ok());
    length.is_some_and(|n| body.len() >= n)
}

fn quick(http: HttpLimits) -> ServerConfig {
    ServerConfig {
        http,
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn a_body_that_never_arrives_is_408_after_the_body_timeout() {
    let s = TestServer::with_config(quick(HttpLimits {
        body_timeout: Duration::from_millis(200),
        ..HttpLimits::default()
    }))
    .await;
    let mut stream = TcpStream::connect(s.server.addr).await.unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"kind\":",
        s.server.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let reply = read_reply(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("\"timeout\""), "{reply}");
}

#[tokio::test]
async fn tags_and_unique_keys_are_bounded() {
    let s = TestServer::start().await;
    let response = s
        .post("/v1/jobs", &json!({"kind": "a", "tags": vec!["t"; 65]}))
        .await;
    assert_error(&response, BAD, "invalid_field", Some("tags"));
    let long_tag = "t".repeat(201);
    let response = s
        .post("/v1/jobs", &json!({"kind": "a", "tags": ["ok", long_tag]}))
        .await;
    assert_error(&response, BAD, "invalid_field", Some("tags[1]"));
    let key = "k".repeat(1025);
    let response = s
        .post("/v1/jobs", &json!({"kind": "a", "unique_key": key}))
        .await;
    assert_error(&response, BAD, "invalid_field", Some("unique_key"));
    let batch = json!({"jobs": [{"kind": "a"}, {"kind": "b", "tags": vec!["t"; 65]}]});
    let response = s.post("/v1/jobs/batch", &batch).await;
    assert_error(&response, BAD, "invalid_field", Some("jobs[1].tags"));
    s.assert_unchanged_and_working(0).await;
}

#[tokio::test]
async fn names_of_only_invisible_or_control_characters_are_refused() {
    let s = TestServer::start().await;
    for (body, field) in [
        (json!({"kind": "\u{0}"}), "kind"),
        (json!({"kind": "\u{200b}\u{200d}"}), "kind"),
        (json!({"kind": "a", "queue": "\u{feff}"}), "queue"),
        (json!({"kind": "a\u{0}b"}), "kind"),
    ] {
        let response = s.post("/v1/jobs", &body).await;
        assert_error(&response, BAD, "invalid_field", Some(field));
    }
    let response = s.post_empty("/v1/queues/%E2%80%8B/pause").await;
    assert_error(&response, BAD, "invalid_field", Some("name"));
    s.assert_unchanged_and_working(0).await;
    let metrics = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert!(!metrics.text().await.unwrap().contains('\u{0}'));
}

#[tokio::test]
async fn a_listing_is_cut_by_bytes_and_continues_at_its_cursor() {
    let s = TestServer::with_config(ServerConfig {
        max_list_bytes: 20_000,
        ..ServerConfig::default()
    })
    .await;
    let jobs: Vec<Value> = (0..30)
        .map(|i| json!({"kind": "a", "args": format!("{i:0>4000}")}))
        .collect();
    let (status, body) = s.post("/v1/jobs/batch", &json!({ "jobs": jobs })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let response = s
        .http
        .get(s.url("/v1/jobs?limit=1000"))
        .send()
        .await
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.len() <= 20_000, "{} bytes", bytes.len());
    let page: Value = serde_json::from_slice(&bytes).unwrap();
    let first = page["jobs"].as_array().unwrap().len();
    assert!((1..30).contains(&first), "{first} jobs in the first page");
    assert!(page["next_cursor"].is_string(), "{page}");
    // Following the cursors reaches every job once.
    let all = s.list_all("").await;
    let mut args: Vec<&str> = all
        .iter()
        .map(|job| job["args"].as_str().unwrap())
        .collect();
    args.sort_unstable();
    args.dedup();
    assert_eq!(args.len(), 30);
    assert_eq!(all.len(), 30);
}

#[tokio::test]
async fn a_page_holds_its_first_job_however_large() {
    let s = TestServer::with_config(ServerConfig {
        max_list_bytes: 1_000,
        ..ServerConfig::default()
    })
    .await;
    for _ in 0..2 {
        s.enqueue(json!({"kind": "a", "args": "x".repeat(5_000)}))
            .await;
    }
    let (status, page) = s.get("/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(s.list_all("").await.len(), 2);
}

#[tokio::test]
async fn list_limit_is_bounded() {
    let s = TestServer::start().await;
    let response = s.get("/v1/jobs?limit=1001").await;
    assert_error(&response, BAD, "invalid_field", Some("limit"));
}

/// Opens `count` connections that send half a request head and stall (slowloris).
async fn stalled_connections(addr: std::net::SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
            .await
            .unwrap();
        streams.push(stream);
    }
    streams
}

/// Whether the server closes `stream` (end of stream or a reset) within `WAIT`, reading
/// and dropping whatever it sends first.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0; 1024];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn slowloris_connections_are_cut_and_healthz_still_answers() {
    let s = TestServer::with_config(quick(HttpLimits {
        max_connections: 100,
        header_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    }))
    .await;
    // Three times the cap, each stalled half-way through its head.
    let mut stalled = stalled_connections(s.server.addr, 300).await;
    let health = tokio::time::timeout(WAIT, s.http.get(s.url("/healthz")).send())
        .await
        .expect("/healthz answers while slow clients hold connections")
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    for stream in &mut stalled {
        assert!(
            closed_by_server(stream).await,
            "a stalled connection stayed open"
        );
    }
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let s = TestServer::with_config(quick(HttpLimits {
        header_timeout: Duration::from_millis(200),
        ..HttpLimits::default()
    }))
    .await;
    let mut stream = TcpStream::connect(s.server.addr).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", s.server.addr);
    stream.write_all(request.as_bytes()).await.unwrap();
    assert!(
        closed_by_server(&mut stream).await,
        "an idle connection stayed open"
    );
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let s = TestServer::with_config(quick(HttpLimits {
        max_connections: 3,
        ..HttpLimits::default()
    }))
    .await;
    // Three kept-alive connections, each served once, so each holds its slot.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(s.server.addr).await.unwrap();
        let request = format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", s.server.addr);
        stream.write_all(request.as_bytes()).await.unwrap();
        assert!(read_reply(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    let mut fourth = tokio::spawn({
        let request = s.http.get(s.url("/healthz"));
        async move { request.send().await.map(|r| r.status()) }
    });
    // A bounded negative check: with every slot held the fourth is not served...
    let waited = tokio::time::timeout(Duration::from_millis(300), &mut fourth).await;
    assert!(waited.is_err(), "a connection over the cap was served");
    // ...until a slot frees.
    drop(held.pop());
    let status = tokio::time::timeout(WAIT, fourth)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_empty_token_is_refused_at_start() {
    for token in ["", "  "] {
        let config = ServerConfig {
            token: Some(token.into()),
            ..ServerConfig::default()
        };
        let clock = Arc::new(ManualClock::new(common::start_time()));
        let store = Arc::new(SqliteStore::temporary().unwrap());
        let error = RunningServer::start(store, clock, config).await.err();
        let error = error.expect("an empty token is refused").to_string();
        assert!(error.contains("token is empty"), "{error}");
    }
}

#[tokio::test]
async fn errors_axum_answers_itself_are_json() {
    let s = TestServer::start().await;
    // A wrong method.
    let response = s.send(s.http.put(s.url("/v1/jobs"))).await;
    assert_error(
        &response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
    );
    // The worker socket without an upgrade.
    let response = s.get("/v1/worker").await;
    assert!(response.0.is_client_error(), "{response:?}");
    assert!(
        response.1["error"]["message"].as_str().is_some(),
        "{}",
        response.1
    );
    // Headers over the limit.
    let big = "x".repeat(70 << 10);
    let response = get_with(&s, "/v1/jobs", &[("x-big", &big)]).await;
    assert_error(
        &response,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
        None,
    );
}

#[tokio::test]
async fn a_repeated_query_parameter_is_named() {
    let s = TestServer::start().await;
    let response = s.get("/v1/jobs?limit=1&limit=2").await;
    assert_error(&response, BAD, "invalid_field", Some("limit"));
}

#[tokio::test]
async fn bytes_after_the_json_body_are_refused() {
    let s = TestServer::start().await;
    for body in [
        r#"{"kind":"a"} this is not json"#,
        r#"{"kind":"a"}{"kind":"b"}"#,
    ] {
        let response = s.post_raw("/v1/jobs", body).await;
        assert_error(&response, BAD, "invalid_json", None);
        let message = response.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("request body"), "{message}");
    }
    s.assert_unchanged_and_working(0).await;
}

#[tokio::test]
async fn readiness_fails_while_the_store_refuses_writes_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    let clock = Arc::new(ManualClock::new(common::start_time()));
    let server = RunningServer::start(store, clock, ServerConfig::default())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let ready = || http.get(format!("{}/readyz", server.url())).send();
    assert_eq!(ready().await.unwrap().status(), StatusCode::OK);
    // Another connection holds the write lock: reads still work, writes cannot.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let refused = ready().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (_, body) = common::read_json(refused).await;
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    holder.execute_batch("COMMIT").unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while ready().await.unwrap().status() != StatusCode::OK {
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::task::yield_now().await;
    }
}
