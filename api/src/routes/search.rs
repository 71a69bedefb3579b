//! `POST /v1/search`: the caller's nearest chunks to a query, filtered by
//! key prefix, document ids and metadata (Bedrock's `RetrievalFilter` grammar).

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::state::Api;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use docpipe_search as search;
use docpipe_search::context::ContextRequest;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Largest `top_k` a search may ask for.
pub const MAX_TOP_K: u32 = 100;
/// Longest search query, in bytes.
pub const MAX_QUERY_BYTES: usize = 8192;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchRequest {
    query: String,
    #[serde(default = "default_top_k")]
    top_k: u32,
    #[serde(default)]
    filter: search::FilterRequest,
    #[serde(default)]
    mode: search::SearchMode,
    context: Option<ContextRequest>,
    /// `false`: hits as the search ranks them, without the (paid) reranker.
    #[serde(default = "reranked")]
    rerank: bool,
}

fn reranked() -> bool {
    true
}

fn default_top_k() -> u32 {
    10
}

#[derive(Debug, Serialize)]
pub(super) struct SearchResponse {
    hits: Vec<search::SearchHit>,
}

pub(super) async fn search(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    request: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = request?;
    let filter = request
        .filter
        .scoped(&tenant)
        .map_err(ApiError::bad_request)?;
    let context = request
        .context
        .map(ContextRequest::checked)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let query = search::Query {
        text: &request.query,
        top_k: request.top_k,
        mode: request.mode,
        filter: &filter,
        context,
        rerank: request.rerank,
    };
    run(&api, &tenant, &query, ("query", "top_k"), |hits| {
        Json(SearchResponse { hits }).into_response()
    })
    .await
}

/// Runs `query` for `tenant` once its text and size are checked (the
/// problems named by the request's own field names, `names`); see [`execute`].
pub(super) async fn run(
    api: &Api,
    tenant: &str,
    query: &search::Query<'_>,
    (text_name, top_k_name): (&str, &str),
    answer: impl FnOnce(Vec<search::SearchHit>) -> Response,
) -> Result<Response, ApiError> {
    // Measured as sent: blanks cost reading too.
    if query.text.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "{text_name} is {} bytes; at most {MAX_QUERY_BYTES}",
            query.text.len()
        )));
    }
    if !(1..=MAX_TOP_K).contains(&query.top_k) {
        return Err(ApiError::bad_request(format!(
            "{top_k_name} must be 1 to {MAX_TOP_K}"
        )));
    }
    api.search(tenant, query, text_name, answer).await
}
