//! A mock of Cohere's `POST /v2/rerank` (the contract Jina, Voyage and TEI
//! also serve): each document's relevance is the share of the query's
//! distinct words it holds, so tests know the order to expect. Fault knobs
//! as for the other mocks.

use crate::faults::{Fault, FaultInjector, FaultKnobs};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Cohere's limit of documents per request.
pub const MAX_DOCUMENTS: usize = 1000;

pub struct MockRerank {
    /// If set, the only key accepted.
    api_key: Option<String>,
    pub faults: FaultInjector,
    requests: AtomicU64,
}

#[derive(Deserialize)]
struct RerankRequest {
    model: String,
    query: String,
    documents: Vec<String>,
    top_n: Option<usize>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "message": message.into() }))).into_response()
}

fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The share of `query`'s distinct words that `document` holds: the mock
/// rerankers' relevance, so tests know the order to expect.
pub fn relevance(query: &str, document: &str) -> f64 {
    let query = words(query);
    words(document).intersection(&query).count() as f64 / query.len().max(1) as f64
}

impl MockRerank {
    pub fn new(api_key: Option<String>, knobs: FaultKnobs) -> Arc<MockRerank> {
        Arc::new(MockRerank {
            api_key,
            faults: FaultInjector::new(knobs),
            requests: AtomicU64::new(0),
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v2/rerank", post(rerank))
            .route("/mock/stats", get(stats))
            .route("/health", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Requests received, faults included.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

async fn stats(State(mock): State<Arc<MockRerank>>) -> Json<Value> {
    Json(json!({ "requests": mock.requests(), "faults": mock.faults.injected() }))
}

async fn rerank(State(mock): State<Arc<MockRerank>>, headers: HeaderMap, body: String) -> Response {
    mock.requests.fetch_add(1, Ordering::Relaxed);
    match mock.faults.next().await {
        Some(Fault::ServerError) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "service unavailable");
        }
        Some(Fault::RateLimited) => {
            let secs = mock.faults.knobs().retry_after_secs.max(1);
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
            return response;
        }
        Some(Fault::Malformed) => return (StatusCode::OK, "{\"results\": [").into_response(),
        _ => {}
    }
    if !crate::bearer_authorised(&headers, mock.api_key.as_deref()) {
        return error(StatusCode::UNAUTHORIZED, "invalid api token");
    }
    let request: RerankRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
    };
    if request.model.is_empty() || request.documents.is_empty() {
        return error(StatusCode::BAD_REQUEST, "model and documents are required");
    }
    if request.documents.len() > MAX_DOCUMENTS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("too many documents: at most {MAX_DOCUMENTS}"),
        );
    }
    let mut scored: Vec<(usize, f64)> = request
        .documents
        .iter()
        .map(|document| relevance(&request.query, document))
        .enumerate()
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(request.top_n.unwrap_or(scored.len()));
    let results: Vec<Value> = scored
        .iter()
        .map(|(index, score)| json!({"index": index, "relevance_score": score}))
        .collect();
    Json(json!({
        "id": format!("mock-{}", mock.requests()),
        "results": results,
        "meta": {"billed_units": {"search_units": 1}},
    }))
    .into_response()
}
