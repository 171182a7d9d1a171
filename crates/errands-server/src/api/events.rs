//! `GET /v1/events`: live job events over a WebSocket, or Server-Sent Events for curl and
//! browsers. A subscriber that falls too far behind (see `EventLimits`) is cut off with a
//! reason, and one whose socket takes no write for the write timeout is disconnected; neither
//! slows the server down.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use errands_core::JobId;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::time::timeout;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use crate::engine::{Engine, EventFilter, Subscription, SubscriptionEnd};

/// Which events to receive; all when nothing is given.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Comma-separated job ids.
    pub ids: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
}

/// Parses the query into the engine's filter.
fn parse_filter(params: EventParams) -> Result<EventFilter, ApiError> {
    let ids = params
        .ids
        .map(|ids| {
            ids.split(',')
                .filter(|id| !id.is_empty())
                .map(|id| {
                    id.trim().parse().map_err(|_| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_field",
                            format!("{id:?} is not a job id"),
                        )
                        .with_field("ids")
                    })
                })
                .collect::<Result<HashSet<JobId>, _>>()
        })
        .transpose()?;
    Ok(EventFilter {
        ids,
        queue: params.queue,
        kind: params.kind,
    })
}

/// Streams job state changes and progress; a WebSocket when asked to upgrade, else SSE.
#[utoipa::path(
    get, path = "/v1/events", operation_id = "stream_events", tag = "events",
    params(EventParams), responses(
    (status = 200, description = "text/event-stream of events (or a WebSocket upgrade)"),
    (status = 400, body = ErrorBody, description = "an unknown parameter, or ids that are not job ids"),
    (status = 503, body = ErrorBody, description = "the store could not start delivering other nodes' events")))]
pub async fn events(
    State(engine): State<Arc<Engine>>,
    QueryParams(params): QueryParams<EventParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let filter = parse_filter(params)?;
    // Subscribe before answering, so a client that subscribes and then reads a job's state
    // misses nothing in between.
    let events = engine.subscribe_events(filter).await?;
    let write_timeout = engine.events().limits().write_timeout;
    Ok(match upgrade {
        Ok(ws) => ws
            .on_upgrade(move |socket| stream_websocket(socket, events, engine, write_timeout))
            .into_response(),
        Err(_) => Sse::new(sse_stream(events))
            .keep_alive(KeepAlive::default())
            .into_response(),
    })
}

/// Sends `message`, giving up after `limit`: a subscriber that stops reading must not hold
/// its task (and its socket) forever.
async fn send(socket: &mut WebSocket, message: Message, limit: Duration) -> bool {
    matches!(timeout(limit, socket.send(message)).await, Ok(Ok(())))
}

async fn stream_websocket(
    mut socket: WebSocket,
    mut events: Subscription,
    engine: Arc<Engine>,
    write_timeout: Duration,
) {
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(event) => {
                    let text = Message::Text(event.json.as_str().into());
                    if !send(&mut socket, text, write_timeout).await {
                        return;
                    }
                }
                Err(end) => {
                    let code = match end {
                        SubscriptionEnd::TooSlow { .. } => close_code::POLICY,
                        SubscriptionEnd::Closing => close_code::AWAY,
                    };
                    let frame = CloseFrame { code, reason: end.to_string().into() };
                    send(&mut socket, Message::Close(Some(frame)), write_timeout).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = engine.closed() => {
                let frame = CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
                send(&mut socket, Message::Close(Some(frame)), write_timeout).await;
                return;
            }
        }
    }
}

/// The SSE body: each event as `id: seq` and `data: json`; a subscription cut off ends with
/// an `error` event saying why.
fn sse_stream(events: Subscription) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(Some(events), |events| async move {
        let mut events = events?;
        match events.recv().await {
            Ok(event) => {
                let sse = SseEvent::default()
                    .id(event.seq.to_string())
                    .data(event.json.as_str());
                Some((Ok(sse), Some(events)))
            }
            Err(SubscriptionEnd::Closing) => None,
            Err(end) => {
                let last = SseEvent::default().event("error").data(end.to_string());
                Some((Ok(last), None))
            }
        }
    })
}
