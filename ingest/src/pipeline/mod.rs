//! The pipeline: its stages (`ingest`, `parse`, `chunk`, `embed`,
//! `finalize`) and metadata sidecars (`metadata`) as plain async functions over the blob store, the queue and
//! the embedder, so the same code runs in Lambda and locally; `Pipeline`,
//! the clients and parts they use; how a message becomes a stage's work
//! (`stage`) and who goes first (`fair_share`), what resumes a job
//! (`resume`), what ends one that cannot go on (`give_up`); and the sweeper.

pub mod chunk;
pub mod embed;
pub mod fair_share;
pub mod finalize;
mod give_up;
pub mod ingest;
pub mod metadata;
pub mod parse;
pub mod reembed;
mod resume;
mod stage;
pub mod sweeper;

pub use give_up::{fail_job, give_up};
pub(crate) use resume::job_in_state;
pub use resume::resume_messages;
pub use stage::{
    AllStages, ChunkStage, EmbedStage, Handled, ParseStage, StageHandler, Stages, handle,
    handle_stages, stage_span,
};

use crate::chunking::{Chunker, TokenCount};
use crate::embedding::local::ModelTokenizer;
use deadpool_postgres::Pool;
use docpipe_aws::blob::BlobStore;
use docpipe_aws::llamaparse::LlamaParseClient;
use docpipe_aws::queue::Queue;
use docpipe_core::embedding::models::Models;
use docpipe_core::error::{ConfigError, Error, Result};
use docpipe_core::external::{self, ExternalService};
use docpipe_core::settings::{
    CacheScope, ChunkingSettings, CostPolicy, EmbeddingSettings, ParserSettings, PipelineSettings,
    ServiceMode, invalid,
};
use std::sync::Arc;

/// Everything a stage needs, built once per process and shared. The parts
/// only some stages use are built by the processes that run those stages.
pub struct Pipeline {
    pub db: Pool,
    pub blobs: Arc<dyn BlobStore>,
    pub queue: Arc<dyn Queue>,
    pub max_file_bytes: u64,
    pub embed_batch_size: u32,
    pub fair_share: fair_share::FairShare,
    /// A tenant's documents in the pipeline at most while its sync adds more.
    pub sync_in_flight: u32,
    pub cost: CostPolicy,
    pub parsing: Option<Parsing>,
    pub chunking: Option<Chunking>,
    pub embedding: Option<Embedding>,
}

/// What the parse stage uses.
pub struct Parsing {
    /// Where documents are parsed: child processes within the parse limits.
    pub sandbox: crate::parsing::sandbox::ParseSandbox,
    /// LlamaParse, when `PARSER=llamaparse` and not `SERVICE_MODE=mock`.
    pub llamaparse: Option<RemoteParser>,
}

/// What the chunk stage uses.
pub struct Chunking {
    pub chunker: Arc<Chunker>,
    /// Texts being chunked at once (`CHUNK_CONCURRENCY`): each is held whole.
    pub slots: tokio::sync::Semaphore,
}

/// What the embed stage and the sweeper use (and search, of the models).
pub struct Embedding {
    /// Whose cached vectors a tenant may reuse.
    pub cache_scope: CacheScope,
    /// The embedders: the deployment's model; during a model change, the
    /// next one too.
    pub models: Models,
}

/// LlamaParse and how long to wait for it.
pub struct RemoteParser {
    pub client: LlamaParseClient,
    pub job_timeout: std::time::Duration,
    pub first_poll_delay: std::time::Duration,
    pub max_poll_delay: std::time::Duration,
    /// Parse locally when LlamaParse is down (hybrid mode outside production).
    pub local_fallback: bool,
}

impl Pipeline {
    /// The pipeline with the parts `settings` were loaded with.
    pub fn new(
        settings: &PipelineSettings,
        db: Pool,
        blobs: Arc<dyn BlobStore>,
        queue: Arc<dyn Queue>,
    ) -> std::result::Result<Pipeline, ConfigError> {
        Ok(Pipeline {
            db,
            blobs,
            queue,
            max_file_bytes: settings.stages.max_file_bytes,
            embed_batch_size: settings.stages.embed_batch_size as u32,
            fair_share: fair_share::FairShare {
                per_tenant: settings.stages.tenant_stage_share,
                hold: settings.stages.stage_deadline,
            },
            sync_in_flight: settings.stages.sync_tenant_in_flight,
            cost: settings.cost.clone(),
            parsing: settings
                .parser
                .as_ref()
                .map(|parser| parsing(parser, settings))
                .transpose()?,
            chunking: settings.chunking.as_ref().map(chunking).transpose()?,
            embedding: settings
                .embedding
                .as_ref()
                .map(|embedding| embedder(embedding, settings))
                .transpose()?,
        })
    }

    pub fn parsing(&self) -> Result<&Parsing> {
        self.parsing.as_ref().ok_or_else(|| not_built("parser"))
    }

    pub fn chunking(&self) -> Result<&Chunking> {
        self.chunking.as_ref().ok_or_else(|| not_built("chunker"))
    }

    pub fn embedding(&self) -> Result<&Embedding> {
        self.embedding.as_ref().ok_or_else(|| not_built("embedder"))
    }

    /// The external services this pipeline calls.
    pub fn external_services(&self) -> Vec<&ExternalService> {
        let mut services = Vec::new();
        services.extend(self.embedding.iter().flat_map(|e| e.models.services()));
        services.extend(
            self.parsing
                .iter()
                .flat_map(|p| &p.llamaparse)
                .map(|remote| remote.client.service()),
        );
        services
    }

    /// Records breakers that changed state while handling work.
    pub async fn record_breakers(&self) {
        external::health::record(&self.db, &self.external_services()).await;
    }
}

/// A part this process was not built with was asked for: a message routed
/// to the wrong function. Retried, so it is not lost, and then kept in the
/// dead-letter queue.
fn not_built(part: &str) -> Error {
    Error::Transient(format!(
        "this function has no {part}: its settings were not loaded"
    ))
}

fn parsing(
    parser: &ParserSettings,
    settings: &PipelineSettings,
) -> std::result::Result<Parsing, ConfigError> {
    let sandbox = crate::parsing::sandbox::ParseSandbox::new(
        parser.limits(),
        parser.parse_sandbox_exe.clone(),
    );
    let services = &settings.services;
    let Some(llamaparse) = settings
        .llamaparse
        .as_ref()
        .filter(|_| services.mode != ServiceMode::Mock)
    else {
        return Ok(Parsing {
            sandbox,
            llamaparse: None,
        });
    };
    let client = LlamaParseClient::new(llamaparse, &settings.external)
        .map_err(|e| invalid("LLAMAPARSE_BASE_URL", &llamaparse.base_url, &e.to_string()))?;
    Ok(Parsing {
        sandbox,
        llamaparse: Some(RemoteParser {
            client,
            job_timeout: llamaparse.job_timeout,
            first_poll_delay: llamaparse.first_poll_delay,
            max_poll_delay: llamaparse.max_poll_delay,
            local_fallback: services.falls_back(),
        }),
    })
}

fn chunking(settings: &ChunkingSettings) -> std::result::Result<Chunking, ConfigError> {
    let tokens = match settings.model_dir() {
        Some(dir) => TokenCount::Model(
            ModelTokenizer::load(dir)
                .map_err(|e| invalid("EMBEDDING_MODEL_DIR", dir.display(), &e.reason))?,
        ),
        None => TokenCount::Cl100k,
    };
    let chunker = Chunker::new(settings, tokens).map_err(|e| {
        invalid(
            "CHUNK_OVERLAP_TOKENS",
            settings.overlap_tokens,
            &e.to_string(),
        )
    })?;
    Ok(Chunking {
        chunker: Arc::new(chunker),
        slots: tokio::sync::Semaphore::new(settings.concurrency.max(1)),
    })
}

fn embedder(
    embedding: &EmbeddingSettings,
    settings: &PipelineSettings,
) -> std::result::Result<Embedding, ConfigError> {
    Ok(Embedding {
        cache_scope: embedding.cache_scope,
        models: crate::embedding::models(settings)?,
    })
}

/// Runs CPU-heavy work (parsing, tokenizing) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::transient("worker thread", e))
}
