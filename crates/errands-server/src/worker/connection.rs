//! One worker's connection: the hello handshake, pushing jobs while the worker has room,
//! applying its reports, and releasing its jobs when it goes away.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use errands_core::protocol::{
    parse_worker_frame, Hello, JobDelivery, ServerMessage, WorkerMessage,
};
use errands_core::{Job, JobId};
use errands_store::StoreError;
use futures_util::future::{select_all, OptionFuture};
use futures_util::stream::SplitStream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval, sleep, sleep_until, timeout, Instant, MissedTickBehavior, Sleep};

use super::hello::{read_hello, Greeting, MAX_CAPACITY};
use super::outbound::{Outbound, OutboundError};
use super::prefetch::Prefetch;
use super::queue_order::QueueOrder;
use super::round::{self, ClaimOrder, Claimed, InFlight, ReportWrite, Round};
use crate::engine::{Engine, ToWorker, WorkerInfo, WorkerLimits, WorkerStatus};
use crate::error::EngineError;

type Stream = SplitStream<WebSocket>;

/// Serves one worker until its socket closes, then returns its jobs to their queues.
pub async fn run(socket: WebSocket, engine: Arc<Engine>) {
    let limits = *engine.worker_limits();
    let (sink, mut stream) = socket.split();
    // Every write goes through the outbound queue and its writer task, so no write can block
    // this connection's loop (its ping and silence check included).
    let out = Outbound::start(sink, limits);
    let greeting = match timeout(limits.hello_timeout, read_hello(&mut stream, &limits)).await {
        Ok(Ok(greeting)) => greeting,
        Ok(Err(reason)) => return refuse(out, reason).await,
        Err(_) => {
            let reason = format!("no hello within {:?}", limits.hello_timeout);
            return refuse(out, reason).await;
        }
    };
    let worker_id = uuid::Uuid::now_v7().to_string();
    let hello = &greeting.hello;
    let info = worker_info(&engine, &worker_id, hello);
    let held = Arc::new(AtomicUsize::new(0));
    let (inbox, status) = engine
        .workers()
        .register(info, out.bytes_counter(), held.clone());
    tracing::info!(worker_id, name = ?hello.name, queues = hello.queues.len(), capacity = hello.capacity, "worker connected");
    let Greeting { hello, rest } = greeting;
    let mut session = Session::new(engine.clone(), worker_id.clone(), hello, status, out, held);
    match session.serve(&mut stream, inbox, rest).await {
        Err(error @ SessionEnd::Silent(_)) => {
            tracing::warn!(worker_id, %error, "worker lost: no pong nor any message; its jobs go back to their queues");
        }
        Err(error) => tracing::debug!(worker_id, %error, "worker connection ended"),
        Ok(()) => {}
    }
    session.settle().await;
    engine.workers().unregister(&worker_id);
    release(&engine, &worker_id).await;
    session.leave().await;
}

/// Tells a connection that never became a session why, then closes it.
async fn refuse(out: Outbound, reason: String) {
    // A worker that does not read gets no reply; the close below is bounded either way.
    let _ = out.send(text(&error_message(reason, None)));
    out.close().await;
}

/// What `GET /v1/workers` shows for a new connection.
fn worker_info(engine: &Engine, worker_id: &str, hello: &Hello) -> WorkerInfo {
    let now = engine.now();
    WorkerInfo {
        id: worker_id.to_owned(),
        node: engine.node_id().to_owned(),
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
        outbound_bytes: 0,
    }
}

/// Returns a gone worker's jobs to their queues.
async fn release(engine: &Engine, worker_id: &str) {
    match engine.worker_lost(worker_id).await {
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

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("socket: {0}")]
    Socket(#[from] axum::Error),
    #[error("socket closed")]
    Closed,
    #[error("silent for {0:?}")]
    Silent(Duration),
    #[error("cut off: {0}")]
    Outbound(#[from] OutboundError),
    #[error("server shutting down")]
    ServerClosing,
    #[error("this node's lease lapsed")]
    NodeLeaseLost,
    #[error("store: {0}")]
    Engine(#[from] EngineError),
}

struct Session {
    engine: Arc<Engine>,
    limits: WorkerLimits,
    worker_id: String,
    /// What the worker is sent, written by a task of its own.
    out: Outbound,
    /// Set while jobs wait for room in the outbound queue.
    held_back: bool,
    queues: QueueOrder,
    capacity: usize,
    /// Jobs this worker holds.
    running: HashMap<JobId, Sent>,
    /// Jobs claimed ahead for it, sent as its slots free up.
    prefetch: Prefetch,
    /// Reports received and not yet written: they go with the next round.
    pending: Vec<ReportWrite>,
    /// The round of writes in flight, if any. One at a time, so writes keep their order.
    in_flight: Option<InFlight>,
    signals: Vec<watch::Receiver<u64>>,
    /// Set when a claim might find something: at start, when room frees up, when a queue
    /// signals. Cleared when a claim comes back short, so idle workers cost no queries.
    want_claim: bool,
    last_heard: Instant,
    /// What `GET /v1/workers` shows for this connection.
    status: WorkerStatus,
}

impl Session {
    fn new(
        engine: Arc<Engine>,
        worker_id: String,
        hello: Hello,
        status: WorkerStatus,
        out: Outbound,
        held: Arc<AtomicUsize>,
    ) -> Self {
        let queues = QueueOrder::new(hello.queues, hello.weights);
        let signals = queues
            .names()
            .iter()
            .map(|q| engine.signals().subscribe(q))
            .collect();
        let limits = *engine.worker_limits();
        Self {
            limits,
            engine,
            worker_id,
            out,
            held_back: false,
            queues,
            capacity: hello.capacity as usize,
            running: HashMap::new(),
            prefetch: Prefetch::new(limits.hold_limit, held),
            pending: Vec::new(),
            in_flight: None,
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

    /// How many jobs a claim should ask for: the free slots held jobs cannot fill, and room
    /// to hold more ahead. None while the outbound queue is full: they could not be sent.
    fn wanted(&self) -> usize {
        if self.out.full() {
            return 0;
        }
        let free = self.free().saturating_sub(self.prefetch.len());
        free + self.prefetch.room(self.capacity)
    }

    async fn serve(
        &mut self,
        stream: &mut Stream,
        mut inbox: mpsc::UnboundedReceiver<ToWorker>,
        rest_of_hello: Vec<WorkerMessage>,
    ) -> Result<(), SessionEnd> {
        self.greet(rest_of_hello).await?;
        // A zero period would make `interval` panic; a millisecond is as often as it is useful.
        let mut ping = interval(self.limits.ping_every.max(Duration::from_millis(1)));
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Silence is watched on a timer of its own, not at ping ticks, so a stalled worker is
        // found out right when it has been silent for the limit, whatever the ping period.
        let silence = sleep(self.limits.silence_limit);
        tokio::pin!(silence);
        loop {
            if self.in_flight.is_none() {
                self.start_round();
            }
            let idle = self.wanted() > 0 && !self.want_claim;
            let hold_expiry = self.prefetch.expires_at();
            tokio::select! {
                // In this order: a closing server wins even over a busy worker, and the round
                // in flight comes before commands, so a cancel that follows a claim finds its job.
                biased;
                _ = self.engine.closed() => return Err(SessionEnd::ServerClosing),
                error = self.out.failed() => return Err(error.into()),
                round = OptionFuture::from(self.in_flight.as_mut()), if self.in_flight.is_some() => {
                    self.in_flight = None;
                    if let Some(round) = round {
                        self.finish_round(round).await?;
                    }
                }
                frame = stream.next() => {
                    let frame = frame.ok_or(SessionEnd::Closed)??;
                    self.last_heard = Instant::now();
                    let mut frames = vec![frame];
                    // Take every frame already waiting, so their writes share one round.
                    while let Some(Some(Ok(more))) = stream.next().now_or_never() {
                        frames.push(more);
                    }
                    self.handle_frames(frames).await?;
                    self.update_status(true);
                }
                Some(command) = inbox.recv() => self.handle_command(command).await?,
                _ = self.out.drained(), if self.held_back => {
                    self.held_back = false;
                    self.want_claim = true;
                    self.send_jobs(Vec::new()).await?;
                }
                _ = any_changed(&mut self.signals), if idle => self.want_claim = true,
                _ = sleep_until(hold_expiry.unwrap_or_else(Instant::now)), if hold_expiry.is_some() => {
                    self.give_back_held().await?;
                }
                _ = ping.tick() => self.ping()?,
                () = &mut silence => self.check_silence(silence.as_mut())?,
            }
        }
    }

    /// Welcomes the worker, then takes the messages that shared its hello's frame as if they
    /// had come after it.
    async fn greet(&mut self, rest_of_hello: Vec<WorkerMessage>) -> Result<(), SessionEnd> {
        let welcome = ServerMessage::Welcome {
            worker_id: self.worker_id.clone(),
        };
        self.send(&welcome)?;
        for message in rest_of_hello {
            self.take_message(message).await?;
        }
        Ok(())
    }

    /// Pings the worker, so that a live one is heard from at least once per ping period.
    /// Nothing here waits on the socket, so a worker that stops reading is still found out.
    fn ping(&self) -> Result<(), SessionEnd> {
        Ok(self.out.send(Message::Ping(Default::default()))?)
    }

    /// Ends a session whose worker has been silent for the limit; otherwise sets `timer` to
    /// when it will have been, counted from the last frame heard.
    fn check_silence(&self, timer: Pin<&mut Sleep>) -> Result<(), SessionEnd> {
        let silent = self.last_heard.elapsed();
        if silent >= self.limits.silence_limit {
            return Err(SessionEnd::Silent(silent));
        }
        timer.reset(self.last_heard + self.limits.silence_limit);
        Ok(())
    }

    /// Queues `message` for the worker.
    fn send(&self, message: &ServerMessage) -> Result<(), OutboundError> {
        self.out.send(text(message))
    }

    /// Starts a round of writes with the pending reports and, if it might find jobs, a claim.
    fn start_round(&mut self) {
        let claim = self.claim_order();
        if self.pending.is_empty() && claim.is_none() {
            return;
        }
        let reports = std::mem::take(&mut self.pending);
        let round = round::start(self.engine.clone(), self.worker_id.clone(), reports, claim);
        self.in_flight = Some(round);
    }

    /// What to claim now, if anything.
    fn claim_order(&mut self) -> Option<ClaimOrder> {
        let wanted = self.wanted();
        if !self.want_claim || wanted == 0 {
            return None;
        }
        // Seen now: a queue that signals after this wakes the connection again.
        for signal in &mut self.signals {
            signal.borrow_and_update();
        }
        let queues = self.queues.next(&mut rand::rng());
        Some(ClaimOrder { queues, wanted })
    }

    /// Reports what failed in a round and sends or holds the jobs it claimed.
    async fn finish_round(&mut self, round: Round) -> Result<(), SessionEnd> {
        for (id, outcome) in round.outcomes {
            match outcome {
                Ok(()) => {}
                // The store failing is the connection's end; anything else is this report's.
                Err(error @ EngineError::Store(StoreError::Backend(_))) => return Err(error.into()),
                Err(error) => self.send(&error_message(error.to_string(), Some(id)))?,
            }
        }
        let Some(claimed) = round.claimed else {
            return Ok(());
        };
        let jobs = match claimed.jobs {
            Ok(jobs) => jobs,
            // The store kept failing in a way that passes (it retried already): the worker
            // keeps its jobs and its connection, and the next round claims again.
            Err(EngineError::Store(error)) if error.is_transient() => {
                tracing::warn!(worker_id = self.worker_id, %error, "claim failed for now");
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let short = jobs.len() < claimed.wanted;
        if short {
            self.want_claim = false;
        }
        self.send_jobs(jobs).await?;
        if short && self.free() > self.prefetch.len() {
            // Idle slots and nothing left to claim: jobs held for a busy connection of the
            // same queues are better off here than waiting for its slots.
            self.engine
                .workers()
                .ask_for_held(&self.worker_id, &self.queues.names());
        }
        Ok(())
    }

    /// Once the connection has ended: waits for the round in flight, writes the reports still
    /// pending without claiming (reports that arrived before the end still count), and gives
    /// back every job claimed for the worker but never sent, without counting an attempt.
    async fn settle(&mut self) {
        let mut unsent = self.prefetch.release();
        if let Some(round) = self.in_flight.take() {
            let round = round.await;
            self.log_failures(&round.outcomes);
            if let Some(Claimed { jobs: Ok(jobs), .. }) = round.claimed {
                unsent.extend(jobs.iter().map(|job| job.id));
            }
        }
        if !self.pending.is_empty() {
            let reports = std::mem::take(&mut self.pending);
            let round = round::start(self.engine.clone(), self.worker_id.clone(), reports, None);
            let round = round.await;
            self.log_failures(&round.outcomes);
        }
        if let Err(error) = self.engine.unclaim(&self.worker_id, unsent).await {
            tracing::error!(worker_id = self.worker_id, %error, "could not give back unsent jobs");
        }
    }

    /// Once the worker's jobs are released: forgets the queues no other connection watches,
    /// and writes what is still queued for the worker before closing its socket.
    async fn leave(mut self) {
        drop(std::mem::take(&mut self.signals));
        self.engine.signals().forget_unwatched(&self.queues.names());
        self.out.close().await;
    }

    fn log_failures(&self, outcomes: &[(JobId, Result<(), EngineError>)]) {
        for (id, outcome) in outcomes {
            if let Err(error) = outcome {
                tracing::debug!(worker_id = self.worker_id, job_id = %id, %error, "report not applied");
            }
        }
    }

    /// Fills the worker's free slots, with held jobs first and then `claimed` ones, and holds
    /// the claimed jobs that do not fit, or that wait for room in the outbound queue.
    async fn send_jobs(&mut self, claimed: Vec<Job>) -> Result<(), SessionEnd> {
        let claimed_at = Instant::now();
        let mut claimed = claimed.into_iter();
        let mut sent = 0;
        // Jobs of a queue paused since they were claimed go back instead.
        let mut paused = Vec::new();
        while self.free() > 0 && !self.out.full() {
            let Some(job) = self.prefetch.next().or_else(|| claimed.next()) else {
                break;
            };
            if self.engine.is_paused(&job.queue) {
                paused.push(job.id);
                continue;
            }
            self.engine.started(&job);
            self.running.insert(job.id, Sent::new(&job));
            self.out
                .send_job(to_text(&ServerMessage::Job(delivery(job))))?;
            sent += 1;
        }
        for job in claimed {
            self.prefetch.hold(job, claimed_at);
        }
        // Held jobs go out when the writer makes room, or back to their queue on expiry.
        self.held_back = self.out.full() && self.free() > 0;
        if sent > 0 {
            self.update_status(false);
        }
        self.engine.unclaim(&self.worker_id, paused).await?;
        Ok(())
    }

    /// Gives every held job back to its queue: they waited too long for a free slot, or the
    /// worker's capacity changed.
    async fn give_back_held(&mut self) -> Result<(), EngineError> {
        let held = self.prefetch.release();
        if !held.is_empty() {
            self.engine.unclaim(&self.worker_id, held).await?;
            self.want_claim = true;
        }
        Ok(())
    }

    async fn handle_command(&mut self, command: ToWorker) -> Result<(), SessionEnd> {
        match command {
            ToWorker::Cancel { id, reason } => {
                if self.running.remove(&id).is_some() {
                    self.want_claim = true;
                    self.update_status(false);
                    self.send(&ServerMessage::Cancel { id, reason })?;
                } else if self.prefetch.forget(id) {
                    // Held, never sent: there is nothing for the worker to abort.
                    self.want_claim = true;
                }
            }
            ToWorker::Disconnect => return Err(SessionEnd::NodeLeaseLost),
            ToWorker::GiveBackHeld => self.give_back_held().await?,
        }
        Ok(())
    }

    /// Takes in the worker's frames: answers bad ones, queues its reports for the next round
    /// and, for every job they finish, sends a held job at once.
    async fn handle_frames(&mut self, frames: Vec<Message>) -> Result<(), SessionEnd> {
        let mut messages = Vec::new();
        let mut closed = false;
        for frame in frames {
            match frame {
                Message::Text(text) => match parse_worker_frame(&text) {
                    Ok(parsed) => messages.extend(parsed),
                    Err(error) => {
                        self.send(&error_message(format!("invalid message: {error}"), None))?
                    }
                },
                Message::Binary(_) => self.send(&error_message(
                    "binary frames are not supported".into(),
                    None,
                ))?,
                // Reports that arrived before the close still count.
                Message::Close(_) => closed = true,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        for message in messages {
            self.take_message(message).await?;
        }
        self.send_jobs(Vec::new()).await?;
        if closed {
            return Err(SessionEnd::Closed);
        }
        Ok(())
    }

    async fn take_message(&mut self, message: WorkerMessage) -> Result<(), SessionEnd> {
        let (id, finishes) = match &message {
            WorkerMessage::Hello(_) => {
                let reply = error_message("hello was already received".into(), None);
                return Ok(self.send(&reply)?);
            }
            WorkerMessage::Capacity { capacity } if *capacity > MAX_CAPACITY => {
                let reply = error_message(format!("capacity must be at most {MAX_CAPACITY}"), None);
                return Ok(self.send(&reply)?);
            }
            WorkerMessage::Capacity { capacity } => {
                self.capacity = *capacity as usize;
                self.want_claim = true;
                // A worker lowering its capacity may be shutting down: what is held for it is
                // better off with another worker.
                self.give_back_held().await?;
                return Ok(());
            }
            WorkerMessage::Complete { id, .. }
            | WorkerMessage::Fail { id, .. }
            | WorkerMessage::Interrupted { id } => (*id, true),
            WorkerMessage::Progress { id, .. } => (*id, false),
        };
        let Some(sent) = self.running.get(&id) else {
            let reply = error_message(format!("job {id} is not leased to this worker"), Some(id));
            return Ok(self.send(&reply)?);
        };
        // Progress events name the job's queue and kind; completions and failures need no copy.
        let labels = (!finishes).then(|| sent.labels.clone());
        if finishes {
            // Whatever the write's outcome, the worker no longer holds the job: it finished,
            // or it had been taken away. So its slot can be refilled right now.
            let elapsed = sent.at.elapsed();
            self.running.remove(&id);
            self.prefetch.finished(elapsed);
            self.want_claim = true;
        }
        self.pending.push(ReportWrite {
            id,
            labels,
            report: message,
        });
        Ok(())
    }
}

/// A job sent to the worker.
struct Sent {
    /// Its queue and kind, for progress events.
    labels: (String, String),
    /// When it was sent.
    at: Instant,
}

impl Sent {
    fn new(job: &Job) -> Self {
        Self {
            labels: (job.queue.clone(), job.kind.clone()),
            at: Instant::now(),
        }
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
        headers: job.headers,
    }
}

fn error_message(message: String, id: Option<JobId>) -> ServerMessage {
    ServerMessage::Error { message, id }
}

fn to_text(message: &ServerMessage) -> String {
    // Serialising these plain structs cannot fail: every key is a string, every value JSON.
    serde_json::to_string(message).unwrap_or_else(|_| String::from("{}"))
}

/// `message` as a text frame.
fn text(message: &ServerMessage) -> Message {
    Message::Text(to_text(message).into())
}
