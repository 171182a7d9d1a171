//! The errands job server: the [`Engine`](engine::Engine) holding the job lifecycle, the HTTP
//! API and the worker socket, served by axum.

pub mod api;
mod dashboard;
pub mod engine;
mod error;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::{Listener, ListenerExt};
use errands_core::{Clock, Limits};
use errands_store::Store;
use tokio::net::{TcpListener, TcpStream};

pub use engine::{Engine, EngineOptions, EventLimits, WorkerLimits};
pub use error::EngineError;

/// Settings of a running server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Bearer token required on every route but `/healthz`.
    pub token: Option<String>,
    /// Limits on what a job may carry.
    pub limits: Limits,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// On a shared store: how long after this node's last heartbeat other nodes release the
    /// jobs its workers hold.
    pub node_lease: std::time::Duration,
    /// Timeouts and bounds of worker connections.
    pub worker: WorkerLimits,
    /// Bounds of the live event feed.
    pub events: EventLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            token: None,
            limits: Limits::default(),
            max_body_bytes: 64 << 20,
            node_lease: EngineOptions::default().node_lease,
            worker: WorkerLimits::default(),
            events: EventLimits::default(),
        }
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
    let (engine, app) = build(store, clock, config).await?;
    let background = tokio::spawn(engine::run_background(engine.clone()));
    let closing = engine.clone();
    let served = axum::serve(without_nagle(listener), app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Worker sockets would hold the graceful shutdown open forever: close them.
            closing.close();
        })
        .await;
    background.abort();
    if let Err(error) = engine.leave().await {
        tracing::warn!(%error, "could not remove this node's lease");
    }
    Ok(served?)
}

/// Sends every write at once. With Nagle's algorithm a small frame written while an earlier
/// one is unacknowledged waits for the ACK, which a peer delaying its ACKs holds for up to
/// 40 ms: a job pushed right after the welcome, or a second job after the first, sat there.
fn without_nagle(listener: TcpListener) -> impl Listener<Io = TcpStream, Addr = SocketAddr> {
    listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
    })
}

/// The engine and the router over it.
async fn build(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: ServerConfig,
) -> Result<(Arc<Engine>, axum::Router), EngineError> {
    let options = EngineOptions {
        limits: config.limits,
        node_lease: config.node_lease,
        worker: config.worker,
        events: config.events,
    };
    let engine = Engine::start(store, clock, options).await?;
    let token = api::Token(config.token.map(Into::into));
    let app = api::router(engine.clone(), token, config.max_body_bytes);
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
        let (engine, app) = build(store, clock, config).await?;
        let maintenance = tokio::spawn(engine::run_background(engine.clone()));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(without_nagle(listener), app).await {
                tracing::error!(%error, "server stopped");
            }
        });
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
