//! `EMBEDDING_PROVIDER=bedrock`: Amazon Bedrock's embedding models through
//! `InvokeModel`, signed with the process's IAM role (no key): Amazon Titan
//! Text Embeddings V2 (one text a call, so calls go out a few at a time) and
//! Cohere Embed v3 (up to 96 texts a call, `input_type` search_document or
//! search_query). Throttling and unavailability are retried through
//! [`ExternalService`]; a validation or access error is final with its reason.

use async_trait::async_trait;
use aws_sdk_bedrockruntime::primitives::Blob;
use docpipe_core::embedding::{EmbedInput, Embedder, Embeddings};
use docpipe_core::error::{Error, Rejection, Result};
use docpipe_core::external::rate_limit::RateLimiter;
use docpipe_core::external::{ExternalService, Failure};
use docpipe_core::settings::{EmbeddingSettings, ExternalPolicy};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use tokio::sync::OnceCell;

/// Cohere Embed on Bedrock takes at most this many texts a call.
const COHERE_MAX_TEXTS: usize = 96;
/// Titan calls in flight at once per embed call (one text each).
const TITAN_CONCURRENCY: usize = 8;

/// The model families docpipe speaks to, by request shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `amazon.titan-embed-text-v2:0`: 256, 512 or 1024 dimensions.
    Titan,
    /// `cohere.embed-english-v3`, `cohere.embed-multilingual-v3`: 1024.
    Cohere,
}

impl Family {
    fn of(model: &str) -> std::result::Result<Family, String> {
        // A cross-region inference profile prefixes the model: `us.cohere…`.
        let base = model
            .split_once('.')
            .filter(|(prefix, _)| prefix.len() == 2 || *prefix == "apac")
            .map_or(model, |(_, rest)| rest);
        if base.starts_with("amazon.titan-embed-text-v2") {
            Ok(Family::Titan)
        } else if base.starts_with("cohere.embed-") {
            Ok(Family::Cohere)
        } else {
            Err(format!(
                "{model:?} is not a Bedrock embedding model docpipe speaks to \
                 (amazon.titan-embed-text-v2:0, cohere.embed-english-v3, cohere.embed-multilingual-v3)"
            ))
        }
    }

    /// The dimensions the model can make.
    fn dims(self) -> &'static [usize] {
        match self {
            Family::Titan => &[256, 512, 1024],
            Family::Cohere => &[1024],
        }
    }
}

/// Whether texts are stored (documents) or searched with (queries): Cohere
/// embeds the two differently.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Document,
    Query,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TitanRequest<'a> {
    input_text: &'a str,
    dimensions: usize,
    normalize: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanResponse {
    embedding: Vec<f32>,
    input_text_token_count: u64,
}

#[derive(Serialize)]
struct CohereRequest<'a> {
    texts: &'a [&'a str],
    input_type: &'static str,
    /// Refuse, never cut, a text over the model's limit.
    truncate: &'static str,
}

#[derive(Deserialize)]
struct CohereResponse {
    embeddings: Vec<Vec<f32>>,
}

pub struct BedrockEmbedder {
    /// Built on the first call: the SDK's configuration loads asynchronously.
    client: OnceCell<aws_sdk_bedrockruntime::Client>,
    model: String,
    family: Family,
    dims: usize,
    max_input_tokens: u32,
    service: ExternalService,
}

impl BedrockEmbedder {
    pub fn new(
        config: &EmbeddingSettings,
        policy: &ExternalPolicy,
    ) -> std::result::Result<Self, String> {
        let model = config.model().to_string();
        let family = Family::of(&model)?;
        if !family.dims().contains(&config.dims) {
            return Err(format!(
                "{model} makes vectors of {:?} dimensions, not {} (EMBEDDING_DIMS)",
                family.dims(),
                config.dims
            ));
        }
        let limiter = RateLimiter::new(
            config.tokens_per_minute(),
            NonZeroU32::new(config.max_request_tokens).unwrap_or(NonZeroU32::MIN),
            config.requests_per_minute(),
        );
        Ok(BedrockEmbedder {
            client: OnceCell::new(),
            model,
            family,
            dims: config.dims,
            max_input_tokens: config.max_input_tokens,
            service: ExternalService::new("bedrock", policy, limiter),
        })
    }

    async fn client(&self) -> &aws_sdk_bedrockruntime::Client {
        self.client
            .get_or_init(|| async {
                let sdk = docpipe_aws::sdk::sdk_config_without_retries().await;
                aws_sdk_bedrockruntime::Client::new(&sdk)
            })
            .await
    }

    /// One `InvokeModel` call with `body`; the response body.
    async fn invoke(&self, body: Vec<u8>) -> std::result::Result<Vec<u8>, Failure> {
        let output = self
            .client()
            .await
            .invoke_model()
            .model_id(&self.model)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body))
            .send()
            .await
            .map_err(|e| {
                docpipe_aws::sdk::bedrock_failure(&e.into_service_error(), |detail| {
                    Rejection::EmbeddingRejected { detail }.into()
                })
            })?;
        Ok(output.body.into_inner())
    }

    fn checked(&self, vector: Vec<f32>) -> std::result::Result<Vec<f32>, Failure> {
        if vector.len() == self.dims {
            return Ok(vector);
        }
        Err(Failure::Rejected(
            Rejection::EmbeddingInvalid {
                detail: format!(
                    "vector of {} dimensions, expected {} (EMBEDDING_DIMS)",
                    vector.len(),
                    self.dims
                ),
            }
            .into(),
        ))
    }

    async fn titan(&self, input: &EmbedInput<'_>) -> Result<(Vec<f32>, u64)> {
        let body = serde_json::to_vec(&TitanRequest {
            input_text: input.text,
            dimensions: self.dims,
            normalize: true,
        })
        .map_err(|e| Error::transient("Titan request", e))?;
        self.service
            .call(input.tokens, || async {
                let bytes = self.invoke(body.clone()).await?;
                let response: TitanResponse = off_contract(&bytes)?;
                Ok((
                    self.checked(response.embedding)?,
                    response.input_text_token_count,
                ))
            })
            .await
    }

    async fn cohere(&self, inputs: &[EmbedInput<'_>], purpose: Purpose) -> Result<Vec<Vec<f32>>> {
        let texts: Vec<&str> = inputs.iter().map(|i| i.text).collect();
        let body = serde_json::to_vec(&CohereRequest {
            texts: &texts,
            input_type: match purpose {
                Purpose::Document => "search_document",
                Purpose::Query => "search_query",
            },
            truncate: "NONE",
        })
        .map_err(|e| Error::transient("Cohere request", e))?;
        let tokens = inputs.iter().map(|i| i.tokens).sum();
        self.service
            .call(tokens, || async {
                let bytes = self.invoke(body.clone()).await?;
                let response: CohereResponse = off_contract(&bytes)?;
                if response.embeddings.len() != inputs.len() {
                    return Err(Failure::Rejected(
                        Rejection::EmbeddingInvalid {
                            detail: format!(
                                "{} vectors for {} inputs",
                                response.embeddings.len(),
                                inputs.len()
                            ),
                        }
                        .into(),
                    ));
                }
                response
                    .embeddings
                    .into_iter()
                    .map(|v| self.checked(v))
                    .collect()
            })
            .await
    }

    async fn embed_for(&self, inputs: &[EmbedInput<'_>], purpose: Purpose) -> Result<Embeddings> {
        docpipe_core::embedding::check_input_tokens(inputs, self.max_input_tokens)?;
        let (vectors, billed_tokens, requests) = match self.family {
            Family::Titan => {
                // By index: a closure over borrowed inputs is not general
                // enough for the Send future async_trait needs.
                let results: Vec<(Vec<f32>, u64)> = futures::stream::iter(0..inputs.len())
                    .map(|i| self.titan(&inputs[i]))
                    .buffered(TITAN_CONCURRENCY)
                    .try_collect()
                    .await?;
                let tokens = results.iter().map(|(_, t)| t).sum();
                let vectors = results.into_iter().map(|(v, _)| v).collect();
                (vectors, tokens, inputs.len() as u32)
            }
            Family::Cohere => {
                let mut vectors = Vec::with_capacity(inputs.len());
                for batch in inputs.chunks(COHERE_MAX_TEXTS) {
                    vectors.extend(self.cohere(batch, purpose).await?);
                }
                // Bedrock bills Cohere by input tokens; the chunks' counts stand in.
                let tokens = inputs.iter().map(|i| u64::from(i.tokens)).sum();
                (
                    vectors,
                    tokens,
                    inputs.len().div_ceil(COHERE_MAX_TEXTS) as u32,
                )
            }
        };
        Ok(Embeddings {
            vectors,
            model: self.model.clone(),
            service: self.service.name,
            billed_tokens,
            requests,
        })
    }
}

/// A body that is not the model's answer: the service is unwell.
fn off_contract<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> std::result::Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|e| {
        Failure::Unavailable(Error::transient(
            "Bedrock response is not the model's JSON",
            e,
        ))
    })
}

#[async_trait]
impl Embedder for BedrockEmbedder {
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
        self.embed_for(inputs, Purpose::Document).await
    }
    async fn embed_query(&self, input: EmbedInput<'_>) -> Result<Embeddings> {
        self.embed_for(&[input], Purpose::Query).await
    }
}
