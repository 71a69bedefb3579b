//! `POST /v1/search`: the caller's nearest chunks to a query, filtered by
//! key prefix, document ids and metadata (Bedrock's `RetrievalFilter` grammar).

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::state::Api;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use docpipe_shared::search;
use docpipe_shared::search::context::ContextRequest;
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
) -> Result<Json<SearchResponse>, ApiError> {
    let Json(request) = request?;
    let query = request.query.trim();
    if query.is_empty() {
        return Err(ApiError::bad_request("query must not be empty"));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "query is {} bytes; at most {MAX_QUERY_BYTES}",
            query.len()
        )));
    }
    if !(1..=MAX_TOP_K).contains(&request.top_k) {
        return Err(ApiError::bad_request(format!(
            "top_k must be 1 to {MAX_TOP_K}"
        )));
    }
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
        text: query,
        top_k: request.top_k,
        mode: request.mode,
        filter: &filter,
        context,
    };
    let hits = search::search(
        &api.db,
        api.search.embedder.as_ref(),
        &api.search.cost,
        &tenant,
        &query,
    )
    .await?;
    Ok(Json(SearchResponse { hits }))
}
