//! Real `errands serve` processes sharing one throwaway PostgreSQL database, the database
//! itself (to read which node is which and who leads), plain JSON over HTTP, and a worker
//! speaking the socket protocol directly.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

pub mod private_postgres;
#[path = "../support/server.rs"]
pub mod server;

use errands_store_postgres::testing::TestDatabase;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Value};
pub use server::free_port;
use server::ServerProcess;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest wait for any one condition: generous, for a slow machine shared with PostgreSQL.
pub const WAIT: Duration = Duration::from_secs(60);

/// The tests of this file run one at a time: each starts several servers and some measure
/// latencies, which two such tests side by side on a small machine would distort.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Held for the whole of a test.
pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// Several nodes on one fresh database. Dropping it kills the nodes, then drops the
/// database (fields drop in declaration order).
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub http: reqwest::Client,
    pg: tokio_postgres::Client,
    lease: Duration,
    pub dir: tempfile::TempDir,
    /// The URL every node is given.
    url: String,
    /// The throwaway database, when the cluster made one: dropped last.
    _database: Option<TestDatabase>,
}

impl Cluster {
    /// `count` nodes with `--node-lease lease`, started one after the other, each healthy
    /// before the next starts.
    pub async fn start(count: usize, lease: Duration) -> Self {
        let database = TestDatabase::create().await;
        Self::start_on(database.url(), Some(database), count, lease).await
    }

    /// `count` nodes on the database at `url` (owned by `database` if given).
    pub async fn start_on(
        url: String,
        database: Option<TestDatabase>,
        count: usize,
        lease: Duration,
    ) -> Self {
        // Migrated up front, so the node table exists before the first node starts.
        let migrated = Command::new(env!("CARGO_BIN_EXE_errands"))
            .args(["migrate", "--db", &url])
            .output()
            .unwrap();
        assert!(migrated.status.success(), "errands migrate: {migrated:?}");
        let (pg, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        let mut cluster = Self {
            nodes: Vec::new(),
            http: reqwest::Client::new(),
            pg,
            lease,
            dir: tempfile::tempdir().unwrap(),
            url,
            _database: database,
        };
        for _ in 0..count {
            let node = cluster.start_node(None).await;
            cluster.nodes.push(node);
        }
        cluster
    }

    /// Starts one more node (on `addr`, or a free port), returned rather than added.
    pub async fn start_node(&self, addr: Option<String>) -> Node {
        let before = self.node_ids().await;
        let addr = addr.unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let log = self.dir.path().join(format!(
            "node-{}-{}.log",
            addr.replace([':', '.'], "_"),
            uuid_like()
        ));
        let lease = format!("{}ms", self.lease.as_millis());
        let args = ["--node-lease", &lease, "--db", &self.url];
        let mut node = Node {
            process: ServerProcess::start(Some(addr), &args, log).await,
            id: String::new(),
        };
        // A node registers before it answers HTTP, and nodes start one at a time: the one
        // row that is new is this node's.
        let new: Vec<String> = self.node_ids().await.difference(&before).cloned().collect();
        assert_eq!(new.len(), 1, "expected exactly one new node row: {new:?}");
        node.id = new.into_iter().next().unwrap();
        node
    }

    /// The ids in `errands.nodes`: every node with a lease that was not reaped yet.
    pub async fn node_ids(&self) -> HashSet<String> {
        self.pg
            .query("SELECT id FROM errands.nodes", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// The maintenance (leader) lease: who holds it, until when (as the database prints it)
    /// and how many seconds of it are left by the database clock.
    pub async fn leader_lease(&self) -> Option<(String, String, f64)> {
        self.pg
            .query_opt(
                "SELECT node_id, expires_at::text, extract(epoch FROM expires_at - now())::float8 \
                 FROM errands.leaders WHERE role = 'maintenance'",
                &[],
            )
            .await
            .unwrap()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
    }

    /// Seconds left of `node_id`'s node lease by the database clock, if it has one.
    pub async fn node_lease_left(&self, node_id: &str) -> Option<f64> {
        self.pg
            .query_opt(
                "SELECT extract(epoch FROM expires_at - now())::float8 FROM errands.nodes \
                 WHERE id = $1",
                &[&node_id],
            )
            .await
            .unwrap()
            .map(|row| row.get(0))
    }

    /// Watches the jobs the store records as running under `node_id` (a node that was just
    /// killed) until none are left, polling on a connection of its own. Returns every job
    /// seen there (statements the node sent before it died may still commit after it) and
    /// when the last was gone; gives up waiting `give_up` after the start if there were none.
    pub fn watch_running_on(
        &self,
        node_id: &str,
        give_up: Duration,
    ) -> tokio::task::JoinHandle<(HashSet<String>, Instant)> {
        let (url, node_id) = (self.url.clone(), node_id.to_owned());
        tokio::spawn(async move {
            let (pg, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let start = Instant::now();
            let mut seen = HashSet::new();
            loop {
                let now: HashSet<String> = pg
                    .query(
                        "SELECT id::text FROM errands.jobs \
                         WHERE state = 'running' AND node_id = $1",
                        &[&node_id],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                let empty = now.is_empty();
                seen.extend(now);
                if empty && (!seen.is_empty() || start.elapsed() > give_up) {
                    return (seen, Instant::now());
                }
                assert!(
                    start.elapsed() < WAIT,
                    "the jobs of node {node_id} were never released"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes.iter().map(Node::log_tail).collect()
    }

    pub async fn get(&self, url: String) -> Value {
        ok_json(self.http.get(url).send().await.unwrap()).await
    }

    pub async fn post(&self, url: String, body: &Value) -> Value {
        ok_json(self.http.post(url).json(body).send().await.unwrap()).await
    }

    /// A POST without a body (cancel, pause, resume).
    pub async fn post_empty(&self, url: String) -> Value {
        ok_json(self.http.post(url).send().await.unwrap()).await
    }

    pub async fn put(&self, url: String, body: &Value) -> Value {
        ok_json(self.http.put(url).json(body).send().await.unwrap()).await
    }

    /// Enqueues one job through `node`; returns its id.
    pub async fn enqueue(&self, node: &Node, job: &Value) -> String {
        let reply = self.post(format!("{}/v1/jobs", node.url), job).await;
        reply["id"].as_str().unwrap().to_owned()
    }

    pub async fn job(&self, node: &Node, id: &str) -> Value {
        self.get(format!("{}/v1/jobs/{id}", node.url)).await
    }

    /// Every job matching `query` (e.g. `queue=q`), following the cursor to the last page.
    pub async fn list_all(&self, node: &Node, query: &str) -> Vec<Value> {
        let mut jobs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/v1/jobs?{query}&limit=1000", node.url);
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let page = self.get(url).await;
            jobs.extend(page["jobs"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return jobs,
            }
        }
    }

    /// Polls job `id` through `node` until it is in `state`.
    pub async fn wait_for_state(&self, node: &Node, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let job = self.job(node, id).await;
            if job["state"] == state {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job never became {state}: {job}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Distinguishes the log files of nodes restarted on the same address.
fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// One node: an `errands serve` process (SIGKILLed when dropped) and the id it registered.
pub struct Node {
    process: ServerProcess,
    /// Its node id in the store.
    pub id: String,
}

/// A node is its server process, plus the id it registered under.
impl std::ops::Deref for Node {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}

impl Node {
    /// The last lines of the log, headed by the node.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- {} ({}) ---\n{tail}\n", self.url, self.id)
    }
}

pub async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The messages of one text frame: one object, or an array of them.
pub fn messages(frame: Message) -> Vec<Value> {
    match frame {
        Message::Text(text) => match serde_json::from_str(&text).unwrap() {
            Value::Array(items) => items,
            one => vec![one],
        },
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Vec::new(),
        other => panic!("unexpected frame {other:?}"),
    }
}

/// A worker speaking the socket protocol directly, one message at a time.
pub struct RawWorker {
    socket: Socket,
    /// The id the server gave this connection.
    pub id: String,
    waiting: std::collections::VecDeque<Value>,
}

impl RawWorker {
    /// Connects to `node`, says hello for `queues` with `capacity`, and waits for the welcome.
    pub async fn connect(node: &Node, queues: &[&str], capacity: u32) -> Self {
        Self::connect_url(&node.worker_url(), queues, capacity).await
    }

    /// Connects to the worker socket at `url`, as [`Self::connect`] does.
    pub async fn connect_url(url: &str, queues: &[&str], capacity: u32) -> Self {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let hello = json!({"type": "hello", "queues": queues, "capacity": capacity});
        socket.send(Message::text(hello.to_string())).await.unwrap();
        let mut worker = Self {
            socket,
            id: String::new(),
            waiting: Default::default(),
        };
        let welcome = worker.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        worker.id = welcome["worker_id"].as_str().unwrap().to_owned();
        worker
    }

    /// The next message; panics if none comes within [`WAIT`].
    pub async fn recv(&mut self) -> Value {
        match self.recv_within(WAIT).await {
            Some(message) => message,
            None => panic!("no message from the server within {WAIT:?}"),
        }
    }

    /// The next message, or `None` if none comes within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(message) = self.waiting.pop_front() {
                return Some(message);
            }
            let frame = match timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.socket.next(),
            )
            .await
            {
                Err(_) => return None,
                Ok(frame) => frame.expect("the socket closed").unwrap(),
            };
            self.waiting.extend(messages(frame));
        }
    }

    /// A message already received, without waiting.
    pub fn try_recv(&mut self) -> Option<Value> {
        while let Some(Some(Ok(frame))) = self.socket.next().now_or_never() {
            self.waiting.extend(messages(frame));
        }
        self.waiting.pop_front()
    }

    /// The next message, which must be a `job`.
    pub async fn recv_job(&mut self) -> Value {
        let message = self.recv().await;
        assert_eq!(message["type"], "job", "{message}");
        message
    }

    pub async fn send(&mut self, message: &Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    pub async fn complete(&mut self, id: &str) {
        self.send(&json!({"type": "complete", "id": id, "result": {"ok": true}}))
            .await;
    }
}
