//! One worker's connection: the hello handshake, pushing jobs while the worker has room,
//! applying its reports, and releasing its jobs when it goes away.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use errands_core::protocol::{
    parse_worker_frame, Hello, JobDelivery, ServerMessage, WorkerMessage,
};
use errands_core::{Job, JobId};
use errands_store::StoreError;
use futures_util::future::{join_all, select_all};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval, timeout, Instant, MissedTickBehavior};

use super::queue_order::QueueOrder;
use crate::engine::{Engine, ToWorker, WorkerInfo, WorkerStatus};
use crate::error::EngineError;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the server pings an idle worker.
const PING_EVERY: Duration = Duration::from_secs(15);
/// A worker silent for this long is lost.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// Most jobs one worker may hold at once.
const MAX_CAPACITY: u32 = 100_000;

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// Serves one worker until its socket closes, then returns its jobs to their queues.
pub async fn run(socket: WebSocket, engine: Arc<Engine>) {
    let (mut sink, mut stream) = socket.split();
    let hello = match timeout(HELLO_TIMEOUT, read_hello(&mut stream)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(reason)) => {
            let _ = send(&mut sink, &error_message(reason, None)).await;
            return;
        }
        Err(_) => {
            let _ = send(
                &mut sink,
                &error_message("no hello within 10 s".into(), None),
            )
            .await;
            return;
        }
    };
    let worker_id = uuid::Uuid::now_v7().to_string();
    let now = engine.now();
    let info = WorkerInfo {
        id: worker_id.clone(),
        name: hello.name.clone(),
        host: hello.host.clone(),
        pid: hello.pid,
        sdk: hello.sdk.clone(),
        version: hello.version.clone(),
        queues: hello.queues.clone(),
        capacity: hello.capacity,
        running: 0,
        connected_at: now,
        last_seen: now,
    };
    let (inbox, status) = engine.workers().register(info);
    tracing::info!(worker_id, name = ?hello.name, queues = ?hello.queues, capacity = hello.capacity, "worker connected");
    let mut session = Session::new(engine.clone(), worker_id.clone(), hello, status);
    if let Err(error) = session.serve(&mut sink, &mut stream, inbox).await {
        tracing::debug!(worker_id, %error, "worker connection ended");
    }
    engine.workers().unregister(&worker_id);
    match engine.worker_lost(&worker_id).await {
        Ok(released) if !released.is_empty() => {
            tracing::warn!(
                worker_id,
                jobs = released.len(),
                "worker lost with jobs; requeued"
            )
        }
        Ok(_) => tracing::info!(worker_id, "worker disconnected"),
        Err(error) => tracing::error!(worker_id, %error, "could not release a lost worker's jobs"),
    }
}

/// Reads frames until the first message, which must be a valid hello.
async fn read_hello(stream: &mut Stream) -> Result<Hello, String> {
    while let Some(frame) = stream.next().await {
        let text = match frame.map_err(|e| e.to_string())? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            Message::Binary(_) => return Err("binary frames are not supported".into()),
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let first = parse_worker_frame(&text)
            .map_err(|e| format!("invalid message: {e}"))?
            .into_iter()
            .next();
        return match first {
            Some(WorkerMessage::Hello(hello)) if hello.queues.is_empty() => {
                Err("hello must name at least one queue".into())
            }
            Some(WorkerMessage::Hello(hello)) if hello.capacity > MAX_CAPACITY => {
                Err(format!("capacity must be at most {MAX_CAPACITY}"))
            }
            Some(WorkerMessage::Hello(hello)) => Ok(hello),
            _ => Err("the first message must be hello".into()),
        };
    }
    Err("closed before hello".into())
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("socket: {0}")]
    Socket(#[from] axum::Error),
    #[error("socket closed")]
    Closed,
    #[error("silent for {0:?}")]
    Silent(Duration),
    #[error("server shutting down")]
    ServerClosing,
    #[error("store: {0}")]
    Engine(#[from] EngineError),
}

struct Session {
    engine: Arc<Engine>,
    worker_id: String,
    queues: QueueOrder,
    capacity: usize,
    /// Jobs this worker holds, with their queue and kind (for progress events).
    running: HashMap<JobId, (String, String)>,
    signals: Vec<watch::Receiver<u64>>,
    /// Set when a claim might find something: at start, when room frees up, when a queue
    /// signals. Cleared when a claim comes back short, so idle workers cost no queries.
    want_claim: bool,
    last_heard: Instant,
    /// What `GET /v1/workers` shows for this connection.
    status: WorkerStatus,
}

impl Session {
    fn new(engine: Arc<Engine>, worker_id: String, hello: Hello, status: WorkerStatus) -> Self {
        let queues = QueueOrder::new(hello.queues, hello.weights);
        let signals = queues
            .names()
            .iter()
            .map(|q| engine.signals().subscribe(q))
            .collect();
        Self {
            engine,
            worker_id,
            queues,
            capacity: hello.capacity as usize,
            running: HashMap::new(),
            signals,
            want_claim: true,
            last_heard: Instant::now(),
            status,
        }
    }

    /// Refreshes what `GET /v1/workers` shows.
    fn update_status(&self, heard: bool) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.running = self.running.len();
        status.capacity = self.capacity as u32;
        if heard {
            status.last_seen = self.engine.now();
        }
    }

    fn free(&self) -> usize {
        self.capacity.saturating_sub(self.running.len())
    }

    async fn serve(
        &mut self,
        sink: &mut Sink,
        stream: &mut Stream,
        mut inbox: mpsc::UnboundedReceiver<ToWorker>,
    ) -> Result<(), SessionEnd> {
        send(
            sink,
            &ServerMessage::Welcome {
                worker_id: self.worker_id.clone(),
            },
        )
        .await?;
        let mut ping = interval(PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.push_jobs(sink).await?;
            let idle = self.free() > 0 && !self.want_claim;
            tokio::select! {
                frame = stream.next() => {
                    let frame = frame.ok_or(SessionEnd::Closed)??;
                    self.last_heard = Instant::now();
                    let mut frames = vec![frame];
                    // Take every frame already waiting, so their writes share one commit.
                    while let Some(Some(Ok(more))) = stream.next().now_or_never() {
                        frames.push(more);
                    }
                    self.handle_frames(sink, frames).await?;
                    self.update_status(true);
                }
                Some(command) = inbox.recv() => self.handle_command(sink, command).await?,
                _ = any_changed(&mut self.signals), if idle => self.want_claim = true,
                _ = self.engine.closed() => return Err(SessionEnd::ServerClosing),
                _ = ping.tick() => {
                    let silent = self.last_heard.elapsed();
                    if silent > SILENCE_LIMIT {
                        return Err(SessionEnd::Silent(silent));
                    }
                    sink.send(Message::Ping(Default::default())).await?;
                }
            }
        }
    }

    /// Claims jobs up to the free capacity and sends them.
    async fn push_jobs(&mut self, sink: &mut Sink) -> Result<(), SessionEnd> {
        let jobs = self.claim().await?;
        self.send_jobs(sink, jobs).await
    }

    /// Claims jobs up to the free capacity (none if the claim would find nothing).
    async fn claim(&mut self) -> Result<Vec<Job>, EngineError> {
        let wanted = self.free();
        if !self.want_claim || wanted == 0 {
            return Ok(Vec::new());
        }
        for signal in &mut self.signals {
            signal.borrow_and_update();
        }
        let order = self.queues.next(&mut rand::rng());
        let jobs = self.engine.claim(&self.worker_id, order, wanted).await?;
        if jobs.len() < wanted {
            self.want_claim = false;
        }
        Ok(jobs)
    }

    /// Records claimed jobs as held by this worker and pushes them to it.
    async fn send_jobs(&mut self, sink: &mut Sink, jobs: Vec<Job>) -> Result<(), SessionEnd> {
        if jobs.is_empty() {
            return Ok(());
        }
        for job in jobs {
            self.running
                .insert(job.id, (job.queue.clone(), job.kind.clone()));
            let text = to_text(&ServerMessage::Job(delivery(job)));
            sink.feed(Message::Text(text.into())).await?;
        }
        sink.flush().await?;
        self.update_status(false);
        Ok(())
    }

    async fn handle_command(
        &mut self,
        sink: &mut Sink,
        command: ToWorker,
    ) -> Result<(), SessionEnd> {
        match command {
            ToWorker::Cancel { id, reason } => {
                if self.running.remove(&id).is_some() {
                    self.want_claim = true;
                    self.update_status(false);
                    send(sink, &ServerMessage::Cancel { id, reason }).await?;
                }
            }
        }
        Ok(())
    }

    async fn handle_frames(
        &mut self,
        sink: &mut Sink,
        frames: Vec<Message>,
    ) -> Result<(), SessionEnd> {
        let mut reports = Vec::new();
        let mut closed = false;
        for frame in frames {
            match frame {
                Message::Text(text) => match parse_worker_frame(&text) {
                    Ok(messages) => reports.extend(messages),
                    Err(error) => {
                        send(
                            sink,
                            &error_message(format!("invalid message: {error}"), None),
                        )
                        .await?
                    }
                },
                Message::Binary(_) => {
                    send(
                        sink,
                        &error_message("binary frames are not supported".into(), None),
                    )
                    .await?
                }
                // Reports that arrived before the close still count.
                Message::Close(_) => closed = true,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        let mut job_reports = Vec::new();
        for report in reports {
            match report {
                WorkerMessage::Hello(_) => {
                    send(
                        sink,
                        &error_message("hello was already received".into(), None),
                    )
                    .await?
                }
                WorkerMessage::Capacity { capacity } if capacity > MAX_CAPACITY => {
                    let message = format!("capacity must be at most {MAX_CAPACITY}");
                    send(sink, &error_message(message, None)).await?
                }
                WorkerMessage::Capacity { capacity } => {
                    self.capacity = capacity as usize;
                    self.want_claim = true;
                }
                WorkerMessage::Progress { id, .. }
                | WorkerMessage::Complete { id, .. }
                | WorkerMessage::Fail { id, .. }
                    if !self.running.contains_key(&id) =>
                {
                    let message = format!("job {id} is not leased to this worker");
                    send(sink, &error_message(message, Some(id))).await?
                }
                report => job_reports.push(report),
            }
        }
        self.apply_reports(sink, job_reports).await?;
        if closed {
            return Err(SessionEnd::Closed);
        }
        Ok(())
    }

    /// Applies reports, and claims jobs for the slots they free, concurrently: all of it lands
    /// in one group commit instead of one commit for the reports and another for the claim.
    async fn apply_reports(
        &mut self,
        sink: &mut Sink,
        reports: Vec<WorkerMessage>,
    ) -> Result<(), SessionEnd> {
        let writes: Vec<_> = reports
            .into_iter()
            .map(|report| self.report_write(report))
            .collect();
        // Whatever the outcome, the worker no longer holds a job it completed or failed: it
        // finished, or it had been taken away. So the freed slots can be refilled right now.
        for write in &writes {
            if write.finishes && self.running.remove(&write.id).is_some() {
                self.want_claim = true;
            }
        }
        let engine = self.engine.clone();
        let worker_id = self.worker_id.clone();
        let applied = join_all(
            writes
                .into_iter()
                .map(|write| write.apply(&engine, &worker_id)),
        );
        let (outcomes, claimed) = tokio::join!(applied, self.claim());
        for (id, outcome) in outcomes {
            match outcome {
                Ok(()) => {}
                Err(EngineError::Store(StoreError::Backend(message))) => {
                    return Err(SessionEnd::Engine(EngineError::Store(StoreError::Backend(
                        message,
                    ))))
                }
                Err(error) => send(sink, &error_message(error.to_string(), Some(id))).await?,
            }
        }
        self.send_jobs(sink, claimed?).await
    }

    /// Pairs a report with what the store needs to apply it.
    fn report_write(&self, report: WorkerMessage) -> ReportWrite {
        let (id, finishes) = match &report {
            WorkerMessage::Complete { id, .. } | WorkerMessage::Fail { id, .. } => (*id, true),
            WorkerMessage::Progress { id, .. } => (*id, false),
            WorkerMessage::Hello(_) | WorkerMessage::Capacity { .. } => {
                unreachable!("handled before reports are applied")
            }
        };
        // Progress events name the job's queue and kind; read them before the job is released.
        // Completions and failures do not need them, so they pay no copy.
        let labels = if finishes {
            None
        } else {
            self.running.get(&id).cloned()
        };
        ReportWrite {
            id,
            finishes,
            labels,
            report,
        }
    }
}

/// One job report from the worker, ready to be written.
struct ReportWrite {
    id: JobId,
    /// Whether it ends the worker's hold on the job (complete or fail).
    finishes: bool,
    /// The job's queue and kind, for a progress report.
    labels: Option<(String, String)>,
    report: WorkerMessage,
}

impl ReportWrite {
    async fn apply(self, engine: &Engine, worker_id: &str) -> (JobId, Result<(), EngineError>) {
        let outcome = match self.report {
            WorkerMessage::Complete { id, result } => {
                engine.complete(worker_id, id, result).await.map(|_| ())
            }
            WorkerMessage::Fail {
                id,
                error,
                retry,
                retry_after,
            } => engine
                .fail(worker_id, id, error, retry, retry_after)
                .await
                .map(|_| ()),
            WorkerMessage::Progress { id, progress } => {
                let (queue, kind) = self
                    .labels
                    .as_ref()
                    .map(|(queue, kind)| (queue.as_str(), kind.as_str()))
                    .unwrap_or_default();
                engine
                    .progress(worker_id, id, (queue, kind), progress)
                    .await
            }
            WorkerMessage::Hello(_) | WorkerMessage::Capacity { .. } => Ok(()),
        };
        (self.id, outcome)
    }
}

/// Resolves when any of the receivers sees a new version.
async fn any_changed(signals: &mut [watch::Receiver<u64>]) {
    if signals.is_empty() {
        return std::future::pending().await;
    }
    let changes = signals.iter_mut().map(|rx| Box::pin(rx.changed()));
    // An error means the sender is gone, which never happens while the engine lives.
    let _ = select_all(changes).await;
}

fn delivery(job: Job) -> JobDelivery {
    JobDelivery {
        id: job.id,
        queue: job.queue,
        kind: job.kind,
        args: job.args,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        timeout: job.timeout,
        deadline: job.deadline,
    }
}

fn error_message(message: String, id: Option<JobId>) -> ServerMessage {
    ServerMessage::Error { message, id }
}

fn to_text(message: &ServerMessage) -> String {
    // Serialising these plain structs cannot fail: every key is a string, every value JSON.
    serde_json::to_string(message).unwrap_or_else(|_| String::from("{}"))
}

async fn send(sink: &mut Sink, message: &ServerMessage) -> Result<(), axum::Error> {
    sink.send(Message::Text(to_text(message).into())).await
}
