//! The worker runtime: connects to the server's worker socket, runs handlers as jobs are
//! pushed, reports results, reconnects when the server goes away, and shuts down gracefully.

mod context;
mod handler;
mod session;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use context::JobContext;
pub use handler::{HandlerError, Retry};

use errands_core::cron::CronSpec;
use errands_core::EnqueueRequest;

use crate::client::Client;
use crate::error::Error;
use crate::job::Job;
use handler::Handler;
use session::SessionEnd;

/// Longest wait between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// Configures a [`Worker`].
pub struct WorkerBuilder {
    client: Client,
    queues: Vec<String>,
    weights: Option<BTreeMap<String, u32>>,
    capacity: u32,
    name: Option<String>,
    handlers: HashMap<String, Handler>,
    state: Option<Arc<dyn Any + Send + Sync>>,
    grace: Duration,
    crons: Vec<(String, CronSpec)>,
}

impl WorkerBuilder {
    /// Declares the cron schedule `name`: `job` is enqueued at every fire time of `schedule`
    /// (a 5- or 6-field cron expression, or an interval such as `every 30s`) read in the IANA
    /// time zone `tz`. The worker upserts it (`PUT /v1/cron/{name}`) when it starts, before it
    /// connects; re-declaring keeps the schedule's next fire time and its paused state.
    pub fn cron(
        self,
        name: impl Into<String>,
        schedule: impl Into<String>,
        tz: impl Into<String>,
        job: EnqueueRequest,
    ) -> Self {
        self.cron_spec(name, CronSpec::new(schedule, tz, job))
    }

    /// Declares the cron schedule `name` from a full spec (for a catch-up policy, say).
    pub fn cron_spec(mut self, name: impl Into<String>, spec: CronSpec) -> Self {
        self.crons.push((name.into(), spec));
        self
    }

    /// Queues to serve in strict order: the first is always drained first.
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = queues.into_iter().map(Into::into).collect();
        self.weights = None;
        self
    }

    /// Queues to serve by weight, so a busy queue cannot starve the others.
    pub fn weighted_queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        let pairs: Vec<(String, u32)> = queues.into_iter().map(|(q, w)| (q.into(), w)).collect();
        self.queues = pairs.iter().map(|(q, _)| q.clone()).collect();
        self.weights = Some(pairs.into_iter().collect());
        self
    }

    /// Jobs run at once (default 10).
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// A name shown in the server's logs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Shared state every handler reaches through [`JobContext::state`].
    pub fn state<T: Any + Send + Sync>(mut self, state: T) -> Self {
        self.state = Some(Arc::new(state));
        self
    }

    /// How long running jobs may take to finish after shutdown is asked (default 30 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Handles jobs of type `J`.
    pub fn handle<J, F, Fut>(mut self, handler: F) -> Self
    where
        J: Job,
        F: Fn(JobContext, J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<J::Output, HandlerError>> + Send + 'static,
    {
        self.handlers
            .insert(J::KIND.to_owned(), handler::typed::<J, F, Fut>(handler));
        self
    }

    /// Handles jobs of `kind` with untyped JSON arguments and result.
    pub fn handle_raw<F, Fut>(mut self, kind: impl Into<String>, handler: F) -> Self
    where
        F: Fn(JobContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, HandlerError>> + Send + 'static,
    {
        self.handlers.insert(kind.into(), handler::raw(handler));
        self
    }

    /// The worker.
    pub fn build(self) -> Worker {
        Worker {
            config: Arc::new(self),
            shutdown: ShutdownHandle(CancellationToken::new()),
        }
    }
}

/// Asks a running worker to stop: no new jobs, running ones finish within the grace period.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Starts the graceful shutdown.
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

/// Processes jobs from an errands server.
pub struct Worker {
    config: Arc<WorkerBuilder>,
    shutdown: ShutdownHandle,
}

impl Worker {
    /// A builder for a worker using `client`'s server and token.
    pub fn builder(client: Client) -> WorkerBuilder {
        WorkerBuilder {
            client,
            queues: vec!["default".to_owned()],
            weights: None,
            capacity: 10,
            name: None,
            handlers: HashMap::new(),
            state: None,
            grace: Duration::from_secs(30),
            crons: Vec::new(),
        }
    }

    /// Upserts every cron schedule the builder declared.
    async fn declare_crons(&self) -> Result<(), Error> {
        for (name, spec) in &self.config.crons {
            self.config.client.put_cron(name, spec).await?;
        }
        Ok(())
    }

    /// A handle that stops this worker gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Runs until shut down by Ctrl-C, SIGTERM or the shutdown handle.
    pub async fn run_until_signal(self) -> Result<(), Error> {
        let handle = self.shutdown_handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            handle.shutdown();
        });
        self.run().await
    }

    /// Runs until the shutdown handle is used, reconnecting whenever the server goes away.
    /// Declares the builder's cron schedules first (retrying while the server is unreachable).
    /// Fails only when the server refuses the token or a cron schedule.
    pub async fn run(self) -> Result<(), Error> {
        let stop = self.shutdown.0.clone();
        let mut delay = Duration::from_millis(50);
        let mut declared = self.config.crons.is_empty();
        while !stop.is_cancelled() {
            if !declared {
                match self.declare_crons().await {
                    Ok(()) => declared = true,
                    Err(error @ (Error::Connection(_) | Error::Server { .. })) => {
                        tracing::warn!(%error, ?delay, "cannot declare cron schedules; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = stop.cancelled() => {}
                        }
                        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
                        continue;
                    }
                    // Refused (bad spec, bad token, a server without cron): retrying won't help.
                    Err(error) => return Err(error),
                }
            }
            match session::run(&self.config, &stop).await {
                SessionEnd::Stopped => return Ok(()),
                SessionEnd::Unauthorized => return Err(Error::Unauthorized),
                SessionEnd::Connected(reason) => {
                    delay = Duration::from_millis(50);
                    tracing::warn!(%reason, "lost the errands server; reconnecting");
                }
                SessionEnd::Failed(reason) => {
                    tracing::warn!(%reason, ?delay, "cannot reach the errands server; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => {}
            }
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
        Ok(())
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
