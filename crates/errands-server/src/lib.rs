//! The errands job server: the [`Engine`](engine::Engine) holding the job lifecycle, the HTTP
//! API and the worker socket, served by axum.

pub mod api;
mod dashboard;
pub mod engine;
mod error;
mod http;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use errands_core::{Clock, Limits};
use errands_store::Store;
use tokio::net::TcpListener;

pub use engine::{Engine, EngineOptions, EventLimits, MetricKind, WorkerLimits, METRICS};
pub use error::EngineError;
pub use http::HttpLimits;

/// Settings of a running server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Bearer token required on every route but `/healthz`. An empty one is refused at
    /// start: it would look like protection and be none.
    pub token: Option<String>,
    /// Limits on what a job may carry.
    pub limits: Limits,
    /// Largest request body on every route but the batch enqueue (at least
    /// `limits.max_args_bytes`).
    pub max_body_bytes: usize,
    /// Largest body of `POST /v1/jobs/batch`.
    pub max_batch_body_bytes: usize,
    /// Most bytes in one page of `GET /v1/jobs`, `/v1/queues`, `/v1/cron` or `/v1/workers`; a
    /// longer page is cut short and continues at its `next_cursor`.
    pub max_list_bytes: usize,
    /// On a shared store: how long after this node's last heartbeat other nodes release the
    /// jobs its workers hold.
    pub node_lease: Duration,
    /// Connection limits: timeouts and the most connections open at once.
    pub http: HttpLimits,
    /// Origins (`https://host[:port]`) besides the server's own whose pages may call the API.
    pub allowed_origins: Vec<String>,
    /// Host names (`name` or `name:port`) the server answers to when it listens on a
    /// loopback address, besides `localhost` and the loopback addresses.
    pub allowed_hosts: Vec<String>,
    /// Timeouts and bounds of worker connections.
    pub worker: WorkerLimits,
    /// Bounds of the live event feed.
    pub events: EventLimits,
    /// Record the server's spans on the global OpenTelemetry tracer provider (the binary
    /// installs one exporting over OTLP).
    pub traces: bool,
    /// How many (queue, kind) pairs get job metric series of their own in `/metrics`; jobs of
    /// others are counted under `queue="_other", kind="_other"`.
    pub metrics_max_series: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            token: None,
            limits: Limits::default(),
            max_body_bytes: 2 << 20,
            max_batch_body_bytes: 16 << 20,
            max_list_bytes: api::jobs::DEFAULT_LIST_BYTES,
            node_lease: EngineOptions::default().node_lease,
            http: HttpLimits::default(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            worker: WorkerLimits::default(),
            events: EventLimits::default(),
            traces: false,
            metrics_max_series: engine::DEFAULT_MAX_SERIES,
        }
    }
}

impl ServerConfig {
    /// Refuses settings that cannot work or would silently protect nothing.
    pub fn check(&self) -> Result<(), EngineError> {
        let refuse = |message: String| Err(EngineError::Config(message));
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return refuse(
                "the token is empty, which would leave every route open: give a token, \
                 or unset --token / ERRANDS_TOKEN to serve without one"
                    .into(),
            );
        }
        if self.limits.max_args_bytes > self.max_body_bytes {
            return refuse(format!(
                "--max-args-bytes ({}) is over --max-body-bytes ({}): no request could carry \
                 args that large",
                self.limits.max_args_bytes, self.max_body_bytes
            ));
        }
        let counts = [
            ("--max-connections", self.http.max_connections),
            ("--worker-outbound-messages", self.worker.outbound_messages),
            ("--event-buffer-events", self.events.subscriber_events),
        ];
        if let Some((flag, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return refuse(format!("{flag} must be at least 1"));
        }
        let timeouts = [
            ("--header-timeout", self.http.header_timeout),
            ("--body-timeout", self.http.body_timeout),
            ("--write-timeout", self.http.write_timeout),
            ("--worker-hello-timeout", self.worker.hello_timeout),
        ];
        if let Some((flag, _)) = timeouts.iter().find(|(_, t)| t.is_zero()) {
            return refuse(format!("{flag} must be longer than zero"));
        }
        Ok(())
    }
}

/// Starts the engine and its maintenance loop, and serves HTTP on `listener` until
/// `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), EngineError> {
    let limits = config.http;
    let (engine, app) = build(store, clock, config, listener.local_addr()?).await?;
    let background = tokio::spawn(engine::run_background(engine.clone()));
    let closing = engine.clone();
    http::serve(listener, app, limits, async move {
        shutdown.await;
        // Worker sockets would hold the graceful shutdown open forever: close them.
        closing.close();
    })
    .await;
    background.abort();
    if let Err(error) = engine.leave().await {
        tracing::warn!(%error, "could not remove this node's lease");
    }
    Ok(())
}

/// The engine and the router over it, for a server listening on `local`.
async fn build(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: ServerConfig,
    local: SocketAddr,
) -> Result<(Arc<Engine>, axum::Router), EngineError> {
    config.check()?;
    let origins = api::Origins::new(local, &config.allowed_origins, &config.allowed_hosts)
        .map_err(|error| EngineError::Config(error.to_string()))?;
    let options = EngineOptions {
        limits: config.limits,
        node_lease: config.node_lease,
        worker: config.worker,
        events: config.events,
        traces: config.traces,
        max_series: config.metrics_max_series,
    };
    let engine = Engine::start(store, clock, options).await?;
    let rules = |max_bytes| api::BodyRules {
        max_bytes,
        timeout: config.http.body_timeout,
    };
    let api_config = api::ApiConfig {
        token: api::Token(config.token.map(Into::into)),
        origins: Arc::new(origins),
        body: rules(config.max_body_bytes),
        batch_body: rules(config.max_batch_body_bytes),
        list: api::ListBudget(config.max_list_bytes),
    };
    let app = api::router(engine.clone(), api_config);
    Ok((engine, app))
}

/// A server running in the background, for tests and embedding.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The engine, for driving maintenance by hand in tests.
    pub engine: Arc<Engine>,
    task: tokio::task::JoinHandle<()>,
    maintenance: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Starts a server on `127.0.0.1` at a free port.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
    ) -> Result<Self, EngineError> {
        Self::start_at(([127, 0, 0, 1], 0).into(), store, clock, config).await
    }

    /// Starts a server listening on `addr`.
    pub async fn start_at(
        addr: SocketAddr,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
    ) -> Result<Self, EngineError> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let limits = config.http;
        let (engine, app) = build(store, clock, config, addr).await?;
        let maintenance = tokio::spawn(engine::run_background(engine.clone()));
        let task = tokio::spawn(http::serve(listener, app, limits, std::future::pending()));
        Ok(Self {
            addr,
            engine,
            task,
            maintenance,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.engine.close();
        self.task.abort();
        self.maintenance.abort();
    }
}
