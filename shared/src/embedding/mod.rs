//! Turning chunk text into vectors.

pub mod mock;
pub mod openai;

use crate::config::{EmbeddingConfig, EmbeddingProvider};
use crate::error::Result;
use async_trait::async_trait;
use std::sync::Arc;

/// One text to embed, with its cl100k token count (known from chunking).
#[derive(Debug, Clone, Copy)]
pub struct EmbedInput<'a> {
    pub text: &'a str,
    pub tokens: u32,
}

/// Vectors in input order, and what the provider billed for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub billed_tokens: u64,
}

#[async_trait]
pub trait Embedder: Send + Sync {
    /// Service name for the cost ledger (`mock`, `openai`).
    fn service(&self) -> &'static str;
    /// Model name stored with every vector; search never mixes models.
    fn model(&self) -> &str;
    fn dims(&self) -> usize;
    async fn embed(&self, inputs: &[EmbedInput<'_>]) -> Result<Embeddings>;
}

/// The embedder the configuration names.
pub fn from_config(config: &EmbeddingConfig) -> Result<Arc<dyn Embedder>> {
    Ok(match config.provider {
        EmbeddingProvider::Mock => Arc::new(mock::MockEmbedder::new(&config.model, config.dims)),
        EmbeddingProvider::OpenAi => Arc::new(openai::OpenAiEmbedder::new(config)?),
    })
}
