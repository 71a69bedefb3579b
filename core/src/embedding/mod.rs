//! Turning text into vectors: what an embedder is, and which model serves
//! a tenant ([`models`]). The clients that call the models live in
//! `docpipe-ingest`'s `embedding`.

pub mod models;

use crate::error::Result;
use crate::external::ExternalService;
use async_trait::async_trait;

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
    /// The part of a search query the model reads: a query longer than the
    /// model's window is cut to its first tokens, as Bedrock's knowledge
    /// bases cut theirs (a chunk never is: it is refused).
    fn query_window<'a>(&self, text: &'a str) -> &'a str {
        text
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
