//! Client for OpenAI-compatible `POST /v1/embeddings` (OpenAI, Azure OpenAI
//! deployments, Ollama, vLLM, TEI): requests within the provider's limits,
//! client-side token and request rates, retries through [`ExternalService`],
//! and a checked response.

use async_trait::async_trait;
use base64::Engine;
use docpipe_core::embedding::{EmbedInput, Embedder, Embeddings};
use docpipe_core::error::{Error, Rejection, Result};
use docpipe_core::external::rate_limit::RateLimiter;
use docpipe_core::external::{self, ExternalService, Failure};
use docpipe_core::settings::{
    EmbeddingProvider, EmbeddingSettings, ExposeSecret, ExternalPolicy, Secret,
};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;

/// How the provider wants the key.
enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI and most compatible servers).
    Bearer(Secret),
    /// `api-key: <key>` (Azure OpenAI).
    ApiKey(Secret),
}

pub struct OpenAiEmbedder {
    http: reqwest::Client,
    url: String,
    auth: Auth,
    model: String,
    dims: usize,
    send_dimensions: bool,
    max_input_tokens: u32,
    max_inputs_per_request: usize,
    max_request_tokens: u32,
    service: ExternalService,
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
    embedding: WireVector,
}

/// A vector as sent: base64 of little-endian f32s, as requested (a third of
/// the bytes of JSON numbers, and far cheaper to decode), or JSON numbers
/// from a compatible server that ignores `encoding_format`.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireVector {
    Base64(String),
    Floats(Vec<f32>),
}

impl WireVector {
    fn decode(self) -> std::result::Result<Vec<f32>, String> {
        match self {
            WireVector::Floats(floats) => Ok(floats),
            WireVector::Base64(text) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("vector is not base64: {e}"))?;
                if bytes.len() % 4 != 0 {
                    return Err(format!("vector of {} bytes, not whole f32s", bytes.len()));
                }
                Ok(bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            }
        }
    }
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
    pub fn new(config: &EmbeddingSettings, policy: &ExternalPolicy) -> Result<Self> {
        let http = external::http_client(config.timeout)?;
        let (url, auth, service_name) = match config.provider {
            EmbeddingProvider::Azure => (
                format!(
                    "{}/openai/deployments/{}/embeddings?api-version={}",
                    config.base_url(),
                    config.model(),
                    config.azure_api_version
                ),
                Auth::ApiKey(config.api_key()),
                "azure",
            ),
            _ => (
                format!("{}/embeddings", config.base_url()),
                Auth::Bearer(config.api_key()),
                "openai",
            ),
        };
        let max_request_tokens =
            NonZeroU32::new(config.max_request_tokens).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::new(
            config.tokens_per_minute(),
            max_request_tokens,
            config.requests_per_minute(),
        );
        Ok(OpenAiEmbedder {
            http,
            url,
            auth,
            model: config.model().to_string(),
            dims: config.dims,
            send_dimensions: config.send_dimensions(),
            max_input_tokens: config.max_input_tokens,
            max_inputs_per_request: config.max_inputs_per_request.max(1),
            // A request never carries more than the token limiter lets out at once.
            max_request_tokens: limiter
                .max_request_tokens()
                .unwrap_or(max_request_tokens.get()),
            service: ExternalService::new(service_name, policy, limiter),
        })
    }

    /// One HTTP exchange for `inputs`.
    async fn attempt(&self, inputs: &[EmbedInput<'_>]) -> Result<Embeddings, Failure> {
        let body = EmbeddingRequest {
            model: &self.model,
            input: inputs.iter().map(|i| i.text).collect(),
            encoding_format: "base64",
            dimensions: self.send_dimensions.then_some(self.dims),
        };
        let request = self.http.post(&self.url).json(&body);
        let request = match &self.auth {
            Auth::Bearer(key) => request.bearer_auth(key.expose_secret()),
            Auth::ApiKey(key) => request.header("api-key", key.expose_secret()),
        };
        let (status, headers, bytes) = external::send(request, "embeddings request").await?;
        self.service.limiter.observe(&headers);
        if !status.is_success() {
            return Err(classify_failure(status, &headers, &bytes));
        }
        let parsed: EmbeddingResponse = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Unavailable(Error::transient(
                "embeddings response is not the expected JSON",
                e,
            ))
        })?;
        self.validate(parsed, inputs.len())
            .map_err(Failure::Rejected)
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
            let embedding = item.embedding.decode().map_err(invalid)?;
            if embedding.len() != self.dims {
                return Err(invalid(format!(
                    "vector of {} dimensions, expected {} (EMBEDDING_DIMS)",
                    embedding.len(),
                    self.dims
                )));
            }
            match vectors.get_mut(item.index) {
                Some(slot @ None) => *slot = Some(embedding),
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
            model: self.model.clone(),
            service: self.service.name,
            billed_tokens: response.usage.map_or(0, |u| u.prompt_tokens),
            requests: 1,
        })
    }

    /// Splits inputs into requests within the provider's per-request limits.
    fn requests<'a, 'b>(&self, inputs: &'b [EmbedInput<'a>]) -> Vec<&'b [EmbedInput<'a>]> {
        let mut requests = Vec::new();
        let (mut start, mut tokens) = (0, 0u64);
        for (i, input) in inputs.iter().enumerate() {
            let full = i - start == self.max_inputs_per_request
                || tokens + u64::from(input.tokens) > u64::from(self.max_request_tokens);
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
}

/// OpenAI's error body says why; `insufficient_quota` 429s and context-length
/// 400s are final.
fn classify_failure(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> Failure {
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error);
    let message = detail.as_ref().map_or_else(
        || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        |d| d.message.clone(),
    );
    let code = detail.and_then(|d| d.code).unwrap_or_default();
    external::status_failure(
        status,
        headers,
        message,
        code == "insufficient_quota",
        |detail| Rejection::EmbeddingRejected { detail }.into(),
    )
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn billable(&self) -> bool {
        true
    }
    fn service(&self) -> &'static str {
        self.service.name
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn dims(&self) -> usize {
        self.dims
    }
    fn query_window<'a>(&self, text: &'a str) -> &'a str {
        docpipe_core::tokens::first_tokens(text, self.max_input_tokens as usize)
    }
    fn services(&self) -> Vec<&ExternalService> {
        vec![&self.service]
    }
    async fn embed(&self, inputs: &[EmbedInput<'_>]) -> Result<Embeddings> {
        docpipe_core::embedding::check_input_tokens(inputs, self.max_input_tokens)?;
        let mut all = Embeddings {
            vectors: Vec::with_capacity(inputs.len()),
            model: self.model.clone(),
            service: self.service.name,
            billed_tokens: 0,
            requests: 0,
        };
        for request in self.requests(inputs) {
            let tokens: u32 = request.iter().map(|i| i.tokens).sum();
            let part = self.service.call(tokens, || self.attempt(request)).await?;
            all.vectors.extend(part.vectors);
            all.billed_tokens += part.billed_tokens;
            all.requests += part.requests;
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docpipe_core::settings::Env;

    fn embedder(vars: &[(&str, &str)]) -> OpenAiEmbedder {
        let env = Env::from_pairs(
            [
                ("EMBEDDING_PROVIDER", "openai"),
                ("OPENAI_API_KEY", "sk-test"),
            ]
            .into_iter()
            .chain(vars.iter().copied()),
        );
        OpenAiEmbedder::new(&env.load().unwrap(), &env.load().unwrap()).unwrap()
    }

    #[test]
    fn requests_respect_input_and_token_limits() {
        let client = embedder(&[]);
        let many = vec![
            EmbedInput {
                text: "x",
                tokens: 1
            };
            2048 * 2 + 1
        ];
        let sizes: Vec<usize> = client.requests(&many).iter().map(|r| r.len()).collect();
        assert_eq!(sizes, [2048, 2048, 1]);

        let big = vec![
            EmbedInput {
                text: "x",
                tokens: 8000
            };
            100
        ];
        let parts = client.requests(&big);
        assert!(
            parts
                .iter()
                .all(|r| r.iter().map(|i| i.tokens).sum::<u32>() <= 300_000)
        );
        assert_eq!(parts.iter().map(|r| r.len()).sum::<usize>(), 100);
        assert!(client.requests(&[]).is_empty());

        // A tokens-per-minute limit caps requests at a twentieth of it.
        let limited = embedder(&[("EMBEDDING_TPM", "100000")]);
        let small = vec![
            EmbedInput {
                text: "x",
                tokens: 1000
            };
            100
        ];
        let parts = limited.requests(&small);
        assert!(parts.iter().all(|r| r.len() == 5), "5 000 tokens each");
        assert_eq!(parts.len(), 20);
    }

    #[test]
    fn azure_deployments_get_their_own_url() {
        let azure = embedder(&[
            ("EMBEDDING_PROVIDER", "azure"),
            ("OPENAI_BASE_URL", "https://acme.openai.azure.com"),
            ("EMBEDDING_MODEL", "embed-small"),
        ]);
        assert_eq!(
            azure.url,
            "https://acme.openai.azure.com/openai/deployments/embed-small/embeddings?api-version=2024-10-21"
        );
        assert!(matches!(azure.auth, Auth::ApiKey(_)));
    }

    #[test]
    fn failures_are_classified() {
        let headers = reqwest::header::HeaderMap::new();
        let status = |code| reqwest::StatusCode::from_u16(code).unwrap();
        let quota =
            br#"{"error":{"message":"You exceeded your quota","code":"insufficient_quota"}}"#;
        assert!(matches!(
            classify_failure(status(429), &headers, quota),
            Failure::Rejected(_)
        ));
        let limit = br#"{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}"#;
        assert!(matches!(
            classify_failure(status(429), &headers, limit),
            Failure::RateLimited(..)
        ));
        for code in [408, 409, 500, 502, 503] {
            assert!(
                matches!(
                    classify_failure(status(code), &headers, b"oops"),
                    Failure::Unavailable(_)
                ),
                "{code}"
            );
        }
        for code in [400, 401, 402, 403, 404, 422] {
            let Failure::Rejected(err) = classify_failure(
                status(code),
                &headers,
                br#"{"error":{"message":"bad key"}}"#,
            ) else {
                panic!("{code} is final");
            };
            assert_eq!(
                err.to_string(),
                format!("embedding provider rejected the request: HTTP {code}: bad key")
            );
        }
    }

    #[test]
    fn vectors_arrive_as_base64_or_as_numbers() {
        let parse = |json: &str| serde_json::from_str::<WireVector>(json).unwrap().decode();
        let floats = [0.5f32, -1.25, 3.0];
        let bytes: Vec<u8> = floats.iter().flat_map(|x| x.to_le_bytes()).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert_eq!(parse(&format!("\"{encoded}\"")), Ok(floats.to_vec()));
        assert_eq!(parse("[0.5, -1.25, 3.0]"), Ok(floats.to_vec()));
        assert_eq!(
            parse("\"AAAA\""),
            Err("vector of 3 bytes, not whole f32s".into())
        );
        assert!(
            parse("\"not base64!\"")
                .unwrap_err()
                .starts_with("vector is not base64")
        );
    }
}
