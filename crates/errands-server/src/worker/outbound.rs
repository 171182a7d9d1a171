//! What the server sends one worker, written by a task of its own: the connection's loop only
//! queues messages, so a worker that stops reading blocks no ping, no silence check and no
//! report. The queue is bounded ([`WorkerLimits`]): job frames by bytes (the loop holds jobs
//! back while it is full), other messages by count (one more cuts the worker off), and a
//! write that makes no progress for the write timeout cuts the worker off too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::timeout;

use crate::engine::WorkerLimits;

type Sink = SplitSink<WebSocket, Message>;

/// Why the outbound side gave up on a worker.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub(crate) enum OutboundError {
    /// A write made no progress for the write timeout.
    #[error("a write to the worker made no progress for {0:?}: it is not reading")]
    WriteTimeout(Duration),
    /// The socket refused a write.
    #[error("write failed: {0}")]
    Write(String),
    /// Too many messages waited to be written.
    #[error("{0} messages waiting to be written: the worker is not reading")]
    Backlog(usize),
}

/// A message queued for writing, and what it counts against.
struct Queued {
    message: Message,
    /// Bytes it counts against the job bound (0 for other messages).
    job_bytes: usize,
    /// Bytes it counts against the total shown in `/v1/workers`.
    bytes: usize,
}

/// How much waits to be written, shared by the connection and its writer.
#[derive(Default)]
struct Backlog {
    /// Every byte waiting (also shown in `/v1/workers` and `/metrics`).
    bytes: Arc<AtomicUsize>,
    job_bytes: AtomicUsize,
    messages: AtomicUsize,
    /// Signalled whenever the writer has written something.
    drained: Notify,
}

/// The connection's end of its outbound queue.
pub(crate) struct Outbound {
    tx: mpsc::UnboundedSender<Queued>,
    backlog: Arc<Backlog>,
    limits: WorkerLimits,
    /// Set once the writer gave up.
    failed: watch::Receiver<Option<OutboundError>>,
    writer: tokio::task::JoinHandle<()>,
}

impl Outbound {
    /// Starts the writer task over `sink`.
    pub(crate) fn start(sink: Sink, limits: WorkerLimits) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        let (failed_tx, failed) = watch::channel(None);
        let writer = tokio::spawn(write_loop(
            sink,
            rx,
            backlog.clone(),
            limits.write_timeout,
            failed_tx,
        ));
        Self {
            tx,
            backlog,
            limits,
            failed,
            writer,
        }
    }

    /// The live count of bytes waiting, for the worker registry.
    pub(crate) fn bytes_counter(&self) -> Arc<AtomicUsize> {
        self.backlog.bytes.clone()
    }

    /// True while job frames waiting fill the job bound: hold further jobs back.
    pub(crate) fn full(&self) -> bool {
        self.backlog.job_bytes.load(Ordering::Relaxed) >= self.limits.outbound_bytes
    }

    /// Queues a job frame. The caller checks [`Outbound::full`] first; one frame may take the
    /// backlog past the bound, so a job larger than the bound still goes out.
    pub(crate) fn send_job(&self, text: String) -> Result<(), OutboundError> {
        let bytes = text.len();
        self.push(Queued {
            message: Message::Text(text.into()),
            job_bytes: bytes,
            bytes,
        })
    }

    /// Queues any other message; refused when too many already wait.
    pub(crate) fn send(&self, message: Message) -> Result<(), OutboundError> {
        let waiting = self.backlog.messages.load(Ordering::Relaxed);
        if waiting >= self.limits.outbound_messages {
            return Err(OutboundError::Backlog(waiting));
        }
        let bytes = message_len(&message);
        self.backlog.messages.fetch_add(1, Ordering::Relaxed);
        self.push(Queued {
            message,
            job_bytes: 0,
            bytes,
        })
    }

    fn push(&self, queued: Queued) -> Result<(), OutboundError> {
        if let Some(error) = self.failed.borrow().clone() {
            return Err(error);
        }
        self.backlog
            .bytes
            .fetch_add(queued.bytes, Ordering::Relaxed);
        self.backlog
            .job_bytes
            .fetch_add(queued.job_bytes, Ordering::Relaxed);
        // The writer only stops after reporting why, which the check above saw; if it
        // stopped in between, the next check reports it.
        let _ = self.tx.send(queued);
        Ok(())
    }

    /// Resolves once the writer has written something (so a full queue may have room).
    pub(crate) async fn drained(&self) {
        self.backlog.drained.notified().await;
    }

    /// Resolves with the reason once the writer gives up on the worker.
    pub(crate) async fn failed(&self) -> OutboundError {
        let mut failed = self.failed.clone();
        let reason = match failed.wait_for(Option::is_some).await {
            Ok(error) => error.clone(),
            // The writer is gone without a reason: it cannot write anything more.
            Err(_) => None,
        };
        reason.unwrap_or_else(|| OutboundError::Write("the writer stopped".into()))
    }

    /// Writes what is queued, then closes the socket; waits at most one write timeout per
    /// write, so a worker that stopped reading cannot hold this up for long.
    pub(crate) async fn close(self) {
        drop(self.tx);
        let _ = self.writer.await;
    }
}

fn message_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
        Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
        Message::Close(frame) => frame.as_ref().map_or(0, |f| f.reason.len()),
    }
}

/// Writes queued messages in order, flushing when the queue runs dry, until the connection
/// drops its end (then closes the socket) or a write fails or stalls (then says why).
async fn write_loop(
    mut sink: Sink,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    backlog: Arc<Backlog>,
    write_timeout: Duration,
    failed: watch::Sender<Option<OutboundError>>,
) {
    while let Some(queued) = rx.recv().await {
        let written = write_until_dry(&mut sink, &mut rx, queued, &backlog, write_timeout).await;
        if let Err(error) = written {
            failed.send_replace(Some(error));
            return;
        }
    }
    let _ = timeout(write_timeout, sink.close()).await;
}

/// Writes `first` and everything queued behind it, then flushes, each step within
/// `write_timeout`.
async fn write_until_dry(
    sink: &mut Sink,
    rx: &mut mpsc::UnboundedReceiver<Queued>,
    first: Queued,
    backlog: &Backlog,
    write_timeout: Duration,
) -> Result<(), OutboundError> {
    let mut next = Some(first);
    while let Some(queued) = next {
        // Feeding writes through to the socket whenever axum's write buffer is full, so
        // each step is bounded by that buffer: no progress for the timeout means a stall.
        timed(write_timeout, sink.feed(queued.message)).await?;
        backlog.bytes.fetch_sub(queued.bytes, Ordering::Relaxed);
        backlog
            .job_bytes
            .fetch_sub(queued.job_bytes, Ordering::Relaxed);
        if queued.job_bytes == 0 {
            backlog.messages.fetch_sub(1, Ordering::Relaxed);
        }
        backlog.drained.notify_one();
        next = rx.try_recv().ok();
    }
    timed(write_timeout, sink.flush()).await
}

async fn timed(
    limit: Duration,
    write: impl std::future::Future<Output = Result<(), axum::Error>>,
) -> Result<(), OutboundError> {
    match timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(OutboundError::Write(error.to_string())),
        Err(_) => Err(OutboundError::WriteTimeout(limit)),
    }
}
