//! Health, readiness and metrics for probes and Prometheus.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ErrorBody};
use crate::engine::Engine;

/// How long the store may take to answer a readiness probe.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "operations", security(()),
    responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: within two seconds the store answers a read and accepts a write (this node's
/// heartbeat), so a store that reads but cannot write (a full disk) is not ready.
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses(
    (status = 200, description = "ready"),
    (status = 503, body = ErrorBody,
        description = "the store does not answer or refuses writes")))]
pub async fn readyz(State(engine): State<Arc<Engine>>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, engine.ready()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(error)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("store failed: {error}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "store did not answer within 2 s",
        )),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(engine): State<Arc<Engine>>) -> Result<impl IntoResponse, ApiError> {
    let text = engine.metrics_text().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}
