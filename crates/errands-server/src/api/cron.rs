//! `/v1/cron` routes: cron schedules.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use errands_core::cron::{CronEntry, CronSpec};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{JsonBody, QueryParams};
use super::jobs::{EnqueueResponse, ListBudget, DEFAULT_LIST_BYTES};
use super::paging::{page, PageParams};
use crate::engine::Engine;

/// A page of schedules.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CronList {
    /// Schedules by name, each with its next fire times.
    pub schedules: Vec<CronEntry>,
    /// Pass as `after` for the next page; null on the last.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!("cron schedule {name} not found"))
}

/// Cron schedules by name with their next fire times: at most `limit` (default 1000) and at
/// most the server's byte budget for a page; `next_cursor` continues.
#[utoipa::path(
    get, path = "/v1/cron", operation_id = "list_cron", tag = "cron",
    params(PageParams),
    responses((status = 200, body = CronList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(engine): State<Arc<Engine>>,
    budget: Option<Extension<ListBudget>>,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<Json<CronList>, ApiError> {
    let budget = budget.map_or(DEFAULT_LIST_BYTES, |Extension(ListBudget(bytes))| bytes);
    let schedules = engine.list_cron().await?;
    let page = page(schedules, &params, budget, |entry| entry.name.as_str())?;
    Ok(Json(CronList {
        schedules: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One cron schedule with its next fire times.
#[utoipa::path(
    get, path = "/v1/cron/{name}", operation_id = "get_cron", tag = "cron",
    params(("name" = String, Path)), responses(
    (status = 200, body = CronEntry), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<Json<CronEntry>, ApiError> {
    let entry = engine.get_cron(&name).await?;
    entry.map(Json).ok_or_else(|| unknown(&name))
}

/// Create or replace a cron schedule. Re-declaring one with the same timing keeps its next
/// fire time; leaving out `paused` keeps its paused state.
#[utoipa::path(
    put, path = "/v1/cron/{name}", operation_id = "put_cron", tag = "cron",
    params(("name" = String, Path)),
    request_body = CronSpec, responses(
    (status = 201, body = CronEntry, description = "created"),
    (status = 200, body = CronEntry, description = "replaced"),
    (status = 400, body = ErrorBody)))]
pub async fn put(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    JsonBody(spec): JsonBody<CronSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let (entry, created) = engine.put_cron(&name, spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry)))
}

/// Delete a cron schedule; jobs it already enqueued stay.
#[utoipa::path(
    delete, path = "/v1/cron/{name}", operation_id = "delete_cron", tag = "cron",
    params(("name" = String, Path)), responses(
    (status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if engine.delete_cron(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown(&name))
    }
}

/// Pause a cron schedule: it enqueues nothing until resumed.
#[utoipa::path(
    post, path = "/v1/cron/{name}/pause", operation_id = "pause_cron", tag = "cron",
    params(("name" = String, Path)),
    responses((status = 200, body = CronEntry), (status = 404, body = ErrorBody)))]
pub async fn pause(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<Json<CronEntry>, ApiError> {
    let entry = engine.set_cron_paused(&name, true).await?;
    entry.map(Json).ok_or_else(|| unknown(&name))
}

/// Resume a paused cron schedule from its next fire time after now (what passed while it was
/// paused is not run).
#[utoipa::path(
    post, path = "/v1/cron/{name}/resume", operation_id = "resume_cron", tag = "cron",
    params(("name" = String, Path)),
    responses((status = 200, body = CronEntry), (status = 404, body = ErrorBody)))]
pub async fn resume(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<Json<CronEntry>, ApiError> {
    let entry = engine.set_cron_paused(&name, false).await?;
    entry.map(Json).ok_or_else(|| unknown(&name))
}

/// Enqueue a cron schedule's job now, whatever its timing (paused or not).
#[utoipa::path(
    post, path = "/v1/cron/{name}/trigger", operation_id = "trigger_cron", tag = "cron",
    params(("name" = String, Path)),
    responses((status = 201, body = EnqueueResponse), (status = 404, body = ErrorBody)))]
pub async fn trigger(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let enqueued = engine
        .trigger_cron(&name)
        .await?
        .ok_or_else(|| unknown(&name))?;
    let response = EnqueueResponse::from(enqueued);
    let status = if response.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(response)))
}
