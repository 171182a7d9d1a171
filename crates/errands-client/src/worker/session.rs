//! One connection to the server's worker socket.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;

use errands_core::protocol::{FailError, Hello, JobDelivery, ServerMessage, WorkerMessage};
use errands_core::JobId;
use futures_util::stream::SplitSink;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::JobContext;
use super::handler::{HandlerError, Retry};
use super::WorkerBuilder;
use crate::error::Error;
use crate::socket::{self, Socket};
use crate::trace;

type Sink = SplitSink<Socket, Message>;

/// How a session ended.
pub(crate) enum SessionEnd {
    /// Shutdown finished.
    Stopped,
    /// The server refused the token.
    Unauthorized,
    /// Was connected, then lost the connection.
    Connected(String),
    /// Could not connect.
    Failed(String),
}

/// Connects and serves jobs until the connection ends or shutdown completes.
pub(crate) async fn run(config: &WorkerBuilder, stop: &CancellationToken) -> SessionEnd {
    let socket = match connect(config).await {
        Ok(socket) => socket,
        Err(end) => return end,
    };
    let mut session = Session::new(config, stop.clone());
    match session.serve(socket).await {
        Ok(()) => SessionEnd::Stopped,
        Err(reason) => {
            // The server requeues what we held when the socket closed; stop working on it.
            session.abandon();
            SessionEnd::Connected(reason)
        }
    }
}

async fn connect(config: &WorkerBuilder) -> Result<Socket, SessionEnd> {
    socket::connect(&config.client, "/v1/worker")
        .await
        .map_err(|error| match error {
            Error::Unauthorized => SessionEnd::Unauthorized,
            other => SessionEnd::Failed(other.to_string()),
        })
}

struct Session<'a> {
    config: &'a WorkerBuilder,
    stop: CancellationToken,
    running: HashMap<JobId, CancellationToken>,
    tasks: JoinSet<JobId>,
    reports_tx: mpsc::UnboundedSender<WorkerMessage>,
    reports: mpsc::UnboundedReceiver<WorkerMessage>,
}

impl<'a> Session<'a> {
    fn new(config: &'a WorkerBuilder, stop: CancellationToken) -> Self {
        let (reports_tx, reports) = mpsc::unbounded_channel();
        Self {
            config,
            stop,
            running: HashMap::new(),
            tasks: JoinSet::new(),
            reports_tx,
            reports,
        }
    }

    async fn serve(&mut self, socket: Socket) -> Result<(), String> {
        let (mut sink, mut stream) = socket.split();
        let hello = Hello {
            queues: self.config.queues.clone(),
            weights: self.config.weights.clone(),
            capacity: self.config.capacity,
            name: self.config.name.clone(),
            host: hostname(),
            pid: Some(std::process::id()),
            sdk: Some("errands-rust".into()),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        };
        send(&mut sink, &WorkerMessage::Hello(hello)).await?;
        let mut grace_deadline: Option<Instant> = None;
        loop {
            let draining = grace_deadline.is_some();
            tokio::select! {
                // Jobs first: start everything the server pushed before reporting, so the
                // reports leave in fewer, fuller frames.
                biased;
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.on_server_message(&text),
                    Some(Ok(Message::Close(_))) | None => return Err("server closed the connection".into()),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error.to_string()),
                },
                Some(report) = self.reports.recv() => self.send_reports(&mut sink, report).await?,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(id) = done {
                        self.running.remove(&id);
                    }
                    if draining && self.tasks.is_empty() {
                        return self.finish(sink).await;
                    }
                }
                _ = self.stop.cancelled(), if !draining => {
                    // Take no new jobs; let the running ones finish.
                    send(&mut sink, &WorkerMessage::Capacity { capacity: 0 }).await?;
                    if self.tasks.is_empty() {
                        return self.finish(sink).await;
                    }
                    grace_deadline = Some(Instant::now() + self.config.grace);
                }
                _ = sleep_until(grace_deadline), if draining => {
                    tracing::warn!(jobs = self.tasks.len(), "grace period over; giving jobs back");
                    self.interrupt_all(&mut sink).await?;
                    return self.finish(sink).await;
                }
            }
        }
    }

    fn on_server_message(&mut self, text: &str) {
        match serde_json::from_str::<ServerMessage>(text) {
            Ok(ServerMessage::Job(delivery)) => self.start(delivery),
            Ok(ServerMessage::Cancel { id, reason }) => {
                if let Some(token) = self.running.get(&id) {
                    tracing::info!(%id, ?reason, "job cancelled by the server");
                    token.cancel();
                }
            }
            Ok(ServerMessage::Welcome { worker_id }) => {
                tracing::info!(worker_id, "connected to errands");
            }
            Ok(ServerMessage::Error { message, id }) => {
                tracing::warn!(?id, message, "server refused a message");
            }
            Err(error) => tracing::warn!(%error, "unreadable message from the server"),
        }
    }

    fn start(&mut self, job: JobDelivery) {
        let cancel = CancellationToken::new();
        self.running.insert(job.id, cancel.clone());
        let reports = self.reports_tx.clone();
        let Some(handler) = self.config.handlers.get(&job.kind).cloned() else {
            let error = HandlerError::new(
                "UnknownKind",
                format!("this worker has no handler for kind {:?}", job.kind),
            );
            let id = job.id;
            let _ = reports.send(fail_message(id, error, None));
            self.tasks.spawn(async move { id });
            return;
        };
        let span = trace::job_span(&job);
        let ctx = JobContext {
            id: job.id,
            kind: job.kind,
            queue: job.queue,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            deadline: job.deadline,
            headers: job.headers,
            cancel: cancel.clone(),
            reports: reports.clone(),
            state: self.config.state.clone(),
        };
        let id = job.id;
        let args = job.args;
        let job_span = span.clone();
        let run = async move {
            // A panic in the handler fails this job, not the worker. Calling the handler inside
            // the future catches a panic before its first await too.
            let work = AssertUnwindSafe(async move { handler(ctx, args).await }).catch_unwind();
            let outcome = tokio::select! {
                outcome = work => outcome,
                // Dropping the handler's future stops it; the server already took the job back.
                _ = cancel.cancelled() => {
                    trace::record_outcome(&job_span, "cancelled");
                    return id;
                }
            };
            let (message, outcome) = match outcome {
                Ok(Ok(result)) => (
                    WorkerMessage::Complete {
                        id,
                        result: Some(result),
                    },
                    "completed",
                ),
                Ok(Err(error)) => (fail_message(id, error, None), "failed"),
                Err(payload) => {
                    let reason = panic_message(payload);
                    let error = HandlerError::new("Panic", reason.clone());
                    (fail_message(id, error, Some(reason)), "panicked")
                }
            };
            trace::record_outcome(&job_span, outcome);
            let _ = reports.send(message);
            id
        };
        self.tasks.spawn(run.instrument(span));
    }

    /// Sends every waiting report in one frame.
    async fn send_reports(&mut self, sink: &mut Sink, first: WorkerMessage) -> Result<(), String> {
        // Let handlers that are about to finish report too, so the server gets one frame (and
        // one store commit) for several jobs rather than one each.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        while let Ok(more) = self.reports.try_recv() {
            batch.push(more);
        }
        let text = serde_json::to_string(&batch).map_err(|e| e.to_string())?;
        sink.send(Message::Text(text.into()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Flushes the last reports and closes the socket.
    async fn finish(&mut self, mut sink: Sink) -> Result<(), String> {
        if let Ok(first) = self.reports.try_recv() {
            self.send_reports(&mut sink, first).await?;
        }
        let _ = sink.close().await;
        Ok(())
    }

    /// Stops every running handler and tells the server their attempts were interrupted, so
    /// their jobs go back to the queue without using an attempt. Reports of handlers that
    /// finished meanwhile go first, and their jobs are not reported interrupted.
    async fn interrupt_all(&mut self, sink: &mut Sink) -> Result<(), String> {
        let mut stopped: Vec<JobId> = self.running.keys().copied().collect();
        self.abandon();
        let mut batch = Vec::new();
        while let Ok(report) = self.reports.try_recv() {
            if let WorkerMessage::Complete { id, .. } | WorkerMessage::Fail { id, .. } = &report {
                stopped.retain(|running| running != id);
            }
            batch.push(report);
        }
        batch.extend(
            stopped
                .into_iter()
                .map(|id| WorkerMessage::Interrupted { id }),
        );
        if batch.is_empty() {
            return Ok(());
        }
        let text = serde_json::to_string(&batch).map_err(|e| e.to_string())?;
        sink.send(Message::Text(text.into()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Stops every running handler without reporting.
    fn abandon(&mut self) {
        for token in self.running.values() {
            token.cancel();
        }
        self.tasks.abort_all();
        self.running.clear();
    }
}

fn fail_message(id: JobId, error: HandlerError, traceback: Option<String>) -> WorkerMessage {
    let (retry, retry_after) = match error.retry {
        Retry::Policy => (true, None),
        Retry::After(delay) => (true, Some(delay.as_secs_f64())),
        Retry::Never => (false, None),
    };
    WorkerMessage::Fail {
        id,
        error: FailError {
            kind: error.kind,
            message: error.message,
            traceback,
        },
        retry,
        retry_after,
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .map(|s| format!("handler panicked: {s}"))
        .unwrap_or_else(|| "handler panicked".into())
}

async fn send(sink: &mut Sink, message: &WorkerMessage) -> Result<(), String> {
    let text = serde_json::to_string(message).map_err(|e| e.to_string())?;
    sink.send(Message::Text(text.into()))
        .await
        .map_err(|e| e.to_string())
}

/// The machine's name, for the server's worker list.
fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
