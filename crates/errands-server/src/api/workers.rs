//! `GET /v1/workers`: who is connected and what they hold.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::engine::{Engine, WorkerInfo};

/// Connected workers.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerList {
    /// Oldest connection first.
    pub workers: Vec<WorkerInfo>,
}

/// Every connected worker, on every node: name, host, pid, SDK, queues, capacity, running
/// jobs, times, and the node it is connected to.
#[utoipa::path(
    get, path = "/v1/workers", operation_id = "list_workers", tag = "workers",
    responses((status = 200, body = WorkerList)))]
pub async fn list(State(engine): State<Arc<Engine>>) -> Result<Json<WorkerList>, ApiError> {
    Ok(Json(WorkerList {
        workers: engine.all_workers().await?,
    }))
}
