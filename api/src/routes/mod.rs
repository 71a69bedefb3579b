//! Every route, one file per resource, and the router that serves them.

mod documents;
mod health;
mod jobs;
mod metrics;
mod retrieve;
mod search;
mod uploads;

pub use jobs::MAX_PAGE;
pub use search::{MAX_QUERY_BYTES, MAX_TOP_K};

use crate::error::ApiError;
use crate::state::Api;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use std::sync::Arc;

/// Largest request body any route reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI document of every route, served at `/v1/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../../openapi.yaml");

const DASHBOARD: &str = include_str!("../../dashboard.html");

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(DASHBOARD) }))
        .route("/v1/openapi.yaml", get(openapi))
        .route("/v1/health", get(health::report))
        .route("/v1/uploads", post(uploads::create))
        .route("/v1/metrics", get(metrics::report))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::one))
        .route(
            "/v1/documents/{id}",
            get(documents::one).delete(documents::delete),
        )
        .route("/v1/documents/{id}/reprocess", post(documents::reprocess))
        .route("/v1/search", post(search::search))
        .route("/v1/retrieve", post(retrieve::retrieve))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI)
}
