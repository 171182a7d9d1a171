//! The first frame of a worker connection: a `hello` naming what the worker serves, checked
//! like an enqueue's names (every queue name becomes per-connection state and a wake-up
//! channel), and any messages the worker sent in the same frame after it.

use axum::extract::ws::Message;
use errands_core::enqueue::check_name;
use errands_core::protocol::{parse_worker_frame, Hello, WorkerMessage};
use futures_util::stream::SplitStream;
use futures_util::StreamExt;

use crate::engine::WorkerLimits;

/// Most jobs one worker may hold at once.
pub(crate) const MAX_CAPACITY: u32 = 100_000;

type Stream = SplitStream<axum::extract::ws::WebSocket>;

/// A valid hello, and the messages that followed it in its frame (to be handled as if they
/// had come in frames of their own).
pub(crate) struct Greeting {
    pub hello: Hello,
    pub rest: Vec<WorkerMessage>,
}

/// Reads frames until the first message, which must be a valid hello.
pub(crate) async fn read_hello(
    stream: &mut Stream,
    limits: &WorkerLimits,
) -> Result<Greeting, String> {
    while let Some(frame) = stream.next().await {
        let text = match frame.map_err(|e| e.to_string())? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            Message::Binary(_) => return Err("binary frames are not supported".into()),
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        let mut messages = parse_worker_frame(&text)
            .map_err(|e| format!("invalid message: {e}"))?
            .into_iter();
        let Some(WorkerMessage::Hello(hello)) = messages.next() else {
            return Err("the first message must be hello".into());
        };
        check_hello(&hello, limits)?;
        return Ok(Greeting {
            hello,
            rest: messages.collect(),
        });
    }
    Err("closed before hello".into())
}

/// Refuses a hello the server cannot serve, saying why.
fn check_hello(hello: &Hello, limits: &WorkerLimits) -> Result<(), String> {
    if hello.queues.is_empty() {
        return Err("hello must name at least one queue".into());
    }
    if hello.queues.len() > limits.max_queues {
        return Err(format!(
            "hello names {} queues; at most {} are allowed",
            hello.queues.len(),
            limits.max_queues
        ));
    }
    let weights = hello.weights.as_ref().map_or(0, |w| w.len());
    if weights > limits.max_queues {
        return Err(format!(
            "hello weighs {weights} queues; at most {} are allowed",
            limits.max_queues
        ));
    }
    for (index, queue) in hello.queues.iter().enumerate() {
        check_name("queue", queue).map_err(|e| format!("queues[{index}]: {}", e.message))?;
    }
    if hello.capacity > MAX_CAPACITY {
        return Err(format!("capacity must be at most {MAX_CAPACITY}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(queues: &[&str]) -> Hello {
        Hello {
            queues: queues.iter().map(|q| q.to_string()).collect(),
            capacity: 1,
            ..Hello::default()
        }
    }

    #[test]
    fn queue_names_are_checked_like_an_enqueue_s() {
        let limits = WorkerLimits::default();
        assert!(check_hello(&hello(&["emails", "images"]), &limits).is_ok());
        for bad in ["", " ", "\u{0}", "\u{200B}", &"q".repeat(201)] {
            let refused = check_hello(&hello(&["ok", bad]), &limits).unwrap_err();
            assert!(
                refused.starts_with("queues[1]: queue"),
                "{bad:?}: {refused}"
            );
        }
    }

    #[test]
    fn a_hello_may_name_only_so_many_queues() {
        let limits = WorkerLimits {
            max_queues: 3,
            ..WorkerLimits::default()
        };
        assert!(check_hello(&hello(&["a", "b", "c"]), &limits).is_ok());
        let refused = check_hello(&hello(&["a", "b", "c", "d"]), &limits).unwrap_err();
        assert!(refused.contains("at most 3"), "{refused}");
    }
}
