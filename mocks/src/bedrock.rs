//! A mock of Amazon Bedrock Runtime's `POST /model/{modelId}/invoke` for the
//! embedding models docpipe speaks to: Titan Text Embeddings V2 (one text a
//! call) and Cohere Embed v3 (up to 96 texts, an `input_type`), with their
//! limits, vectors of the `mock` embedder, errors in Bedrock's REST-JSON form
//! (`x-amzn-ErrorType`), and the fault knobs. Also Bedrock Agent Runtime's
//! `POST /rerank`, scored as `mock-rerank` scores. Requests must carry a SigV4
//! signature for the `bedrock` service (the mock has no secret to verify it).

use crate::faults::{Fault, FaultInjector, FaultKnobs};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use docpipe_ingest::embedding::mock::vector;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Cohere Embed v3's limits on Bedrock.
pub const COHERE_MAX_TEXTS: usize = 96;
pub const COHERE_MAX_CHARS: usize = 2048;
/// Titan Text Embeddings V2's limit on one text.
pub const TITAN_MAX_CHARS: usize = 50_000;

/// What a signed request asked for, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub model: String,
    pub texts: usize,
    pub input_type: Option<String>,
}

pub struct MockBedrock {
    pub faults: FaultInjector,
    requests: AtomicU64,
    invocations: Mutex<Vec<Invocation>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanRequest {
    input_text: String,
    #[serde(default = "titan_default_dims")]
    dimensions: usize,
    #[serde(default = "yes")]
    normalize: bool,
}

fn titan_default_dims() -> usize {
    1024
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct CohereRequest {
    texts: Vec<String>,
    input_type: String,
    #[serde(default)]
    truncate: Option<String>,
}

/// Bedrock's error answer: the type in `x-amzn-ErrorType`, the reason in the body.
fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let mut response = (status, Json(json!({ "message": message.into() }))).into_response();
    if let Ok(kind) = HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-errortype", kind);
    }
    response
}

fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

/// Whether the request is SigV4-signed for Bedrock (`…/bedrock/aws4_request`).
fn signed_for_bedrock(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.starts_with("AWS4-HMAC-SHA256 Credential=") && v.contains("/bedrock/aws4_request")
        })
}

impl MockBedrock {
    pub fn new(knobs: FaultKnobs) -> Arc<MockBedrock> {
        Arc::new(MockBedrock {
            faults: FaultInjector::new(knobs),
            requests: AtomicU64::new(0),
            invocations: Mutex::new(Vec::new()),
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/model/{model_id}/invoke", post(invoke))
            .route("/rerank", post(rerank))
            .route("/mock/stats", get(stats))
            .route("/health", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Requests received, faults included.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The signed requests answered with vectors, in order.
    pub fn invocations(&self) -> Vec<Invocation> {
        self.invocations.lock().unwrap().clone()
    }
}

async fn stats(State(mock): State<Arc<MockBedrock>>) -> Json<Value> {
    Json(json!({ "requests": mock.requests(), "faults": mock.faults.injected() }))
}

async fn invoke(
    State(mock): State<Arc<MockBedrock>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    mock.requests.fetch_add(1, Ordering::Relaxed);
    let mut wrong_dims = false;
    match mock.faults.next().await {
        Some(Fault::ServerError) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                "Bedrock is unable to process your request.",
            );
        }
        Some(Fault::RateLimited) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
            );
        }
        Some(Fault::Malformed) => return (StatusCode::OK, "{\"embedding\": [").into_response(),
        Some(Fault::WrongDims) => wrong_dims = true,
        _ => {}
    }
    if !signed_for_bedrock(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "the request is not signed with SigV4 for bedrock",
        );
    }
    // `us.cohere.embed-…` (a cross-region inference profile) names the same model.
    let base = model
        .split_once('.')
        .filter(|(prefix, _)| prefix.len() == 2 || *prefix == "apac")
        .map_or(model.as_str(), |(_, rest)| rest);
    let (answer, invocation) = if base.starts_with("amazon.titan-embed-text-v2") {
        titan(&body, wrong_dims)
    } else if base.starts_with("cohere.embed-") {
        cohere(&body, wrong_dims)
    } else {
        return invalid("The provided model identifier is invalid.");
    };
    match answer {
        Ok(answer) => {
            mock.invocations.lock().unwrap().push(Invocation {
                model,
                ..invocation
            });
            Json(answer).into_response()
        }
        Err(reason) => invalid(reason),
    }
}

fn sized(text: &str, dims: usize, wrong_dims: bool) -> Vec<f32> {
    vector(text, if wrong_dims { dims - 1 } else { dims })
}

/// A request the model refuses: Bedrock's `ValidationException`, with why.
type Refused = String;

fn titan(body: &str, wrong_dims: bool) -> (Result<Value, Refused>, Invocation) {
    let invocation = Invocation {
        model: String::new(),
        texts: 1,
        input_type: None,
    };
    let answer = match serde_json::from_str::<TitanRequest>(body) {
        Err(e) => Err(format!("Malformed input request: {e}")),
        Ok(request)
            if request.input_text.is_empty()
                || request.input_text.chars().count() > TITAN_MAX_CHARS =>
        {
            Err(format!(
                "inputText must hold 1 to {TITAN_MAX_CHARS} characters"
            ))
        }
        Ok(request) if ![256, 512, 1024].contains(&request.dimensions) => {
            Err("dimensions must be one of 256, 512, 1024".into())
        }
        Ok(request) => {
            let mut embedding = sized(&request.input_text, request.dimensions, wrong_dims);
            if !request.normalize {
                embedding.iter_mut().for_each(|x| *x *= 3.0);
            }
            Ok(json!({
                "embedding": embedding,
                "inputTextTokenCount": request.input_text.split_whitespace().count(),
            }))
        }
    };
    (answer, invocation)
}

fn cohere(body: &str, wrong_dims: bool) -> (Result<Value, Refused>, Invocation) {
    let mut invocation = Invocation {
        model: String::new(),
        texts: 0,
        input_type: None,
    };
    let answer = match serde_json::from_str::<CohereRequest>(body) {
        Err(e) => Err(format!("Malformed input request: {e}")),
        Ok(request) => {
            invocation.texts = request.texts.len();
            invocation.input_type = Some(request.input_type.clone());
            if request.texts.is_empty() || request.texts.len() > COHERE_MAX_TEXTS {
                Err(format!("texts must hold 1 to {COHERE_MAX_TEXTS} texts"))
            } else if ![
                "search_document",
                "search_query",
                "classification",
                "clustering",
            ]
            .contains(&request.input_type.as_str())
            {
                Err("input_type is not one of the model's".into())
            } else if request.truncate.as_deref() == Some("NONE")
                && let Some(i) = request
                    .texts
                    .iter()
                    .position(|t| t.chars().count() > COHERE_MAX_CHARS)
            {
                Err(format!(
                    "texts[{i}] is over {COHERE_MAX_CHARS} characters and truncate is NONE"
                ))
            } else {
                let embeddings: Vec<Vec<f32>> = request
                    .texts
                    .iter()
                    .map(|t| sized(t, 1024, wrong_dims))
                    .collect();
                Ok(json!({
                    "id": "mock",
                    "response_type": "embeddings_floats",
                    "embeddings": embeddings,
                    "texts": request.texts,
                }))
            }
        }
    };
    (answer, invocation)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RerankRequest {
    queries: Vec<RerankQuery>,
    sources: Vec<RerankSource>,
    reranking_configuration: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RerankQuery {
    text_query: TextDocument,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RerankSource {
    inline_document_source: InlineDocument,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InlineDocument {
    text_document: TextDocument,
}

#[derive(Deserialize)]
struct TextDocument {
    text: String,
}

/// Bedrock's `Rerank` takes at most this many sources.
pub const RERANK_MAX_SOURCES: usize = 1000;

/// Bedrock Agent Runtime's `POST /rerank`: the model (its ARN) must be a
/// reranking model; sources are scored by the share of the query's words.
async fn rerank(
    State(mock): State<Arc<MockBedrock>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    mock.requests.fetch_add(1, Ordering::Relaxed);
    if mock.faults.next().await == Some(Fault::RateLimited) {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        );
    }
    if !signed_for_bedrock(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "the request is not signed with SigV4 for bedrock",
        );
    }
    let request: RerankRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(e) => return invalid(format!("Malformed input request: {e}")),
    };
    let config = &request.reranking_configuration["bedrockRerankingConfiguration"];
    let model = config["modelConfiguration"]["modelArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !model.contains(":foundation-model/amazon.rerank-")
        && !model.contains(":foundation-model/cohere.rerank-")
    {
        return invalid(format!("{model} is not a reranking model"));
    }
    let [query] = request.queries.as_slice() else {
        return invalid("queries must hold one query");
    };
    if request.sources.is_empty() || request.sources.len() > RERANK_MAX_SOURCES {
        return invalid(format!(
            "sources must hold 1 to {RERANK_MAX_SOURCES} documents"
        ));
    }
    let mut scored: Vec<(usize, f64)> = request
        .sources
        .iter()
        .map(|s| {
            crate::rerank::relevance(
                &query.text_query.text,
                &s.inline_document_source.text_document.text,
            )
        })
        .enumerate()
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let wanted = config["numberOfResults"]
        .as_u64()
        .map_or(scored.len(), |n| n as usize);
    scored.truncate(wanted);
    mock.invocations.lock().unwrap().push(Invocation {
        model,
        texts: request.sources.len(),
        input_type: None,
    });
    let results: Vec<Value> = scored
        .iter()
        .map(|(index, score)| json!({"index": index, "relevanceScore": score}))
        .collect();
    Json(json!({ "results": results })).into_response()
}
