//! `GET /v1/workers`: who is connected and what they hold.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::jobs::{ListBudget, DEFAULT_LIST_BYTES};
use super::paging::{page, PageParams};
use crate::engine::{Engine, WorkerInfo};

/// A page of connected workers.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerList {
    /// By id, which is time-ordered: oldest connection first.
    pub workers: Vec<WorkerInfo>,
    /// Pass as `after` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Connected workers, on every node, by id: name, host, pid, SDK, queues, capacity, running
/// jobs, times, and the node it is connected to. At most `limit` (default 1000) and at most
/// the server's byte budget for a page; `next_cursor` continues.
#[utoipa::path(
    get, path = "/v1/workers", operation_id = "list_workers", tag = "workers",
    params(PageParams),
    responses((status = 200, body = WorkerList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(engine): State<Arc<Engine>>,
    budget: Option<Extension<ListBudget>>,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<Json<WorkerList>, ApiError> {
    let budget = budget.map_or(DEFAULT_LIST_BYTES, |Extension(ListBudget(bytes))| bytes);
    let workers = engine.all_workers().await?;
    let page = page(workers, &params, budget, |worker| worker.id.as_str())?;
    Ok(Json(WorkerList {
        workers: page.items,
        next_cursor: page.next_cursor,
    }))
}
