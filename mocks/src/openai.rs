//! `mock-openai`: OpenAI's `POST /v1/embeddings`, deterministic. Vectors are
//! the in-process `mock` embedder's, so both paths give the same search results.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use docpipe_shared::chunking::tokenizer;
use docpipe_shared::embedding::mock;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// OpenAI's limits, enforced the way OpenAI does.
pub const MAX_INPUTS: usize = 2048;
pub const MAX_INPUT_TOKENS: usize = 8192;

#[derive(Debug, Clone)]
pub struct MockOpenAiConfig {
    /// Dimensions when the request has no `dimensions`.
    pub default_dims: usize,
    /// If set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    input: Input,
    model: String,
    dimensions: Option<usize>,
    #[serde(default)]
    encoding_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

/// An OpenAI-shaped error; every error this mock gives is an `invalid_request_error`.
fn error(status: StatusCode, code: Option<&str>, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "message": message.into(), "type": "invalid_request_error", "param": null, "code": code } });
    (status, Json(body)).into_response()
}

pub fn router(config: MockOpenAiConfig) -> Router {
    Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/health", get(|| async { "ok" }))
        .with_state(Arc::new(config))
}

async fn embeddings(
    State(config): State<Arc<MockOpenAiConfig>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let authorised = match &config.api_key {
        Some(key) => bearer == key,
        None => !bearer.is_empty(),
    };
    if !authorised {
        return error(
            StatusCode::UNAUTHORIZED,
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        );
    }
    let request: EmbeddingRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, None, format!("Invalid body: {e}"));
        }
    };
    let inputs = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
    };
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        let message = format!(
            "'input' must have 1 to {MAX_INPUTS} items, got {}",
            inputs.len()
        );
        return error(StatusCode::BAD_REQUEST, None, message);
    }
    let dims = request.dimensions.unwrap_or(config.default_dims);
    if dims == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            None,
            "'dimensions' must be at least 1",
        );
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            let message = format!("'encoding_format' must be float or base64, got {other:?}");
            return error(StatusCode::BAD_REQUEST, None, message);
        }
    };
    let mut prompt_tokens = 0;
    let mut data = Vec::with_capacity(inputs.len());
    for (index, text) in inputs.iter().enumerate() {
        let tokens = tokenizer().encode_ordinary(text).len();
        if tokens > MAX_INPUT_TOKENS {
            let message = format!(
                "This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however you requested {tokens} tokens (input {index})."
            );
            return error(
                StatusCode::BAD_REQUEST,
                Some("context_length_exceeded"),
                message,
            );
        }
        prompt_tokens += tokens;
        let vector = mock::vector(text, dims);
        let embedding = if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            json!(vector)
        };
        data.push(json!({ "object": "embedding", "index": index, "embedding": embedding }));
    }
    Json(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    }))
    .into_response()
}
