//! Bedrock Agent Runtime's `Retrieve`, in its request and response shapes
//! (botocore's `bedrock-agent-runtime` service model), at the SDKs' own
//! route `POST /knowledgebases/{knowledgeBaseId}/retrieve` and at
//! `POST /v1/retrieve` (the caller's whole folder). Every field the model
//! allows is honoured or refused by name.

use crate::auth::Tenant;
use crate::bedrock::{KnowledgeBase, knowledge_bases, paging};
use crate::error::ApiError;
use crate::state::Api;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use docpipe_core::domain::metadata::Attributes;
use docpipe_search::filter::Condition;
use docpipe_search::{self as search, Location, SearchFilter, SearchHit, SearchMode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::SystemTime;

/// Bedrock's default `numberOfResults`.
const DEFAULT_RESULTS: u32 = 5;
/// Bedrock's most `numberOfResults` (and `numberOfRerankedResults`).
pub const MAX_RESULTS: u32 = 100;
/// Bedrock's longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 20_000;
/// The deepest result paging reaches: past it no `nextToken` is given,
/// so 100 pages of 100 cost at most 10 searches of growing depth.
pub const MAX_DEPTH: u32 = 1_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RetrieveRequest {
    retrieval_query: RetrievalQuery,
    #[serde(default)]
    retrieval_configuration: RetrievalConfiguration,
    next_token: Option<String>,
    guardrail_configuration: Option<Value>,
    /// Who the search is for, in the caller's terms: accepted, and no part
    /// of docpipe's search.
    #[serde(rename = "userContext")]
    _user_context: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetrievalQuery {
    #[serde(default)]
    text: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    image: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetrievalConfiguration {
    vector_search_configuration: Option<SearchConfiguration>,
    managed_search_configuration: Option<SearchConfiguration>,
}

/// `vectorSearchConfiguration` and `managedSearchConfiguration` (whose
/// `rerankingModelType` and lack of `overrideSearchType` set it apart).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SearchConfiguration {
    number_of_results: Option<u32>,
    override_search_type: Option<SearchType>,
    filter: Option<Value>,
    reranking_configuration: Option<RerankingConfiguration>,
    reranking_model_type: Option<String>,
    implicit_filter_configuration: Option<Value>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum SearchType {
    Hybrid,
    Semantic,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RerankingConfiguration {
    #[serde(rename = "type")]
    kind: String,
    bedrock_reranking_configuration: Option<BedrockReranking>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BedrockReranking {
    model_configuration: ModelConfiguration,
    number_of_reranked_results: Option<u32>,
    metadata_configuration: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ModelConfiguration {
    model_arn: String,
    additional_model_request_fields: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RetrieveResponse {
    retrieval_results: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// `POST /knowledgebases/{knowledgeBaseId}/retrieve`.
pub(super) async fn knowledge_base(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Tenant(tenant): Tenant,
    request: Result<Json<RetrieveRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let bedrock = &api.bedrock;
    let base = bedrock
        .knowledge_bases
        .of(&tenant, &id)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("knowledge base {id} is not found"),
            )
        })?;
    retrieve(&api, &tenant, &id, &base, request?.0).await
}

/// `POST /v1/retrieve`: the caller's whole folder as one knowledge base.
pub(super) async fn whole_folder(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    request: Result<Json<RetrieveRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let base = KnowledgeBase {
        data_source_id: knowledge_bases::data_source_id(&tenant),
        tenant: tenant.to_string(),
        prefix: None,
    };
    retrieve(&api, &tenant, "", &base, request?.0).await
}

const VECTOR: &str = "retrievalConfiguration.vectorSearchConfiguration";
const MANAGED: &str = "retrievalConfiguration.managedSearchConfiguration";

fn refuse(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

async fn retrieve(
    api: &Api,
    tenant: &docpipe_core::domain::keys::Tenant,
    id: &str,
    base: &KnowledgeBase,
    request: RetrieveRequest,
) -> Result<Response, ApiError> {
    if request.guardrail_configuration.is_some() {
        return Err(refuse(
            "guardrailConfiguration is not supported: docpipe has no guardrails",
        ));
    }
    let query = &request.retrieval_query;
    if query.image.is_some() || query.kind.as_deref().is_some_and(|kind| kind != "TEXT") {
        return Err(refuse(
            "retrievalQuery: only TEXT queries are supported (no image search)",
        ));
    }
    let text = query.text.as_deref().unwrap_or_default();
    let chars = text.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(refuse(format!(
            "retrievalQuery.text is {chars} characters; at most {MAX_QUERY_CHARS}"
        )));
    }
    let configuration = &request.retrieval_configuration;
    let (settings, path) = match (
        &configuration.vector_search_configuration,
        &configuration.managed_search_configuration,
    ) {
        (Some(_), Some(_)) => {
            return Err(refuse(
                "give vectorSearchConfiguration or managedSearchConfiguration, not both",
            ));
        }
        (None, Some(managed)) => (managed, MANAGED),
        (Some(vector), None) => (vector, VECTOR),
        (None, None) => (&SearchConfiguration::default(), VECTOR),
    };
    if settings.implicit_filter_configuration.is_some() {
        return Err(refuse(format!(
            "{path}.implicitFilterConfiguration is not supported"
        )));
    }
    let results = settings.number_of_results.unwrap_or(DEFAULT_RESULTS);
    if !(1..=MAX_RESULTS).contains(&results) {
        return Err(refuse(format!(
            "{path}.numberOfResults must be 1 to {MAX_RESULTS}"
        )));
    }
    let (rerank, page_size) = reranking(api, settings, path, results)?;
    let metadata = settings
        .filter
        .as_ref()
        .map(|filter| Condition::parse(filter, &format!("{path}.filter")))
        .transpose()
        .map_err(ApiError::bad_request)?;
    let bucket = &api.presigner.bucket;
    let location = Location {
        source_uri_prefix: format!("s3://{bucket}/"),
        data_source_id: base.data_source_id.clone(),
    };
    let filter = SearchFilter {
        key_prefix: Some(tenant.upload_path(base.prefix.as_deref().unwrap_or(""))),
        metadata,
        location: Some(location.clone()),
        ..SearchFilter::default()
    };
    // A page continues the request it was given for, and no other.
    let binding = binding(tenant, id, text, &fingerprint(configuration));
    let now = SystemTime::now();
    let offset = api
        .bedrock
        .page_tokens
        .offset(request.next_token.as_deref(), &binding, now)
        .ok_or_else(|| refuse(paging::REFUSED))?;
    let depth = page_depth(offset, page_size);
    let query = search::Query {
        text,
        top_k: depth,
        mode: match settings.override_search_type {
            Some(SearchType::Semantic) => SearchMode::Vector,
            Some(SearchType::Hybrid) | None => SearchMode::Hybrid,
        },
        filter: &filter,
        context: None,
        rerank,
    };
    api.search(tenant, &query, "retrievalQuery.text", |hits| {
        let next_token = next_offset(depth, hits.len())
            .map(|next| api.bedrock.page_tokens.issue(&binding, next, now));
        let page = hits.iter().skip(offset as usize);
        Json(RetrieveResponse {
            retrieval_results: page.map(|hit| result(&location, hit)).collect(),
            next_token,
        })
        .into_response()
    })
    .await
}

/// How deep the page at `offset` reads: its last result, never past
/// [`MAX_DEPTH`].
fn page_depth(offset: u32, page_size: u32) -> u32 {
    offset.saturating_add(page_size).min(MAX_DEPTH)
}

/// The next page's offset, if there may be one: this page was full and
/// paging has not reached [`MAX_DEPTH`].
fn next_offset(depth: u32, found: usize) -> Option<u32> {
    (found == depth as usize && depth < MAX_DEPTH).then_some(depth)
}

/// Whether the hits are reranked, and how many a page returns.
/// `rerankingConfiguration` asks for the deployment's reranker, by its
/// model; `managedSearchConfiguration`'s `rerankingModelType` too.
fn reranking(
    api: &Api,
    settings: &SearchConfiguration,
    path: &str,
    results: u32,
) -> Result<(bool, u32), ApiError> {
    let configured = api.search.reranker.as_ref().map(|r| r.model.as_str());
    let Some(reranking) = &settings.reranking_configuration else {
        return match settings.reranking_model_type.as_deref() {
            None | Some("NONE") => Ok((false, results)),
            Some(other) => match configured {
                Some(_) => Ok((true, results)),
                None => Err(refuse(format!(
                    "{path}.rerankingModelType {other}: this deployment has no reranker (RERANK_PROVIDER)"
                ))),
            },
        };
    };
    let path = format!("{path}.rerankingConfiguration");
    if reranking.kind != "BEDROCK_RERANKING_MODEL" {
        return Err(refuse(format!(
            "{path}.type must be BEDROCK_RERANKING_MODEL"
        )));
    }
    let Some(bedrock) = &reranking.bedrock_reranking_configuration else {
        return Err(refuse(format!(
            "{path}.bedrockRerankingConfiguration is required"
        )));
    };
    let Some(configured) = configured else {
        return Err(refuse(format!(
            "{path}: this deployment has no reranker (RERANK_PROVIDER)"
        )));
    };
    let model = &bedrock.model_configuration;
    let asked = model
        .model_arn
        .rsplit_once("foundation-model/")
        .map_or(model.model_arn.as_str(), |(_, name)| name);
    if asked != configured {
        return Err(refuse(format!(
            "{path}.bedrockRerankingConfiguration.modelConfiguration.modelArn names {asked:?}; this deployment reranks with {configured:?}"
        )));
    }
    if model
        .additional_model_request_fields
        .as_ref()
        .is_some_and(|fields| !fields.is_empty())
    {
        return Err(refuse(format!(
            "{path}.bedrockRerankingConfiguration.modelConfiguration.additionalModelRequestFields is not supported"
        )));
    }
    if bedrock.metadata_configuration.is_some() {
        return Err(refuse(format!(
            "{path}.bedrockRerankingConfiguration.metadataConfiguration is not supported: docpipe reranks the chunks' text"
        )));
    }
    let reranked = bedrock.number_of_reranked_results.unwrap_or(results);
    if !(1..=MAX_RESULTS).contains(&reranked) {
        return Err(refuse(format!(
            "{path}.bedrockRerankingConfiguration.numberOfRerankedResults must be 1 to {MAX_RESULTS}"
        )));
    }
    Ok((true, reranked.min(results)))
}

/// The configuration as it binds a page token (`nextToken` itself aside):
/// the same text for the same fields, whatever their order.
fn fingerprint(configuration: &RetrievalConfiguration) -> String {
    format!("{configuration:?}")
}

/// What a page token is bound to: who asked, of which knowledge base, what.
fn binding(tenant: &str, id: &str, text: &str, configuration: &str) -> String {
    let digest = Sha256::digest(format!("{tenant}\n{id}\n{text}\n{configuration}").as_bytes());
    hex::encode(digest)
}

/// A hit as one of Bedrock's `retrievalResults`: its text, its object's S3
/// URI, its attributes with the ones Bedrock sets itself, its score.
fn result(location: &Location, hit: &SearchHit) -> Value {
    let uri = format!("{}{}", location.source_uri_prefix, hit.source_key);
    let mut metadata: Attributes = hit.metadata.clone();
    metadata.insert("x-amz-bedrock-kb-source-uri".into(), json!(uri));
    metadata.insert(
        "x-amz-bedrock-kb-data-source-id".into(),
        json!(location.data_source_id),
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 results a page for 100 pages: paging ends at 1 000 results, and
    /// no page reads deeper, whatever its size.
    #[test]
    fn paging_ends_at_its_depth() {
        let mut offset = 0;
        let mut pages = 0;
        while let Some(next) =
            next_offset(page_depth(offset, 100), page_depth(offset, 100) as usize)
        {
            offset = next;
            pages += 1;
            assert!(pages < 100, "paging did not end");
        }
        assert_eq!((pages, offset), (9, 900), "ten pages of 100");
        assert_eq!(page_depth(990, 30), MAX_DEPTH);
        assert_eq!(next_offset(MAX_DEPTH, MAX_DEPTH as usize), None);
        assert_eq!(next_offset(40, 35), None, "a page not full is the last");
        assert_eq!(page_depth(u32::MAX, 100), MAX_DEPTH);
    }
}
