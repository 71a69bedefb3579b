//! `POST /v1/search`: the caller's nearest chunks to a query.

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::state::Api;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use docpipe_shared::domain::keys::Tenant as TenantName;
use docpipe_shared::search;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// Largest `top_k` a search may ask for.
pub const MAX_TOP_K: u32 = 100;
/// Longest search query, in bytes.
pub const MAX_QUERY_BYTES: usize = 8192;
/// Most document ids one search may name.
pub const MAX_FILTER_IDS: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchRequest {
    query: String,
    #[serde(default = "default_top_k")]
    top_k: u32,
    #[serde(default)]
    filter: SearchFilterRequest,
}

fn default_top_k() -> u32 {
    10
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchFilterRequest {
    /// A folder or name prefix under the caller's folder (`reports/2026/`).
    key_prefix: Option<String>,
    document_ids: Option<Vec<Uuid>>,
}

impl SearchFilterRequest {
    /// The filter in the caller's folder: a prefix can never reach another tenant's keys.
    fn scoped(self, tenant: &TenantName) -> Result<search::SearchFilter, ApiError> {
        if let Some(ids) = &self.document_ids
            && !(1..=MAX_FILTER_IDS).contains(&ids.len())
        {
            return Err(ApiError::bad_request(format!(
                "filter.document_ids must name 1 to {MAX_FILTER_IDS} documents"
            )));
        }
        if let Some(prefix) = &self.key_prefix
            && prefix.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request(
                "filter.key_prefix must not contain control characters (NUL, newlines…)",
            ));
        }
        Ok(search::SearchFilter {
            key_prefix: self.key_prefix.map(|prefix| tenant.upload_path(&prefix)),
            document_ids: self.document_ids,
        })
    }
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
    let filter = request.filter.scoped(&tenant)?;
    let hits = search::search(
        &api.db,
        api.search.embedder.as_ref(),
        &api.search.cost,
        &tenant,
        query,
        request.top_k,
        &filter,
    )
    .await?;
    Ok(Json(SearchResponse { hits }))
}
