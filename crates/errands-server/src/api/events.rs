//! `GET /v1/events`: live job events over a WebSocket, or Server-Sent Events for curl and
//! browsers. A subscriber that falls too far behind is cut off with a reason; it never slows
//! the server down.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use errands_core::event::Event;
use errands_core::JobId;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::QueryParams;
use crate::engine::Engine;

/// Which events to receive; all when nothing is given.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Comma-separated job ids.
    pub ids: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
}

/// A parsed filter.
#[derive(Clone, Debug, Default)]
struct Filter {
    ids: Option<HashSet<JobId>>,
    queue: Option<String>,
    kind: Option<String>,
}

impl Filter {
    fn parse(params: EventParams) -> Result<Self, ApiError> {
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
                    .collect::<Result<HashSet<_>, _>>()
            })
            .transpose()?;
        Ok(Self {
            ids,
            queue: params.queue,
            kind: params.kind,
        })
    }

    fn matches(&self, event: &Event) -> bool {
        self.ids.as_ref().is_none_or(|ids| ids.contains(&event.id))
            && self.queue.as_ref().is_none_or(|q| *q == event.queue)
            && self.kind.as_ref().is_none_or(|k| *k == event.kind)
    }
}

/// Streams job state changes and progress; a WebSocket when asked to upgrade, else SSE.
#[utoipa::path(get, path = "/v1/events", params(EventParams), responses(
    (status = 200, description = "text/event-stream of events (or a WebSocket upgrade)")))]
pub async fn events(
    State(engine): State<Arc<Engine>>,
    QueryParams(params): QueryParams<EventParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(params)?;
    // Subscribe before answering, so a client that subscribes and then reads a job's state
    // misses nothing in between.
    let events = engine.events().subscribe();
    Ok(match upgrade {
        Ok(ws) => ws
            .on_upgrade(move |socket| stream_websocket(socket, events, filter, engine))
            .into_response(),
        Err(_) => Sse::new(sse_stream(events, filter))
            .keep_alive(KeepAlive::default())
            .into_response(),
    })
}

fn lagged_reason(missed: u64) -> String {
    format!("subscriber too slow: {missed} events dropped; reconnect and re-read state")
}

async fn stream_websocket(
    mut socket: WebSocket,
    mut events: broadcast::Receiver<Arc<Event>>,
    filter: Filter,
    engine: Arc<Engine>,
) {
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(event) if filter.matches(&event) => {
                    let Ok(text) = serde_json::to_string(&*event) else { continue };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    let frame = CloseFrame { code: close_code::POLICY, reason: lagged_reason(missed).into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = engine.closed() => {
                let frame = CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            }
        }
    }
}

fn sse_stream(
    events: broadcast::Receiver<Arc<Event>>,
    filter: Filter,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(Some(events), move |events| {
        let filter = filter.clone();
        async move {
            let mut events = events?;
            loop {
                match events.recv().await {
                    Ok(event) if filter.matches(&event) => {
                        let sse = SseEvent::default()
                            .id(event.seq.to_string())
                            .json_data(&*event)
                            .unwrap_or_else(|_| SseEvent::default().comment("unserialisable"));
                        return Some((Ok(sse), Some(events)));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        let last = SseEvent::default()
                            .event("error")
                            .data(lagged_reason(missed));
                        return Some((Ok(last), None));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })
}
