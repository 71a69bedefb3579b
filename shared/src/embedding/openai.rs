//! Client for OpenAI-compatible `POST /v1/embeddings` (OpenAI, Azure, Ollama, vLLM, TEI).

use super::{EmbedInput, Embedder, Embeddings};
use crate::config::{EmbeddingConfig, Secret};
use crate::error::{Error, Rejection, Result};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// OpenAI's limit on inputs per request.
pub const MAX_INPUTS_PER_REQUEST: usize = 2048;
/// OpenAI's limit on tokens per request, summed over inputs.
pub const MAX_TOKENS_PER_REQUEST: u64 = 300_000;

pub struct OpenAiEmbedder {
    http: reqwest::Client,
    url: String,
    api_key: Secret,
    model: String,
    dims: usize,
    send_dimensions: bool,
}

#[derive(Serialize)]
struct EmbeddingRequest<'a> {
    model: &'a str,
    input: Vec<&'a str>,
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
    #[serde(default)]
    code: Option<String>,
}

impl OpenAiEmbedder {
    pub fn new(config: &EmbeddingConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Error::transient("building HTTP client", e))?;
        Ok(OpenAiEmbedder {
            http,
            url: format!("{}/embeddings", config.base_url),
            api_key: config.api_key.clone(),
            model: config.model.clone(),
            dims: config.dims,
            send_dimensions: config.send_dimensions,
        })
    }

    async fn request(&self, inputs: &[EmbedInput<'_>]) -> Result<Embeddings> {
        let body = EmbeddingRequest {
            model: &self.model,
            input: inputs.iter().map(|i| i.text).collect(),
            encoding_format: "float",
            dimensions: self.send_dimensions.then_some(self.dims),
        };
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(self.api_key.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::transient("embeddings request", e.without_url()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::transient("embeddings response", e.without_url()))?;
        if !status.is_success() {
            return Err(classify_failure(status.as_u16(), &bytes));
        }
        let parsed: EmbeddingResponse = serde_json::from_slice(&bytes)
            .map_err(|e| Error::transient("embeddings response is not the expected JSON", e))?;
        self.validate(parsed, inputs.len())
    }

    /// Checks count, order (by `index`) and dimension of every vector.
    fn validate(&self, response: EmbeddingResponse, expected: usize) -> Result<Embeddings> {
        let invalid = |detail: String| Error::from(Rejection::EmbeddingInvalid { detail });
        if response.data.len() != expected {
            return Err(invalid(format!(
                "{} vectors for {expected} inputs",
                response.data.len()
            )));
        }
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; expected];
        for item in response.data {
            if item.embedding.len() != self.dims {
                return Err(invalid(format!(
                    "vector of {} dimensions, expected {} (EMBEDDING_DIMS)",
                    item.embedding.len(),
                    self.dims
                )));
            }
            match vectors.get_mut(item.index) {
                Some(slot @ None) => *slot = Some(item.embedding),
                _ => {
                    return Err(invalid(format!(
                        "index {} is out of range or repeated",
                        item.index
                    )));
                }
            }
        }
        Ok(Embeddings {
            vectors: vectors
                .into_iter()
                .map(|v| v.expect("every index filled"))
                .collect(),
            billed_tokens: response.usage.map_or(0, |u| u.prompt_tokens),
        })
    }
}

/// 408, 409, 429 (rate limit) and 5xx are worth retrying; anything else, and
/// 429 `insufficient_quota`, will fail the same way again.
fn classify_failure(status: u16, body: &[u8]) -> Error {
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let message = detail.as_ref().map_or_else(
        || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        |d| d.message.clone(),
    );
    let code = detail.and_then(|d| d.code).unwrap_or_default();
    let retryable =
        matches!(status, 408 | 409 | 500..=599) || (status == 429 && code != "insufficient_quota");
    if retryable {
        Error::Transient(format!(
            "embeddings provider answered HTTP {status}: {message}"
        ))
    } else {
        Rejection::EmbeddingRejected {
            detail: format!("HTTP {status}: {message}"),
        }
        .into()
    }
}

/// Splits inputs into requests within the provider's per-request limits.
fn requests<'a, 'b>(inputs: &'b [EmbedInput<'a>]) -> Vec<&'b [EmbedInput<'a>]> {
    let mut requests = Vec::new();
    let (mut start, mut tokens) = (0, 0u64);
    for (i, input) in inputs.iter().enumerate() {
        let full = i - start == MAX_INPUTS_PER_REQUEST
            || tokens + u64::from(input.tokens) > MAX_TOKENS_PER_REQUEST;
        if full && i > start {
            requests.push(&inputs[start..i]);
            (start, tokens) = (i, 0);
        }
        tokens += u64::from(input.tokens);
    }
    if start < inputs.len() {
        requests.push(&inputs[start..]);
    }
    requests
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn service(&self) -> &'static str {
        "openai"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn dims(&self) -> usize {
        self.dims
    }
    async fn embed(&self, inputs: &[EmbedInput<'_>]) -> Result<Embeddings> {
        let mut all = Embeddings {
            vectors: Vec::with_capacity(inputs.len()),
            billed_tokens: 0,
        };
        for request in requests(inputs) {
            let part = self.request(request).await?;
            all.vectors.extend(part.vectors);
            all.billed_tokens += part.billed_tokens;
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_respect_input_and_token_limits() {
        let many = vec![
            EmbedInput {
                text: "x",
                tokens: 1
            };
            MAX_INPUTS_PER_REQUEST * 2 + 1
        ];
        let sizes: Vec<usize> = requests(&many).iter().map(|r| r.len()).collect();
        assert_eq!(sizes, [MAX_INPUTS_PER_REQUEST, MAX_INPUTS_PER_REQUEST, 1]);

        let big = vec![
            EmbedInput {
                text: "x",
                tokens: 8000
            };
            100
        ];
        let parts = requests(&big);
        assert!(
            parts
                .iter()
                .all(|r| r.iter().map(|i| u64::from(i.tokens)).sum::<u64>()
                    <= MAX_TOKENS_PER_REQUEST)
        );
        assert_eq!(parts.iter().map(|r| r.len()).sum::<usize>(), 100);
        assert!(requests(&[]).is_empty());
    }

    #[test]
    fn failures_are_classified() {
        let quota =
            br#"{"error":{"message":"You exceeded your quota","code":"insufficient_quota"}}"#;
        assert!(!classify_failure(429, quota).is_transient());
        let limit = br#"{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}"#;
        assert!(classify_failure(429, limit).is_transient());
        for status in [408, 409, 500, 502, 503] {
            assert!(classify_failure(status, b"oops").is_transient(), "{status}");
        }
        for status in [400, 401, 402, 403, 404, 422] {
            let err = classify_failure(status, br#"{"error":{"message":"bad key"}}"#);
            assert_eq!(
                err.to_string(),
                format!("embedding provider rejected the request: HTTP {status}: bad key")
            );
        }
    }
}
