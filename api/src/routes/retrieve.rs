//! `POST /v1/retrieve`: search in the request and response shapes of Amazon
//! Bedrock Agent Runtime's `Retrieve`, so code written against a Bedrock
//! knowledge base can point at docpipe. What Bedrock offers and docpipe does
//! not (paging, reranking and implicit-filter configurations, guardrails) is
//! refused by name rather than ignored.

use super::search::run;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::state::Api;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::response::{IntoResponse, Response};
use docpipe_core::domain::metadata::Attributes;
use docpipe_search::filter::Condition;
use docpipe_search::{self as search, SearchFilter, SearchHit, SearchMode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// Bedrock's default `numberOfResults`.
const DEFAULT_RESULTS: u32 = 5;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RetrieveRequest {
    retrieval_query: RetrievalQuery,
    #[serde(default)]
    retrieval_configuration: RetrievalConfiguration,
    /// Bedrock's paging token: docpipe answers in one page.
    next_token: Option<Value>,
    /// Bedrock's guardrails: not offered.
    guardrail_configuration: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetrievalQuery {
    text: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetrievalConfiguration {
    #[serde(default)]
    vector_search_configuration: VectorSearchConfiguration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VectorSearchConfiguration {
    number_of_results: Option<u32>,
    override_search_type: Option<SearchType>,
    filter: Option<Value>,
    reranking_configuration: Option<Value>,
    implicit_filter_configuration: Option<Value>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum SearchType {
    Hybrid,
    Semantic,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RetrieveResponse {
    retrieval_results: Vec<Value>,
}

const CONFIGURATION: &str = "retrievalConfiguration.vectorSearchConfiguration";

pub(super) async fn retrieve(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    request: Result<Json<RetrieveRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = request?;
    let configuration = request.retrieval_configuration.vector_search_configuration;
    for (given, name) in [
        (
            request.next_token.is_some(),
            "nextToken: docpipe answers in one page; leave it out",
        ),
        (
            request.guardrail_configuration.is_some(),
            "guardrailConfiguration is not supported",
        ),
        (
            configuration.reranking_configuration.is_some(),
            "rerankingConfiguration is not supported",
        ),
        (
            configuration.implicit_filter_configuration.is_some(),
            "implicitFilterConfiguration is not supported",
        ),
    ] {
        if given {
            return Err(ApiError::bad_request(name));
        }
    }
    let path = format!("{CONFIGURATION}.filter");
    let metadata = configuration
        .filter
        .map(|filter| Condition::parse(&filter, &path))
        .transpose()
        .map_err(ApiError::bad_request)?;
    let filter = SearchFilter {
        metadata,
        ..SearchFilter::default()
    };
    let query = search::Query {
        text: &request.retrieval_query.text,
        top_k: configuration.number_of_results.unwrap_or(DEFAULT_RESULTS),
        mode: match configuration.override_search_type {
            Some(SearchType::Semantic) => SearchMode::Vector,
            Some(SearchType::Hybrid) | None => SearchMode::Hybrid,
        },
        filter: &filter,
        context: None,
        rerank: true,
    };
    let names = (
        "retrievalQuery.text",
        &*format!("{CONFIGURATION}.numberOfResults"),
    );
    let bucket = &api.presigner.bucket;
    run(&api, &tenant, &query, names, |hits| {
        Json(RetrieveResponse {
            retrieval_results: hits.iter().map(|hit| result(bucket, hit)).collect(),
        })
        .into_response()
    })
    .await
}

/// A hit as one of Bedrock's `retrievalResults`: its text, its object's S3
/// URI, its attributes with the ones Bedrock sets itself, its score.
fn result(bucket: &str, hit: &SearchHit) -> Value {
    let uri = format!("s3://{bucket}/{}", hit.source_key);
    let mut metadata: Attributes = hit.metadata.clone();
    metadata.insert("x-amz-bedrock-kb-source-uri".into(), json!(uri));
    metadata.insert(
        "x-amz-bedrock-kb-chunk-id".into(),
        json!(format!("{}:{}", hit.document_id, hit.chunk_index)),
    );
    if let Some(page) = hit.page_start {
        metadata.insert("x-amz-bedrock-kb-document-page-number".into(), json!(page));
    }
    json!({
        "content": {"type": "TEXT", "text": hit.text},
        "location": {"type": "S3", "s3Location": {"uri": uri}},
        "metadata": metadata,
        "score": hit.score,
    })
}
