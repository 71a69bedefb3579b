//! The embedding provider: which, its model, its limits, and whose cached
//! vectors a tenant reuses.

use super::{Secret, Settings, choice, invalid, secs};
use crate::error::ConfigError;
use serde::Deserialize;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default dimension: OpenAI text-embedding-3-small.
pub const DEFAULT_EMBEDDING_DIMS: usize = 1536;
/// The mock embedder's model name (`EMBEDDING_PROVIDER=mock`).
pub const MOCK_EMBEDDING_MODEL: &str = "docpipe-mock-embedding-v1";
/// pgvector's HNSW index takes `vector` columns of at most this many dimensions.
pub const MAX_HNSW_DIMS: usize = 2000;
/// ...and `halfvec` columns (pgvector ≥ 0.7) of at most this many.
pub const MAX_HALFVEC_HNSW_DIMS: usize = 4000;

choice! {
    /// How the schema stores vectors (`EMBEDDING_STORAGE`), fixed at migration.
    pub enum VectorStorage from "EMBEDDING_STORAGE" {
        /// 4-byte floats, up to 2 000 dimensions.
        #[default]
        Vector,
        /// 2-byte floats, up to 4 000 dimensions: half the table and index.
        Halfvec,
    }
}

impl VectorStorage {
    /// The storage `explicit` names, else the one `dims` needs.
    pub fn for_dims(explicit: Option<VectorStorage>, dims: usize) -> VectorStorage {
        explicit.unwrap_or(if dims > MAX_HNSW_DIMS {
            VectorStorage::Halfvec
        } else {
            VectorStorage::Vector
        })
    }

    /// The pgvector column type.
    pub fn sql_type(self) -> &'static str {
        match self {
            VectorStorage::Vector => "vector",
            VectorStorage::Halfvec => "halfvec",
        }
    }

    /// The HNSW operator class for cosine distance on that type.
    pub fn cosine_ops(self) -> &'static str {
        match self {
            VectorStorage::Vector => "vector_cosine_ops",
            VectorStorage::Halfvec => "halfvec_cosine_ops",
        }
    }

    fn max_dims(self) -> usize {
        match self {
            VectorStorage::Vector => MAX_HNSW_DIMS,
            VectorStorage::Halfvec => MAX_HALFVEC_HNSW_DIMS,
        }
    }
}

/// The operator class of an HNSW index over bits (Hamming distance).
const BINARY_OPS: &str = "bit_hamming_ops";

choice! {
    /// The search index over the vectors (`EMBEDDING_INDEX`), kept as
    /// `docpipe migrate` last made it.
    pub enum VectorIndex from "EMBEDDING_INDEX" {
        /// HNSW over the vectors themselves.
        #[default]
        Hnsw,
        /// HNSW over their binary quantization (one bit a dimension), its
        /// nearest re-ranked by the full vectors: a sixth of the memory.
        Binary,
    }
}

impl VectorIndex {
    /// The kind of the index Postgres describes as `definition`
    /// (`pg_get_indexdef`, or [`VectorIndex::definition`]'s).
    pub fn of_definition(definition: &str) -> VectorIndex {
        if definition.contains(BINARY_OPS) {
            VectorIndex::Binary
        } else {
            VectorIndex::Hnsw
        }
    }

    /// The statement that builds index `name` of this kind over `column`, of
    /// `dims` values stored as `storage` (all plain names made by docpipe).
    pub fn definition(
        self,
        name: &str,
        column: &str,
        dims: usize,
        storage: VectorStorage,
    ) -> String {
        let indexed = match self {
            VectorIndex::Hnsw => format!("{column} {}", storage.cosine_ops()),
            VectorIndex::Binary => {
                format!("(binary_quantize({column})::bit({dims})) {BINARY_OPS}")
            }
        };
        format!("CREATE INDEX {name} ON upload_pipeline.document_chunks USING hnsw ({indexed})")
    }
}

choice! {
    pub enum EmbeddingProvider from "EMBEDDING_PROVIDER" {
        /// In-process, deterministic, free.
        #[default]
        Mock,
        /// Any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM, TEI).
        OpenAi,
        /// An Azure OpenAI deployment: `EMBEDDING_MODEL` names the deployment.
        Azure,
        /// A BERT-family sentence model run in-process from `EMBEDDING_MODEL_DIR`.
        Local,
        /// Amazon Bedrock (Titan Text Embeddings V2, Cohere Embed v3), signed
        /// with the process's IAM role: no key.
        Bedrock,
    }
}

choice! {
    /// Which tenants reuse one another's cached vectors (`EMBEDDING_CACHE_SCOPE`).
    pub enum CacheScope from "EMBEDDING_CACHE_SCOPE" {
        /// Each tenant its own cache (the default): what a tenant is billed never
        /// tells whether another tenant holds a text.
        #[default]
        Tenant,
        /// One cache for every tenant of the deployment: for tenants that trust
        /// one another (one organisation), who then pay once for a shared text.
        Shared,
    }
}

impl CacheScope {
    /// The cache scope `tenant`'s vectors are kept and found in.
    pub fn of(self, tenant: &str) -> &str {
        match self {
            CacheScope::Tenant => tenant,
            CacheScope::Shared => "",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EmbeddingSettings {
    /// `EMBEDDING_PROVIDER`: mock (default), openai, azure or local.
    #[serde(rename = "embedding_provider")]
    pub provider: EmbeddingProvider,
    /// `EMBEDDING_MODEL`: by default the mock's, text-embedding-3-small, or
    /// for the local provider its directory's name.
    #[serde(rename = "embedding_model")]
    model: Option<String>,
    /// `EMBEDDING_DIMS` (1536, at most 4000: over 2000 stored as `halfvec`).
    #[serde(rename = "embedding_dims")]
    pub dims: usize,
    /// `OPENAI_BASE_URL`: up to and including `/v1`.
    #[serde(rename = "openai_base_url")]
    base_url: String,
    /// `OPENAI_API_KEY` (required for openai and azure).
    #[serde(rename = "openai_api_key")]
    api_key: Option<Secret>,
    /// `EMBEDDING_SEND_DIMENSIONS`: send the `dimensions` parameter (by
    /// default for text-embedding-3-*, the only models that accept it).
    #[serde(rename = "embedding_send_dimensions")]
    send_dimensions: Option<bool>,
    /// `EMBEDDING_TIMEOUT_SECS` (60) of each request.
    #[serde(rename = "embedding_timeout_secs", deserialize_with = "secs")]
    pub timeout: Duration,
    /// `AZURE_OPENAI_API_VERSION`: Azure's `api-version` query parameter.
    #[serde(rename = "azure_openai_api_version")]
    pub azure_api_version: String,
    /// The provider's limits: tokens per input (`EMBEDDING_MAX_INPUT_TOKENS`,
    /// 8192), inputs (`EMBEDDING_MAX_INPUTS`, 2048) and tokens
    /// (`EMBEDDING_MAX_REQUEST_TOKENS`, 300 000) per request.
    #[serde(rename = "embedding_max_input_tokens")]
    pub max_input_tokens: u32,
    #[serde(rename = "embedding_max_inputs")]
    pub max_inputs_per_request: usize,
    #[serde(rename = "embedding_max_request_tokens")]
    pub max_request_tokens: u32,
    /// `EMBEDDING_TPM`, `EMBEDDING_RPM`: client-side limits shared by every
    /// call in this process (per container in Lambda); none by default.
    #[serde(rename = "embedding_tpm")]
    tokens_per_minute: Option<u32>,
    #[serde(rename = "embedding_rpm")]
    requests_per_minute: Option<u32>,
    /// `EMBEDDING_USD_PER_MILLION_TOKENS`: by default the list price of the
    /// model ([`list_price_per_million_tokens`]).
    #[serde(rename = "embedding_usd_per_million_tokens")]
    usd_per_million_tokens: Option<f64>,
    /// `EMBEDDING_CACHE_SCOPE`: tenant (default) or shared.
    #[serde(rename = "embedding_cache_scope")]
    pub cache_scope: CacheScope,
    /// `EMBEDDING_MODEL_DIR` (required for local): a sentence-transformers
    /// model directory.
    #[serde(rename = "embedding_model_dir")]
    model_dir: Option<PathBuf>,
    /// `EMBEDDING_THREADS`: threads the local model may use (by default one
    /// per core).
    #[serde(rename = "embedding_threads")]
    threads: Option<usize>,
}

/// More inference threads than this only contend (Lambda has at most 6 cores).
const MAX_EMBEDDING_THREADS: usize = 64;

impl Default for EmbeddingSettings {
    fn default() -> Self {
        EmbeddingSettings {
            provider: EmbeddingProvider::Mock,
            model: None,
            dims: DEFAULT_EMBEDDING_DIMS,
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            send_dimensions: None,
            timeout: Duration::from_secs(60),
            azure_api_version: "2024-10-21".into(),
            max_input_tokens: 8192,
            max_inputs_per_request: 2048,
            max_request_tokens: 300_000,
            tokens_per_minute: None,
            requests_per_minute: None,
            usd_per_million_tokens: None,
            cache_scope: CacheScope::Tenant,
            model_dir: None,
            threads: None,
        }
    }
}

impl Settings for EmbeddingSettings {
    fn check(mut self) -> Result<Self, ConfigError> {
        check_dims("EMBEDDING_DIMS", self.dims, VectorStorage::Halfvec)?;
        match self.provider {
            EmbeddingProvider::OpenAi | EmbeddingProvider::Azure if self.api_key.is_none() => {
                return Err(ConfigError::Missing {
                    name: "OPENAI_API_KEY".into(),
                });
            }
            EmbeddingProvider::Local => {
                let dir = local_model_dir(self.provider, self.model_dir.as_deref())?
                    .expect("the local provider");
                if self.model.is_none() {
                    self.model = dir.file_name().map(|name| name.to_string_lossy().into());
                }
            }
            _ => {}
        }
        match self.threads {
            Some(0) => return Err(invalid("EMBEDDING_THREADS", 0, "must be at least 1")),
            Some(threads) if threads > MAX_EMBEDDING_THREADS => {
                return Err(invalid(
                    "EMBEDDING_THREADS",
                    threads,
                    &format!("must be at most {MAX_EMBEDDING_THREADS} (one per core is enough)"),
                ));
            }
            _ => {}
        }
        for (name, limit) in [
            ("EMBEDDING_TPM", self.tokens_per_minute),
            ("EMBEDDING_RPM", self.requests_per_minute),
        ] {
            if limit == Some(0) {
                return Err(invalid(name, 0, "must be at least 1 (unset for no limit)"));
            }
        }
        self.base_url = self.base_url.trim_end_matches('/').to_string();
        Ok(self)
    }
}

/// The local model's directory, when the provider is local; which it needs.
pub(super) fn local_model_dir(
    provider: EmbeddingProvider,
    dir: Option<&Path>,
) -> Result<Option<&Path>, ConfigError> {
    match (provider, dir) {
        (EmbeddingProvider::Local, None) => Err(ConfigError::Missing {
            name: "EMBEDDING_MODEL_DIR".into(),
        }),
        (EmbeddingProvider::Local, dir) => Ok(dir),
        _ => Ok(None),
    }
}

/// The schema's vector columns must fit pgvector's HNSW index on `storage`.
pub(super) fn check_dims(
    name: &str,
    dims: usize,
    storage: VectorStorage,
) -> Result<(), ConfigError> {
    let most = storage.max_dims();
    if dims == 0 || dims > most {
        return Err(invalid(
            name,
            dims,
            &format!(
                "must be 1..={most} with EMBEDDING_STORAGE={storage} (pgvector's HNSW limit); \
                 halfvec takes up to {MAX_HALFVEC_HNSW_DIMS}, or request fewer with the `dimensions` parameter"
            ),
        ));
    }
    Ok(())
}

impl EmbeddingSettings {
    pub fn model(&self) -> &str {
        self.model.as_deref().unwrap_or(match self.provider {
            EmbeddingProvider::Mock => MOCK_EMBEDDING_MODEL,
            EmbeddingProvider::OpenAi | EmbeddingProvider::Azure => "text-embedding-3-small",
            EmbeddingProvider::Local => "local",
            EmbeddingProvider::Bedrock => "amazon.titan-embed-text-v2:0",
        })
    }

    /// The local model's directory (with `EMBEDDING_PROVIDER=local`).
    pub fn model_dir(&self) -> Option<&Path> {
        self.model_dir.as_deref()
    }

    /// Threads the local model may use.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The key (empty for the mock, which needs none).
    pub fn api_key(&self) -> Secret {
        self.api_key.clone().unwrap_or_default()
    }

    pub fn send_dimensions(&self) -> bool {
        self.send_dimensions
            .unwrap_or_else(|| self.model().starts_with("text-embedding-3"))
    }

    pub fn tokens_per_minute(&self) -> Option<NonZeroU32> {
        self.tokens_per_minute.and_then(NonZeroU32::new)
    }

    pub fn requests_per_minute(&self) -> Option<NonZeroU32> {
        self.requests_per_minute.and_then(NonZeroU32::new)
    }

    pub fn usd_per_million_tokens(&self) -> f64 {
        self.usd_per_million_tokens
            .unwrap_or_else(|| list_price_per_million_tokens(self.model()))
    }
}

/// OpenAI's and Bedrock's list prices (USD per million input tokens, 2026-11); other models
/// are free unless `EMBEDDING_USD_PER_MILLION_TOKENS` says otherwise.
fn list_price_per_million_tokens(model: &str) -> f64 {
    match model {
        "text-embedding-3-small" => 0.02,
        "text-embedding-3-large" => 0.13,
        "text-embedding-ada-002" => 0.10,
        // Amazon Bedrock, on-demand (us-east-1).
        "amazon.titan-embed-text-v2:0" => 0.02,
        "cohere.embed-english-v3" | "cohere.embed-multilingual-v3" => 0.10,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::env;
    use super::*;

    #[test]
    fn defaults_are_the_mock() {
        let settings = env(&[]).load::<EmbeddingSettings>().unwrap();
        assert_eq!(settings.provider, EmbeddingProvider::Mock);
        assert_eq!(settings.dims, 1536);
        assert_eq!(settings.model(), MOCK_EMBEDDING_MODEL);
        assert_eq!(settings.usd_per_million_tokens(), 0.0);
    }

    #[test]
    fn a_provider_needs_its_key_and_dims_fit_the_index() {
        let err = env(&[("EMBEDDING_PROVIDER", "openai")])
            .load::<EmbeddingSettings>()
            .unwrap_err();
        assert_eq!(err.to_string(), "OPENAI_API_KEY is not set");
        let err = env(&[("EMBEDDING_DIMS", "4001")])
            .load::<EmbeddingSettings>()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("EMBEDDING_DIMS=\"4001\" is invalid"),
            "{err}"
        );
        let err = env(&[("EMBEDDING_TPM", "0")])
            .load::<EmbeddingSettings>()
            .unwrap_err();
        assert!(err.to_string().starts_with("EMBEDDING_TPM=\"0\""), "{err}");
        let openai = env(&[
            ("EMBEDDING_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "sk-live-123"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1/"),
        ])
        .load::<EmbeddingSettings>()
        .unwrap();
        assert_eq!(openai.model(), "text-embedding-3-small");
        assert!(openai.send_dimensions());
        assert_eq!(openai.usd_per_million_tokens(), 0.02);
        assert_eq!(openai.base_url(), "http://127.0.0.1:8080/v1");
        assert!(!format!("{openai:?}").contains("sk-live-123"));
    }
}
