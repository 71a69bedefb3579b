//! `SERVICE_MODE=hybrid` outside production: the configured provider, and the
//! mock embedder while the provider is failing. Fallback vectors carry the
//! mock's model name, so search (which asks for the provider's model) never
//! mixes them with real ones; the sweeper later replaces them with real ones.

use async_trait::async_trait;
use docpipe_core::embedding::{EmbedInput, Embedder, Embeddings};
use docpipe_core::error::Result;
use docpipe_core::external::ExternalService;
use std::sync::Arc;

pub struct FallbackEmbedder {
    provider: Arc<dyn Embedder>,
    fallback: Arc<dyn Embedder>,
}

impl FallbackEmbedder {
    pub fn new(provider: Arc<dyn Embedder>, fallback: Arc<dyn Embedder>) -> Self {
        FallbackEmbedder { provider, fallback }
    }

    /// `call` on the provider, or on the fallback while the provider is failing.
    async fn or_fallback<'a, F>(
        &'a self,
        call: impl Fn(&'a dyn Embedder) -> F,
    ) -> Result<Embeddings>
    where
        F: std::future::Future<Output = Result<Embeddings>>,
    {
        match call(self.provider.as_ref()).await {
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, fallback = self.fallback.model(),
                    "embedding provider unavailable; using the mock (not production)");
                call(self.fallback.as_ref()).await
            }
            result => result,
        }
    }
}

#[async_trait]
impl Embedder for FallbackEmbedder {
    fn billable(&self) -> bool {
        self.provider.billable()
    }
    fn service(&self) -> &'static str {
        self.provider.service()
    }
    fn model(&self) -> &str {
        self.provider.model()
    }
    fn dims(&self) -> usize {
        self.provider.dims()
    }
    fn query_window<'a>(&self, text: &'a str) -> &'a str {
        // The fallback's window is no smaller than any provider's.
        self.provider.query_window(text)
    }
    fn fallback_model(&self) -> Option<&str> {
        Some(self.fallback.model())
    }
    async fn embed(&self, inputs: &[EmbedInput<'_>]) -> Result<Embeddings> {
        self.or_fallback(|embedder| embedder.embed(inputs)).await
    }
    async fn embed_query(&self, input: EmbedInput<'_>) -> Result<Embeddings> {
        self.or_fallback(|embedder| embedder.embed_query(input))
            .await
    }
    fn services(&self) -> Vec<&ExternalService> {
        self.provider.services()
    }
}
