//! `/v1/jobs` routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
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
#[into_params(parameter_in = Query)]
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
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
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
#[utoipa::path(
    post, path = "/v1/jobs", operation_id = "enqueue_job", tag = "jobs",
    request_body = EnqueueRequest, responses(
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
#[utoipa::path(
    post, path = "/v1/jobs/batch", operation_id = "enqueue_jobs", tag = "jobs",
    request_body = BatchRequest, responses(
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
#[utoipa::path(
    get, path = "/v1/jobs/{id}", operation_id = "get_job", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "The job's id.")), responses(
    (status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(engine): State<Arc<Engine>>,
    JobPath(id): JobPath,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(engine.get(id).await?))
}

/// Most jobs in one page of `GET /v1/jobs`.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Most jobs read from the store at once while a page is built: a page is read in chunks so
/// that jobs with large args are not all held at once before the byte budget cuts the page.
const LIST_CHUNK: usize = 100;

/// Most bytes in one page of a listing (`GET /v1/jobs`, `/v1/queues`, `/v1/cron`,
/// `/v1/workers`), as a request extension. A page that would be longer ends early, with a
/// `next_cursor` where it stopped: nothing is skipped.
#[derive(Clone, Copy, Debug)]
pub struct ListBudget(pub usize);

/// List jobs, newest first. A page holds at most `limit` jobs and at most the server's byte
/// budget for a page (8 MiB by default); either way `next_cursor` continues it.
#[utoipa::path(
    get, path = "/v1/jobs", operation_id = "list_jobs", tag = "jobs",
    params(ListParams), responses(
    (status = 200, body = JobList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(engine): State<Arc<Engine>>,
    budget: Option<Extension<ListBudget>>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("limit must be between 1 and {MAX_LIST_LIMIT}"),
        )
        .with_field("limit"));
    }
    let before = params.cursor.as_deref().map(parse_cursor).transpose()?;
    let mut filter = JobFilter {
        queue: params.queue,
        state: params.state,
        kind: params.kind,
        tag: params.tag,
        before,
        limit,
    };
    let budget = budget.map_or(DEFAULT_LIST_BYTES, |Extension(ListBudget(bytes))| bytes);
    let mut page = PageWriter::new(budget);
    loop {
        filter.limit = (limit - page.count).min(page.chunk_hint(LIST_CHUNK));
        let chunk = engine.list(filter.clone()).await?;
        for job in &chunk.jobs {
            if !page.push(job)? {
                let last = page.last;
                return Ok(page.finish(last));
            }
        }
        match chunk.next {
            Some(next) if page.count < limit => filter.before = Some(next),
            next => return Ok(page.finish(next)),
        }
    }
}

/// The default of [`ListBudget`].
pub const DEFAULT_LIST_BYTES: usize = 8 << 20;

fn parse_cursor(cursor: &str) -> Result<JobId, ApiError> {
    cursor.parse::<JobId>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "cursor is not a job id",
        )
        .with_field("cursor")
    })
}

/// A [`JobList`] written job by job, stopping before the byte budget is passed (though a
/// page always holds its first job, however large, so that listing makes progress).
struct PageWriter {
    out: Vec<u8>,
    budget: usize,
    count: usize,
    largest: usize,
    last: Option<JobId>,
}

impl PageWriter {
    fn new(budget: usize) -> Self {
        let mut out = Vec::with_capacity(budget.min(64 << 10));
        out.extend_from_slice(b"{\"jobs\":[");
        Self {
            out,
            budget,
            count: 0,
            largest: 0,
            last: None,
        }
    }

    /// How many jobs to read next: `chunk`, or fewer once jobs are large enough that
    /// `chunk` of them would pass what is left of the budget.
    fn chunk_hint(&self, chunk: usize) -> usize {
        let left = self.budget.saturating_sub(self.out.len());
        match self.largest {
            0 => chunk,
            largest => (left / largest).clamp(1, chunk),
        }
    }

    /// Adds `job`; false (and nothing added) when it would pass the budget.
    fn push(&mut self, job: &Job) -> Result<bool, ApiError> {
        let bytes = serde_json::to_vec(job).map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("could not serialise job {}: {error}", job.id),
            )
        })?;
        if self.count > 0 && self.out.len() + bytes.len() + 1 > self.budget {
            return Ok(false);
        }
        if self.count > 0 {
            self.out.push(b',');
        }
        self.out.extend_from_slice(&bytes);
        self.count += 1;
        self.largest = self.largest.max(bytes.len());
        self.last = Some(job.id);
        Ok(true)
    }

    fn finish(mut self, next: Option<JobId>) -> Response {
        self.out.extend_from_slice(b"],\"next_cursor\":");
        // An id or null: neither fails to serialise.
        let next = serde_json::to_vec(&next).unwrap_or_else(|_| b"null".to_vec());
        self.out.extend_from_slice(&next);
        self.out.push(b'}');
        ([(CONTENT_TYPE, "application/json")], self.out).into_response()
    }
}

/// Cancel a job; a running job's worker is told to abort.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", operation_id = "cancel_job", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "The job's id.")), responses(
    (status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(engine): State<Arc<Engine>>,
    JobPath(id): JobPath,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(engine.cancel(id).await?))
}

/// Put a dead, cancelled or completed job back in its queue.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/retry", operation_id = "retry_job", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "The job's id.")),
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
#[utoipa::path(
    delete, path = "/v1/jobs/{id}", operation_id = "delete_job", tag = "jobs",
    params(("id" = uuid::Uuid, Path, description = "The job's id.")), responses(
    (status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(engine): State<Arc<Engine>>,
    JobPath(id): JobPath,
) -> Result<StatusCode, ApiError> {
    engine.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
