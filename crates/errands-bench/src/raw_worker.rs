//! A worker that speaks the worker protocol directly over tokio-tungstenite, with no SDK in
//! between: it says hello, and answers every `job` with `complete`, sending all the
//! completions it has at once in one JSON-array frame. It is the floor the SDK is compared to.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// An open worker socket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest a drain may take before the bench gives up on it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(900);

/// A server message, with only the fields the bench reads.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

/// What one text frame from the server held.
#[derive(Debug, Default)]
pub struct Frame {
    /// Ids of the `job` messages, in order.
    pub jobs: Vec<String>,
    /// Messages of any `error` messages.
    pub errors: Vec<String>,
}

impl Frame {
    /// Reads a frame holding one message or an array of them; other message types (welcome,
    /// cancel) are skipped.
    pub fn parse(text: &str) -> Result<Self> {
        let messages: Vec<Incoming<'_>> = if text.trim_start().starts_with('[') {
            serde_json::from_str(text)
        } else {
            serde_json::from_str(text).map(|one| vec![one])
        }
        .with_context(|| format!("unreadable frame from the server: {text:.200}"))?;
        let mut frame = Frame::default();
        for message in messages {
            match message.kind.as_ref() {
                "job" => frame
                    .jobs
                    .push(message.id.context("job message without id")?.into_owned()),
                "error" => frame
                    .errors
                    .push(message.message.unwrap_or_default().into_owned()),
                _ => {}
            }
        }
        Ok(frame)
    }
}

/// Opens the worker socket at `url` (`ws://host:port/v1/worker`).
pub async fn connect(url: &str) -> Result<Socket> {
    // Without Nagle's algorithm, like the SDK: each batch of completions goes out at once.
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(socket)
}

/// Says hello: serve `queue` with room for `capacity` jobs at once.
pub async fn hello(socket: &mut Socket, queue: &str, capacity: u32) -> Result<()> {
    let hello = serde_json::json!({
        "type": "hello",
        "queues": [queue],
        "capacity": capacity,
        "name": "errands-bench-raw",
    });
    socket.send(Message::Text(hello.to_string().into())).await?;
    Ok(())
}

/// Reads the next text frame, answering nothing; `None` when the socket closed.
pub async fn next_frame(socket: &mut Socket) -> Result<Option<Frame>> {
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => return Frame::parse(&text).map(Some),
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// One frame completing every job in `ids`: `[{"type":"complete","id":"…"}, …]`.
pub fn completions(ids: &[String]) -> Message {
    let mut text = String::with_capacity(2 + ids.len() * 70);
    text.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        // Ids are UUIDs: nothing in them needs escaping.
        text.push_str(r#"{"type":"complete","id":""#);
        text.push_str(id);
        text.push_str(r#""}"#);
    }
    text.push(']');
    Message::Text(text.into())
}

/// The outcome of a drain.
#[derive(Clone, Copy, Debug)]
pub struct Drained {
    /// From the first hello to the completion that reached the number asked for.
    pub elapsed: Duration,
    /// `error` messages the server sent meanwhile (should be 0).
    pub errors: u64,
}

impl Drained {
    /// Jobs per second over the drain.
    pub fn rate(&self, jobs: u64) -> f64 {
        jobs as f64 / self.elapsed.as_secs_f64()
    }
}

/// Shared by the connections of one drain.
struct Progress {
    completed: AtomicU64,
    errors: AtomicU64,
    target: u64,
    finished_at: OnceLock<Instant>,
    done: watch::Sender<bool>,
}

/// Runs `connections` raw workers on `queue`, `capacity` jobs each, until together they have
/// completed `jobs` jobs. The clock starts just before the first hello (the sockets are open
/// by then) and stops when the completion that reaches `jobs` has been sent.
pub async fn drain(
    url: &str,
    queue: &str,
    connections: usize,
    capacity: u32,
    jobs: u64,
) -> Result<Drained> {
    let mut sockets = Vec::with_capacity(connections);
    for _ in 0..connections {
        sockets.push(connect(url).await?);
    }
    let (done, _) = watch::channel(false);
    let progress = Arc::new(Progress {
        completed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        target: jobs,
        finished_at: OnceLock::new(),
        done,
    });
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for socket in sockets {
        let progress = progress.clone();
        let queue = queue.to_owned();
        tasks.push(tokio::spawn(async move {
            serve(socket, &queue, capacity, &progress).await
        }));
    }
    let all = futures_util::future::join_all(tasks);
    let Ok(results) = tokio::time::timeout(DRAIN_TIMEOUT, all).await else {
        bail!(
            "drain timed out after {DRAIN_TIMEOUT:?} with {} of {jobs} jobs completed",
            progress.completed.load(Ordering::Relaxed)
        );
    };
    for result in results {
        result.context("a raw worker task panicked")??;
    }
    let finished = *progress
        .finished_at
        .get()
        .context("the workers stopped before completing every job")?;
    Ok(Drained {
        elapsed: finished - started,
        errors: progress.errors.load(Ordering::Relaxed),
    })
}

/// One connection of a drain: completes what it is given until the drain is done.
async fn serve(mut socket: Socket, queue: &str, capacity: u32, progress: &Progress) -> Result<()> {
    let mut done = progress.done.subscribe();
    hello(&mut socket, queue, capacity).await?;
    let mut ids = Vec::with_capacity(capacity as usize);
    loop {
        let first = tokio::select! {
            message = socket.next() => message,
            _ = done.wait_for(|done| *done) => break,
        };
        let mut messages = vec![first];
        // Everything already received goes out in the same completion frame.
        while let Some(more) = socket.next().now_or_never() {
            let closed = more.is_none();
            messages.push(more);
            if closed {
                break;
            }
        }
        ids.clear();
        for message in messages {
            match message {
                Some(Ok(Message::Text(text))) => {
                    let frame = Frame::parse(&text)?;
                    ids.extend(frame.jobs);
                    if !frame.errors.is_empty() {
                        progress
                            .errors
                            .fetch_add(frame.errors.len() as u64, Ordering::Relaxed);
                        eprintln!("  server error to raw worker: {}", frame.errors.join("; "));
                    }
                }
                Some(Ok(Message::Close(_))) | None => bail!("the server closed a worker socket"),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
            }
        }
        if ids.is_empty() {
            continue;
        }
        socket.send(completions(&ids)).await?;
        let before = progress
            .completed
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        if before < progress.target && before + ids.len() as u64 >= progress.target {
            let _ = progress.finished_at.set(Instant::now());
            progress.done.send_replace(true);
        }
    }
    let _ = socket.close(None).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_array_frames() {
        let one =
            Frame::parse(r#"{"type":"job","id":"a","queue":"q","kind":"k","args":null}"#).unwrap();
        assert_eq!(one.jobs, ["a"]);
        let many = Frame::parse(
            r#"[{"type":"job","id":"a","args":{"x":"\"quoted\""}},{"type":"welcome","worker_id":"w"},
               {"type":"error","message":"nope","id":"b"}]"#,
        )
        .unwrap();
        assert_eq!(many.jobs, ["a"]);
        assert_eq!(many.errors, ["nope"]);
    }

    #[test]
    fn completes_in_one_array_frame() {
        let Message::Text(text) = completions(&["a".into(), "b".into()]) else {
            panic!("not text");
        };
        assert_eq!(
            text.as_str(),
            r#"[{"type":"complete","id":"a"},{"type":"complete","id":"b"}]"#
        );
    }
}
