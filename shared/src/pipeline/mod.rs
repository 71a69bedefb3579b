//! The pipeline's stages as plain async functions over the blob store, the
//! queue and the embedder, so the same code runs in Lambda and locally.

pub mod chunk;
pub mod embed;
pub mod finalize;
pub mod ingest;
pub mod parse;
pub mod sweeper;

use crate::adapters::blob::BlobStore;
use crate::adapters::llamaparse::LlamaParseClient;
use crate::adapters::queue::{Queue, Stage, StageMessage};
use crate::chunking::Chunker;
use crate::domain::state::JobState;
use crate::embedding::{self, Embedder};
use crate::error::{ConfigError, Error, Rejection, Result};
use crate::external::{self, ExternalService};
use crate::ops::metrics::{self, Metric};
use crate::settings::{
    CacheScope, ChunkingSettings, CostPolicy, EmbeddingSettings, ParserSettings, Parts,
    PipelineSettings, ServiceMode, invalid,
};
use crate::store::jobs::{self, Job};
use deadpool_postgres::Pool;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use tracing::Instrument;
use uuid::Uuid;

/// Everything a stage needs, built once per process and shared. The parts
/// only some stages use are built by the processes that run those stages.
pub struct Pipeline {
    pub db: Pool,
    pub blobs: Arc<dyn BlobStore>,
    pub queue: Arc<dyn Queue>,
    pub max_file_bytes: u64,
    pub embed_batch_size: u32,
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

/// What the embed stage, search and the sweeper use.
pub struct Embedding {
    pub embedder: Arc<dyn Embedder>,
    /// Whose cached vectors a tenant may reuse.
    pub cache_scope: CacheScope,
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
        services.extend(self.embedding.iter().flat_map(|e| e.embedder.services()));
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
    let chunker = Chunker::new(settings).map_err(|e| {
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
    let embedder = embedding::from_settings(settings)
        .map_err(|e| invalid("EMBEDDING_PROVIDER", embedding.provider, &e.to_string()))?;
    Ok(Embedding {
        embedder,
        cache_scope: embedding.cache_scope,
    })
}

/// What handling one stage message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    pub job_id: Uuid,
    /// The state the job ended in, if this message ended it.
    pub ended: Option<JobState>,
}

/// One stage of the pipeline: which messages it takes, and its work on one.
/// Every stage has this shape, so a process runs one stage or all alike.
pub trait StageHandler {
    /// The parts of the pipeline it uses: what a process running it builds
    /// (and whose settings, and keys, it reads).
    const PARTS: Parts;
    fn accepts(message: &StageMessage) -> bool;
    /// The work for `message` (one it accepts); `Some(state)` when it ended the job.
    fn run<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> BoxFuture<'a, Result<Option<JobState>>>;
}

pub struct ParseStage;
pub struct ChunkStage;
pub struct EmbedStage;

impl StageHandler for ParseStage {
    const PARTS: Parts = Parts {
        parse: true,
        ..Parts::NONE
    };
    fn accepts(message: &StageMessage) -> bool {
        matches!(message.stage, Stage::Parse | Stage::ParseCheck { .. })
    }
    fn run<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> BoxFuture<'a, Result<Option<JobState>>> {
        parse::parse(pipeline, message).boxed()
    }
}

impl StageHandler for ChunkStage {
    const PARTS: Parts = Parts {
        chunk: true,
        ..Parts::NONE
    };
    fn accepts(message: &StageMessage) -> bool {
        matches!(message.stage, Stage::Chunk)
    }
    fn run<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> BoxFuture<'a, Result<Option<JobState>>> {
        chunk::chunk(pipeline, message).boxed()
    }
}

impl StageHandler for EmbedStage {
    const PARTS: Parts = Parts::EMBED;
    fn accepts(message: &StageMessage) -> bool {
        matches!(message.stage, Stage::Embed { .. })
    }
    fn run<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> BoxFuture<'a, Result<Option<JobState>>> {
        embed::embed(pipeline, message).boxed()
    }
}

/// The stages a process runs: one (each Lambda function), or all
/// ([`AllStages`]: the local pipeline and tests). A stage's code is in a
/// binary only if the binary runs it.
pub trait Stages {
    const PARTS: Parts;
    /// The work for `message`, if this process runs its stage. Chosen
    /// outside any async state machine, and boxed: an async `match` would
    /// keep every arm's code (the unreachable states of its state machine),
    /// so the binary would hold all stages again.
    fn work<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> Option<BoxFuture<'a, Result<Option<JobState>>>>;
}

impl<S: StageHandler> Stages for S {
    const PARTS: Parts = S::PARTS;
    fn work<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> Option<BoxFuture<'a, Result<Option<JobState>>>> {
        S::accepts(message).then(|| S::run(pipeline, message))
    }
}

pub struct AllStages;

impl Stages for AllStages {
    const PARTS: Parts = Parts::ALL;
    fn work<'a>(
        pipeline: &'a Pipeline,
        message: &'a StageMessage,
    ) -> Option<BoxFuture<'a, Result<Option<JobState>>>> {
        ParseStage::work(pipeline, message)
            .or_else(|| ChunkStage::work(pipeline, message))
            .or_else(|| EmbedStage::work(pipeline, message))
    }
}

/// Runs one stage message. A rejection fails the job and is handled (the
/// message is done); a transient error is returned so the message is retried.
pub async fn handle(pipeline: &Pipeline, message: &StageMessage) -> Result<Handled> {
    handle_stages::<AllStages>(pipeline, message).await
}

/// [`handle`] in a process that runs the stages `S` only. A message for
/// another stage (on the wrong queue) is sent on to its own queue.
pub async fn handle_stages<S: Stages>(
    pipeline: &Pipeline,
    message: &StageMessage,
) -> Result<Handled> {
    let handled = metrics::scope(
        message.stage.name(),
        run_stage::<S>(pipeline, message).instrument(stage_span(message)),
    )
    .await;
    pipeline.record_breakers().await;
    handled
}

/// The span around work on a stage message: every log line inside carries
/// the stage, the job and the upload's correlation id.
pub fn stage_span(message: &StageMessage) -> tracing::Span {
    tracing::info_span!(
        "stage",
        stage = message.stage.name(),
        job_id = %message.job_id,
        correlation_id = %message.correlation_id,
    )
}

async fn run_stage<S: Stages>(pipeline: &Pipeline, message: &StageMessage) -> Result<Handled> {
    let job_id = message.job_id;
    let started = std::time::Instant::now();
    let Some(work) = S::work(pipeline, message) else {
        tracing::warn!("message for another stage's queue; sent on to its own");
        pipeline.queue.send(vec![message.clone()]).await?;
        return Ok(Handled {
            job_id,
            ended: None,
        });
    };
    let result = work.await;
    match result {
        Ok(ended) => {
            count_ended(ended);
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::info!(
                elapsed_ms,
                ended = ended.map(JobState::as_str),
                "stage done"
            );
            Ok(Handled { job_id, ended })
        }
        Err(Error::Rejected(reason)) => {
            tracing::warn!(code = reason.code(), %reason, "job failed");
            metrics::error(reason.code());
            let failed = jobs::fail(&mut pipeline.db.get().await?, job_id, &reason).await?;
            count_ended(failed.then_some(JobState::Failed));
            Ok(Handled {
                job_id,
                ended: failed.then_some(JobState::Failed),
            })
        }
        Err(Error::Waiting(wait)) => {
            metrics::add(Metric::SpendingStopped, 1.0);
            jobs::wait(&pipeline.db.get().await?, job_id, &wait).await?;
            Ok(Handled {
                job_id,
                ended: None,
            })
        }
        Err(transient) => {
            metrics::error(transient.kind());
            Err(transient)
        }
    }
}

fn count_ended(ended: Option<JobState>) {
    match ended {
        Some(JobState::Complete) => metrics::add(Metric::JobsCompleted, 1.0),
        Some(JobState::Failed) => metrics::add(Metric::JobsFailed, 1.0),
        _ => {}
    }
}

/// Fails the job of a message that will not be delivered again (its retries
/// are used up), recording the last error. Returns whether the job failed now.
pub async fn give_up(
    pipeline: &Pipeline,
    message: &StageMessage,
    attempts: u32,
    error: &Error,
) -> bool {
    record_give_up(pipeline, message.job_id, attempts, error)
        .instrument(stage_span(message))
        .await
}

async fn record_give_up(pipeline: &Pipeline, job_id: Uuid, attempts: u32, error: &Error) -> bool {
    let last_error = match error {
        Error::Transient(detail) => detail.clone(),
        other => other.to_string(),
    };
    let reason = Rejection::RetriesExhausted {
        attempts,
        last_error,
    };
    tracing::error!(%job_id, attempts, %error, "giving up on message");
    record_failure(pipeline, job_id, &reason).await
}

/// Fails the job of `message` with `reason` (its work cannot go on: it
/// panicked). Returns whether the job failed now.
pub async fn fail_job(pipeline: &Pipeline, message: &StageMessage, reason: &Rejection) -> bool {
    let job_id = message.job_id;
    let span = stage_span(message);
    span.in_scope(|| tracing::error!(code = reason.code(), %reason, "job failed"));
    metrics::error(reason.code());
    record_failure(pipeline, job_id, reason)
        .instrument(span)
        .await
}

async fn record_failure(pipeline: &Pipeline, job_id: Uuid, reason: &Rejection) -> bool {
    let failed = match pipeline.db.get().await {
        Ok(mut client) => jobs::fail(&mut client, job_id, reason).await,
        Err(e) => Err(e.into()),
    };
    failed.unwrap_or_else(|e| {
        // The sweeper fails the job later if this could not.
        tracing::error!(%job_id, error = %e, "could not record the failure on the job");
        false
    })
}

/// The job if it is in `expected`; `None` (logged) for a stale or unknown job,
/// whose message is then acknowledged without effect.
async fn job_in_state(
    pipeline: &Pipeline,
    job_id: Uuid,
    expected: JobState,
    stage: &str,
) -> Result<Option<Job>> {
    let job = jobs::find(&pipeline.db.get().await?, job_id).await?;
    match job {
        Some(job) if job.state == expected => Ok(Some(job)),
        // This stage's work is done but the message came back: the instance
        // that did it may have died before sending the next stage's messages.
        // Send them again (every stage is idempotent) rather than leave the
        // job to the sweeper.
        Some(job)
            if matches!(
                (expected, job.state),
                (JobState::Queued, JobState::Parsed) | (JobState::Parsed, JobState::Chunked)
            ) =>
        {
            tracing::info!(%job_id, stage, state = %job.state, "redelivered after its work was done; next stage sent again");
            pipeline
                .queue
                .send(resume_messages(&job, pipeline.embed_batch_size))
                .await?;
            Ok(None)
        }
        Some(job) => {
            tracing::info!(%job_id, stage, state = %job.state, "stale message: job already moved; acknowledged");
            Ok(None)
        }
        None => {
            tracing::warn!(%job_id, stage, "message for an unknown job; acknowledged");
            Ok(None)
        }
    }
}

/// Runs CPU-heavy work (parsing, tokenizing) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::transient("worker thread", e))
}

/// The messages that move a job on from where it is; empty for an ended job.
/// For resuming work whose messages were lost (local runs, the sweeper).
pub fn resume_messages(job: &Job, embed_batch_size: u32) -> Vec<StageMessage> {
    let stages: Vec<Stage> = match job.state {
        JobState::Queued => vec![Stage::Parse],
        JobState::Parsed => vec![Stage::Chunk],
        JobState::Chunked => {
            chunk::embed_stages(job.chunk_count.unwrap_or(0) as u32, embed_batch_size).collect()
        }
        JobState::Complete | JobState::Failed | JobState::Superseded => Vec::new(),
    };
    stages
        .into_iter()
        .map(|stage| StageMessage {
            job_id: job.id,
            correlation_id: job.correlation_id.clone(),
            stage,
        })
        .collect()
}
