//! `/v1/jobs` routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use errands_core::{EnqueueRequest, Job, JobId, JobState};
use errands_store::{Enqueued, JobFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{JobPath, JsonBody, OptionalJsonBody, QueryParams};
use crate::engine::Engine;

/// Most jobs in one batch request.
pub const MAX_BATCH: usize = 10_000;

/// One enqueued job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnqueueResponse {
    /// The job's id (the existing job's, when a unique key matched).
    #[schema(value_type = String)]
    pub id: JobId,
    /// Its state.
    pub state: JobState,
    /// False when a unique key matched an existing job.
    pub created: bool,
}

impl From<Enqueued> for EnqueueResponse {
    fn from(e: Enqueued) -> Self {
        Self {
            id: e.id,
            state: e.state,
            created: e.created,
        }
    }
}

/// Many jobs to enqueue in one transaction.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The jobs.
    pub jobs: Vec<EnqueueRequest>,
}

/// The outcome of a batch, in request order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// One entry per requested job.
    pub jobs: Vec<EnqueueResponse>,
}

/// Filters and paging for the job list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs with this tag.
    pub tag: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The jobs, newest first.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(value_type = Option<String>)]
    pub next_cursor: Option<JobId>,
}

/// Options for a retry.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Reset the attempt count (default true); false allows one more attempt.
    pub reset_attempts: Option<bool>,
}

/// Enqueue one job.
#[utoipa::path(post, path = "/v1/jobs", request_body = EnqueueRequest, responses(
    (status = 201, body = EnqueueResponse, description = "stored"),
    (status = 200, body = EnqueueResponse, description = "a unique key matched an existing job"),
    (status = 400, body = ErrorBody)))]
pub async fn enqueue(
    State(engine): State<Arc<Engine>>,
    JsonBody(request): JsonBody<EnqueueRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let stored = engine.enqueue(vec![request], false).await?;
    let response = EnqueueResponse::from(stored.into_iter().next().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "store returned no job",
        )
    })?);
    let status = if response.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(response)))
}

/// Enqueue many jobs in one transaction: all or none.
#[utoipa::path(post, path = "/v1/jobs/batch", request_body = BatchRequest, responses(
    (status = 201, body = BatchResponse), (status = 400, body = ErrorBody)))]
pub async fn enqueue_batch(
    State(engine): State<Arc<Engine>>,
    JsonBody(batch): JsonBody<BatchRequest>,
) -> Result<impl IntoResponse, ApiError> {
    if batch.jobs.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("at most {MAX_BATCH} jobs per batch"),
        )
        .with_field("jobs"));
    }
    let stored = engine.enqueue(batch.jobs, true).await?;
    let jobs = stored.into_iter().map(EnqueueResponse::from).collect();
    Ok((StatusCode::CREATED, Json(BatchResponse { jobs })))
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", params(("id" = String, Path)), responses(
    (status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(engine): State<Arc<Engine>>,
    JobPath(id): JobPath,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(engine.get(id).await?))
}

/// List jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", params(ListParams), responses(
    (status = 200, body = JobList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(engine): State<Arc<Engine>>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<JobList>, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "limit must be between 1 and 1000",
        )
        .with_field("limit"));
    }
    let before = params
        .cursor
        .map(|cursor| {
            cursor.parse::<JobId>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    "cursor is not a job id",
                )
                .with_field("cursor")
            })
        })
        .transpose()?;
    let filter = JobFilter {
        queue: params.queue,
        state: params.state,
        kind: params.kind,
        tag: params.tag,
        before,
        limit,
    };
    let page = engine.list(filter).await?;
    Ok(Json(JobList {
        jobs: page.jobs,
        next_cursor: page.next,
    }))
}

/// Cancel a job; a running job's worker is told to abort.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", params(("id" = String, Path)), responses(
    (status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(engine): State<Arc<Engine>>,
    JobPath(id): JobPath,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(engine.cancel(id).await?))
}

/// Put a dead, cancelled or completed job back in its queue.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", params(("id" = String, Path)),
    request_body(content = Option<RetryRequest>), responses(
    (status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry(
    State(engine): State<Arc<Engine>>,
    JobPath(id): JobPath,
    OptionalJsonBody(request): OptionalJsonBody<RetryRequest>,
) -> Result<Json<Job>, ApiError> {
    let reset = request.reset_attempts.unwrap_or(true);
    Ok(Json(engine.retry(id, reset).await?))
}

/// Delete a job that is not running.
#[utoipa::path(delete, path = "/v1/jobs/{id}", params(("id" = String, Path)), responses(
    (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(engine): State<Arc<Engine>>,
    JobPath(id): JobPath,
) -> Result<StatusCode, ApiError> {
    engine.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
