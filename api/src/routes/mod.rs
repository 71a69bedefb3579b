//! Every route, one file per resource, and the router that serves them.

mod aws_errors;
mod documents;
mod health;
mod ingestion_jobs;
mod jobs;
mod metrics;
mod retrieve;
mod search;
mod syncs;
mod uploads;

pub use jobs::MAX_PAGE;
pub use search::{MAX_QUERY_BYTES, MAX_TOP_K};

use crate::bedrock::MAX_BODY_BYTES as MAX_BEDROCK_BODY_BYTES;
use crate::error::ApiError;
use crate::state::Api;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::{Arc, LazyLock};

/// Largest request body any route reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest request target (path and query) answered; past it 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most headers, and header bytes, a request may carry; past them 431.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The OpenAPI document of every route, served at `/v1/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../../openapi.yaml");

const DASHBOARD: &str = include_str!("../../dashboard.html");

/// What an answer of the API may load in a browser: nothing, and no page
/// may frame it.
const API_POLICY: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The dashboard's policy: its own script and style (by their hashes), calls
/// to this API, and nothing else: it holds an API key.
static DASHBOARD_POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = |open: &str, close: &str| {
        let start = DASHBOARD.find(open).expect("the dashboard has it") + open.len();
        let end = start + DASHBOARD[start..].find(close).expect("closed");
        let digest = Sha256::digest(&DASHBOARD.as_bytes()[start..end]);
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        hash("<script>", "</script>"),
        hash("<style>", "</style>")
    )
});

async fn dashboard() -> impl IntoResponse {
    (
        [(header::CONTENT_SECURITY_POLICY, DASHBOARD_POLICY.as_str())],
        Html(DASHBOARD),
    )
}

/// What every answer tells the browser: do not sniff its type, frame it or
/// keep it (answers hold a tenant's data; the dashboard, its key).
async fn browser_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(API_POLICY));
    response
}

/// Refuses a request whose target or headers are past the limits, with the
/// error JSON, before anything reads them.
async fn head_limits(request: Request, next: Next) -> Response {
    let uri = request.uri().to_string().len();
    if uri > MAX_URI_BYTES {
        let message = format!("the request target is {uri} bytes; at most {MAX_URI_BYTES}");
        return ApiError::new(StatusCode::URI_TOO_LONG, "uri_too_long", message).into_response();
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        let message = format!(
            "{} headers of {bytes} bytes; at most {MAX_HEADERS} of {MAX_HEADER_BYTES}",
            headers.len()
        );
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            message,
        )
        .into_response();
    }
    next.run(request).await
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(dashboard))
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
        .route("/v1/syncs", post(syncs::start).get(syncs::list))
        .route("/v1/syncs/{id}", get(syncs::one))
        .merge(bedrock_routes(&api))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|method: Method| async move {
            let message = format!("{method} is not served here");
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                message,
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(head_limits))
        .layer(axum::middleware::from_fn(aws_errors::aws_errors))
        .layer(axum::middleware::map_response(browser_headers))
        .with_state(api)
}

/// Bedrock's routes (its SDKs' `Retrieve` and ingestion jobs, and
/// `/v1/retrieve`): bodies up to [`MAX_BEDROCK_BODY_BYTES`], SigV4
/// verified, errors in AWS's shape ([`aws_errors`]).
fn bedrock_routes(api: &Arc<Api>) -> Router<Arc<Api>> {
    const JOBS: &str =
        "/knowledgebases/{knowledge_base_id}/datasources/{data_source_id}/ingestionjobs/";
    Router::new()
        .route(
            "/knowledgebases/{knowledge_base_id}/retrieve",
            post(retrieve::knowledge_base),
        )
        .route("/v1/retrieve", post(retrieve::whole_folder))
        .route(JOBS, put(ingestion_jobs::start).post(ingestion_jobs::list))
        .route(
            &format!("{JOBS}{{ingestion_job_id}}"),
            get(ingestion_jobs::one),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(api),
            crate::auth::signed,
        ))
        .layer(DefaultBodyLimit::max(MAX_BEDROCK_BODY_BYTES))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI)
}
