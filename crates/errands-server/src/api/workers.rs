//! `GET /v1/workers`: who is connected and what they hold.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::{Engine, WorkerInfo};

/// Connected workers.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerList {
    /// Oldest connection first.
    pub workers: Vec<WorkerInfo>,
}

/// Every connected worker: name, host, pid, SDK, queues, capacity, running jobs, times.
#[utoipa::path(get, path = "/v1/workers", responses((status = 200, body = WorkerList)))]
pub async fn list(State(engine): State<Arc<Engine>>) -> Json<WorkerList> {
    Json(WorkerList {
        workers: engine.workers().list(),
    })
}
