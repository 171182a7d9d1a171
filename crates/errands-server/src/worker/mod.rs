//! The worker socket (`/v1/worker`): jobs are pushed to connected workers as they have room.

mod connection;
mod hello;
mod outbound;
mod prefetch;
mod queue_order;
mod round;

use std::sync::Arc;

use axum::extract::{State, WebSocketUpgrade};
use axum::response::Response;

use crate::engine::Engine;

/// Largest frame a worker may send (results and progress data ride in frames).
const MAX_FRAME_BYTES: usize = 16 << 20;

/// Upgrades to the worker protocol.
pub async fn upgrade(State(engine): State<Arc<Engine>>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| connection::run(socket, engine))
}
