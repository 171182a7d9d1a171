//! Shared helpers for the server's integration tests: an in-process server on a temporary
//! store with a hand-driven clock, a JSON-over-HTTP client for it, and a raw WebSocket worker.
//!
//! Time never passes by itself: tests move the [`ManualClock`] and run maintenance by hand,
//! so nothing here sleeps to synchronise.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use errands_core::{Limits, ManualClock};
use errands_server::{RunningServer, ServerConfig};
use errands_store::{SqliteStore, Store};
use errands_store_postgres::testing::TestDatabase;
use errands_store_postgres::{PostgresOptions, PostgresStore};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where every test's manual clock starts.
pub const START: &str = "2026-01-01T00:00:00Z";

/// The longest any single wait for a server reply may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The time the manual clock starts at.
pub fn start_time() -> DateTime<Utc> {
    START.parse().unwrap()
}

/// Parses an RFC 3339 timestamp from a JSON value.
pub fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
        .parse()
        .unwrap_or_else(|e| panic!("not a timestamp: {value}: {e}"))
}

/// An in-process server on a throwaway store, with its clock stopped at [`START`]. The store
/// is SQLite, or with `ERRANDS_TEST_STORE=postgres` a fresh PostgreSQL database: the test
/// command runs these tests on both.
pub struct TestServer {
    pub server: RunningServer,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    token: Option<String>,
    /// Dropped after the server, so the database outlives its connections' users.
    _database: Option<TestDatabase>,
}

/// A throwaway store of the backend the test run asks for.
pub async fn test_store() -> (Arc<dyn Store>, Option<TestDatabase>) {
    match std::env::var("ERRANDS_TEST_STORE").as_deref() {
        Ok("postgres") => {
            let database = TestDatabase::create().await;
            let store = PostgresStore::connect(&database.url(), PostgresOptions::default())
                .await
                .expect("connect to the test database");
            (Arc::new(store), Some(database))
        }
        Ok("sqlite") | Err(_) => (Arc::new(SqliteStore::temporary().unwrap()), None),
        Ok(other) => panic!("ERRANDS_TEST_STORE={other}: expected sqlite or postgres"),
    }
}

impl TestServer {
    /// A server with the default configuration.
    pub async fn start() -> Self {
        Self::with_config(ServerConfig::default()).await
    }

    /// A server whose jobs may carry at most `max_args_bytes` of args.
    pub async fn with_max_args_bytes(max_args_bytes: usize) -> Self {
        Self::with_config(ServerConfig {
            limits: Limits { max_args_bytes },
            ..ServerConfig::default()
        })
        .await
    }

    /// A server with `config`. Requests carry the config's token, if it has one.
    pub async fn with_config(config: ServerConfig) -> Self {
        let clock = Arc::new(ManualClock::new(start_time()));
        let (store, database) = test_store().await;
        let token = config.token.clone();
        let server = RunningServer::start(store, clock.clone(), config)
            .await
            .unwrap();
        Self {
            server,
            clock,
            http: reqwest::Client::new(),
            token,
            _database: database,
        }
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// The worker socket's URL.
    pub fn worker_url(&self) -> String {
        format!("ws://{}/v1/worker", self.server.addr)
    }

    /// Moves the clock forward by `seconds` (fractions allowed).
    pub fn advance(&self, seconds: f64) {
        self.clock
            .advance(chrono::Duration::milliseconds((seconds * 1000.0) as i64));
    }

    /// Runs one maintenance pass: promotes due jobs, times out overdue ones, purges old ones.
    pub async fn run_maintenance(&self) {
        self.server.engine.run_maintenance().await.unwrap();
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request` (with the token, if any) and returns the status and the JSON body
    /// (`null` for an empty body).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        read_json(self.authorised(request).send().await.unwrap()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// `POST path` with a raw body labelled as JSON.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let request = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(request).await
    }

    /// `POST path` with no body.
    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.post(self.url(path))).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    /// Enqueues one job, expecting `201 Created`; returns the job's id.
    pub async fn enqueue(&self, request: Value) -> String {
        let (status, body) = self.post("/v1/jobs", &request).await;
        assert_eq!(status, StatusCode::CREATED, "enqueue {request}: {body}");
        assert_eq!(body["created"], true, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// One job, expecting it to exist.
    pub async fn job(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(status, StatusCode::OK, "GET job {id}: {body}");
        body
    }

    /// Every job the list endpoint returns for `query` (e.g. `state=queued`), following
    /// `next_cursor` to the last page.
    pub async fn list_all(&self, query: &str) -> Vec<Value> {
        let mut jobs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/jobs?limit=1000&{query}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let (status, body) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
            jobs.extend(body["jobs"].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return jobs,
            }
        }
    }

    /// Reads the job until it is in `state`. Worker reports are not acknowledged on the
    /// socket, so this polls, with a deadline.
    pub async fn wait_for_state(&self, id: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let job = self.job(id).await;
            if job["state"] == state {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job never reached {state}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// How many jobs the server holds, counted through `GET /v1/jobs`.
    pub async fn job_count(&self) -> usize {
        self.list_all("").await.len()
    }

    /// After a refused request: the refused request stored nothing (the count is still
    /// `before`), and the server still accepts a valid job.
    pub async fn assert_unchanged_and_working(&self, before: usize) {
        assert_eq!(
            self.job_count().await,
            before,
            "a refused request changed the job count"
        );
        let id = self.enqueue(json!({"kind": "after.refusal"})).await;
        assert_eq!(self.job(&id).await["state"], "queued");
        assert_eq!(self.job_count().await, before + 1);
    }

    /// The queue object for `name` from `GET /v1/queues`.
    pub async fn queue(&self, name: &str) -> Value {
        let (status, body) = self.get("/v1/queues").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .unwrap_or_else(|| panic!("no queue {name} in {body}"))
            .clone()
    }

    /// Connects a raw worker with `hello`, expecting a `welcome`.
    pub async fn worker(&self, hello: Value) -> RawWorker {
        let mut worker = RawWorker::connect(&self.worker_url(), self.token.as_deref()).await;
        worker.send_json(&hello).await;
        let welcome = worker.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert!(welcome["worker_id"].is_string(), "{welcome}");
        worker
    }
}

/// Reads a response's status and JSON body; an empty body reads as `null`.
pub async fn read_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, body)
}

/// Asserts that a response is the documented error shape: `status`, and a body
/// `{"error": {"code": code, "message": "...", "field": field}}` with a non-empty message and
/// `field` present exactly when expected.
pub fn assert_error(
    (status, body): &(StatusCode, Value),
    expected_status: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    assert_eq!(*status, expected_status, "{body}");
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error object in {body}"));
    assert_eq!(error["code"], code, "{body}");
    let message = error["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "no message in {body}");
    match field {
        Some(field) => assert_eq!(error["field"], field, "{body}"),
        None => assert!(error.get("field").is_none(), "unexpected field in {body}"),
    }
}

/// A worker speaking the socket protocol frame by frame, for tests of the protocol itself.
pub struct RawWorker {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawWorker {
    /// Opens the socket, with a bearer token if given. Panics if the upgrade is refused.
    pub async fn connect(url: &str, token: Option<&str>) -> Self {
        let mut request = url.into_client_request().unwrap();
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        Self { socket }
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// Sends one text frame holding `message`.
    pub async fn send_json(&mut self, message: &Value) {
        self.send_text(&message.to_string()).await;
    }

    /// Sends one binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.socket
            .send(Message::binary(bytes.to_vec()))
            .await
            .unwrap();
    }

    /// The next message from the server (pings and pongs skipped). Panics if the socket
    /// closes or nothing arrives within [`WAIT`].
    pub async fn recv(&mut self) -> Value {
        match self.next_text().await {
            Some(text) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("server sent non-JSON {text:?}: {e}")),
            None => panic!("the socket closed while a message was expected"),
        }
    }

    /// The next message, which must be of `type`.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let message = self.recv().await;
        assert_eq!(message["type"], kind, "{message}");
        message
    }

    /// Asserts that the server closes the socket without sending anything else.
    pub async fn expect_closed(&mut self) {
        if let Some(text) = self.next_text().await {
            panic!("expected the socket to close, got {text}");
        }
    }

    /// The next text frame, or `None` once the socket is closed (cleanly or not).
    async fn next_text(&mut self) -> Option<String> {
        loop {
            let frame = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("no frame from the server in time");
            match frame {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(text))) => return Some(text.to_string()),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(bytes))) => {
                    panic!("server sent a binary frame: {bytes:?}")
                }
            }
        }
    }
}
