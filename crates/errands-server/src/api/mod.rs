//! The HTTP API: routes, extractors, errors and the OpenAPI document.

mod auth;
pub mod cron;
pub mod error;
pub mod events;
mod extract;
mod guard;
pub mod health;
pub mod jobs;
mod json_errors;
mod openapi;
pub mod paging;
pub mod queues;
pub mod workers;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Extension, Router};

use crate::engine::Engine;
use crate::worker;
pub use auth::Token;
pub use error::ApiError;
pub use extract::{parse_json, BodyRules};
pub use guard::{OriginError, Origins, MAX_HEADERS, MAX_HEADER_BYTES};
pub use jobs::ListBudget;
pub use openapi::ApiDoc;

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// What the routes enforce besides the token.
#[derive(Clone)]
pub struct ApiConfig {
    /// The bearer token, if one is required.
    pub token: Token,
    /// Which pages and host names may call the API.
    pub origins: Arc<Origins>,
    /// Body size and time limits of every route but the batch enqueue.
    pub body: BodyRules,
    /// Body size and time limits of `POST /v1/jobs/batch`.
    pub batch_body: BodyRules,
    /// Most bytes in one page of a listing (`GET /v1/jobs`, `/v1/queues`, `/v1/cron`,
    /// `/v1/workers`).
    pub list: ListBudget,
}

/// Every route: the API behind the origin check and the token (where one is configured),
/// and every error answered in JSON.
pub fn router(engine: Arc<Engine>, config: ApiConfig) -> Router {
    let protected = Router::new()
        .route("/v1/jobs", post(jobs::enqueue).get(jobs::list))
        .route(
            "/v1/jobs/batch",
            post(jobs::enqueue_batch).layer(Extension(config.batch_body)),
        )
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{name}/pause", post(queues::pause))
        .route("/v1/queues/{name}/resume", post(queues::resume))
        .route("/v1/cron", get(cron::list))
        .route(
            "/v1/cron/{name}",
            get(cron::get).put(cron::put).delete(cron::delete),
        )
        .route("/v1/cron/{name}/pause", post(cron::pause))
        .route("/v1/cron/{name}/resume", post(cron::resume))
        .route("/v1/cron/{name}/trigger", post(cron::trigger))
        .route("/v1/worker", get(worker::upgrade))
        .route("/v1/events", get(events::events))
        .route("/v1/workers", get(workers::list))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            config.token,
            auth::require_token,
        ))
        // Outside the token check: a forged request is refused before its token is looked at.
        .layer(middleware::from_fn_with_state(config.origins, guard::check));
    Router::new()
        .route("/healthz", get(health::healthz))
        // The dashboard's shell holds no data: public, so it can ask for the token.
        .route("/", get(crate::dashboard::index))
        .route("/assets/{file}", get(crate::dashboard::asset))
        .merge(protected)
        .layer(Extension(config.body))
        .layer(Extension(config.list))
        // For axum's own body extractors, should a route use one; ours read BodyRules.
        .layer(DefaultBodyLimit::max(config.body.max_bytes))
        .layer(middleware::from_fn(json_errors::json_errors))
        .with_state(engine)
}
