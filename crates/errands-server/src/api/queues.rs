//! `/v1/queues` routes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use errands_core::enqueue;
use errands_store::QueueInfo;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::jobs::{ListBudget, DEFAULT_LIST_BYTES};
use super::paging::{page, PageParams};
use crate::engine::Engine;

/// A page of queues.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// Queues by name.
    pub queues: Vec<QueueInfo>,
    /// Pass as `after` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Queues by name, with counts by state and the oldest ready job's age: at most `limit`
/// (default 1000) and at most the server's byte budget for a page; `next_cursor` continues.
#[utoipa::path(
    get, path = "/v1/queues", operation_id = "list_queues", tag = "queues",
    params(PageParams),
    responses((status = 200, body = QueueList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(engine): State<Arc<Engine>>,
    budget: Option<Extension<ListBudget>>,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<Json<QueueList>, ApiError> {
    let budget = budget.map_or(DEFAULT_LIST_BYTES, |Extension(ListBudget(bytes))| bytes);
    let queues = engine.queues().await?;
    let page = page(queues, &params, budget, |queue| queue.name.as_str())?;
    Ok(Json(QueueList {
        queues: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Pause a queue: it accepts jobs and dispatches none.
#[utoipa::path(
    post, path = "/v1/queues/{name}/pause", operation_id = "pause_queue", tag = "queues",
    params(("name" = String, Path)),
    responses((status = 200, body = QueueInfo), (status = 400, body = ErrorBody)))]
pub async fn pause(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<Json<QueueInfo>, ApiError> {
    check_name(&name)?;
    Ok(Json(engine.set_paused(&name, true).await?))
}

/// Resume a paused queue.
#[utoipa::path(
    post, path = "/v1/queues/{name}/resume", operation_id = "resume_queue", tag = "queues",
    params(("name" = String, Path)),
    responses((status = 200, body = QueueInfo), (status = 400, body = ErrorBody)))]
pub async fn resume(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<Json<QueueInfo>, ApiError> {
    check_name(&name)?;
    Ok(Json(engine.set_paused(&name, false).await?))
}

/// A queue name as jobs may use it: the same check as an enqueue's `queue`.
fn check_name(name: &str) -> Result<(), ApiError> {
    enqueue::check_name("name", name).map_err(|invalid| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", invalid.message).with_field("name")
    })
}
