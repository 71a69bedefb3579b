//! Turning chunk text into vectors.

pub mod bedrock;
pub mod local;
pub mod mock;
pub mod models;
pub mod openai;
pub mod router;

use crate::error::{ConfigError, Result};
use crate::external::ExternalService;
use crate::settings::{
    EmbeddingProvider, EmbeddingSettings, PipelineSettings, ServiceMode, invalid,
};
use async_trait::async_trait;
use std::sync::Arc;

/// One text to embed, with its cl100k token count (known from chunking).
#[derive(Debug, Clone, Copy)]
pub struct EmbedInput<'a> {
    pub text: &'a str,
    pub tokens: u32,
}

impl<'a> EmbedInput<'a> {
    /// A stored chunk's text and token count (an `int4` column).
    pub fn stored(text: &'a str, tokens: i32) -> Self {
        EmbedInput {
            text,
            tokens: tokens.max(0) as u32,
        }
    }
}

/// Refuses inputs over a provider's `limit` of tokens each: cutting a chunk
/// to fit would silently drop text from search.
pub fn check_input_tokens(inputs: &[EmbedInput<'_>], limit: u32) -> Result<()> {
    match inputs.iter().find(|i| i.tokens > limit) {
        Some(input) => Err(crate::error::Rejection::ChunkTooLong {
            tokens: input.tokens,
            limit,
        }
        .into()),
        None => Ok(()),
    }
}

/// Vectors in input order, the model that made them, and what the provider
/// billed for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub model: String,
    /// The service that made them (`mock`, `openai`, `azure`, `local`), for the cost ledger.
    pub service: &'static str,
    pub billed_tokens: u64,
    /// HTTP requests it took (0 in-process).
    pub requests: u32,
}

#[async_trait]
pub trait Embedder: Send + Sync {
    /// Whether calls cost money (and so count against the budget).
    fn billable(&self) -> bool;
    /// The service that makes the vectors (`mock`, `local`, `openai`,
    /// `azure`, `bedrock`), for the cost ledger.
    fn service(&self) -> &'static str;
    /// Model name stored with every vector; search never mixes models.
    fn model(&self) -> &str;
    fn dims(&self) -> usize;
    async fn embed(&self, inputs: &[EmbedInput<'_>]) -> Result<Embeddings>;
    /// A search query's vector: as a document's, but for models that embed
    /// queries their own way (Cohere's `search_query`).
    async fn embed_query(&self, input: EmbedInput<'_>) -> Result<Embeddings> {
        self.embed(&[input]).await
    }
    /// The model of stand-in vectors this embedder may produce, to be replaced later.
    fn fallback_model(&self) -> Option<&str> {
        None
    }
    /// The external services behind this embedder.
    fn services(&self) -> Vec<&ExternalService> {
        Vec::new()
    }
}

/// Texts the local model embeds in one forward pass: as fast as 32 on two
/// cores, at under half the peak memory (`docpipe-local-embed-bench`).
const LOCAL_BATCH: usize = 8;

/// The embedder the settings name, routed by `SERVICE_MODE` (settings
/// loaded with [`Parts::EMBED`](crate::settings::Parts)); one that cannot
/// be built names its setting.
pub fn from_settings(
    settings: &PipelineSettings,
) -> std::result::Result<Arc<dyn Embedder>, ConfigError> {
    routed(settings.embedding(), settings)
}

/// During a model change (`NEXT_EMBEDDING_*`), the next model's embedder,
/// routed the same way; `None` when there is no change, or with
/// `SERVICE_MODE=mock`, where both models are the mock.
pub fn next_from_settings(
    settings: &PipelineSettings,
) -> std::result::Result<Option<Arc<dyn Embedder>>, ConfigError> {
    match &settings.next_embedding {
        Some(next) if settings.services.mode != ServiceMode::Mock => routed(next, settings)
            .map(Some)
            .map_err(crate::settings::of_next_model),
        _ => Ok(None),
    }
}

fn routed(
    embedding: &EmbeddingSettings,
    settings: &PipelineSettings,
) -> std::result::Result<Arc<dyn Embedder>, ConfigError> {
    let services = &settings.services;
    let stand_in = || Arc::new(mock::MockEmbedder::new(mock::MODEL, embedding.dims));
    let configured: Arc<dyn Embedder> = match embedding.provider {
        EmbeddingProvider::Mock => {
            Arc::new(mock::MockEmbedder::new(embedding.model(), embedding.dims))
        }
        EmbeddingProvider::OpenAi | EmbeddingProvider::Azure => Arc::new(
            openai::OpenAiEmbedder::new(embedding, &settings.external)
                .map_err(|e| invalid("EMBEDDING_PROVIDER", embedding.provider, &e.to_string()))?,
        ),
        EmbeddingProvider::Local => Arc::new(local_embedder(embedding)?),
        EmbeddingProvider::Bedrock => Arc::new(
            bedrock::BedrockEmbedder::new(embedding, &settings.external)
                .map_err(|reason| invalid("EMBEDDING_MODEL", embedding.model(), &reason))?,
        ),
    };
    Ok(match services.mode {
        ServiceMode::Mock => stand_in(),
        ServiceMode::Real => configured,
        ServiceMode::Hybrid if services.production() || !configured.billable() => {
            if services.production() {
                tracing::warn!("SERVICE_MODE=hybrid never falls back to mocks in production");
            }
            configured
        }
        ServiceMode::Hybrid => Arc::new(router::FallbackEmbedder::new(configured, stand_in())),
    })
}

/// The local model `EMBEDDING_MODEL_DIR` holds, which must make vectors of
/// `EMBEDDING_DIMS`.
fn local_embedder(
    embedding: &EmbeddingSettings,
) -> std::result::Result<local::LocalEmbedder, ConfigError> {
    let dir = embedding.model_dir().ok_or_else(|| ConfigError::Missing {
        name: "EMBEDDING_MODEL_DIR".into(),
    })?;
    let embedder =
        local::LocalEmbedder::load(embedding.model(), dir, embedding.threads(), LOCAL_BATCH)
            .map_err(|e| invalid("EMBEDDING_MODEL_DIR", dir.display(), &e.reason))?;
    if embedder.dims() != embedding.dims {
        return Err(invalid(
            "EMBEDDING_DIMS",
            embedding.dims,
            &format!(
                "the model in {} makes {}-dimension vectors",
                dir.display(),
                embedder.dims()
            ),
        ));
    }
    Ok(embedder)
}
