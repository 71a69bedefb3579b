//! The settings of a process that runs stages: what every stage reads, and
//! the settings of each part (parsing, chunking, embedding) it builds.

use super::{
    ChunkingSettings, CostPolicy, DatabaseSettings, EmbeddingSettings, Env, ExternalPolicy,
    LlamaParseSettings, ParserProvider, ParserSettings, RerankSettings, SearchSettings,
    ServiceSettings, Settings, invalid, of_next_model, secs,
};
use crate::error::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Default largest object accepted: 100 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;

/// What every stage reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StageSettings {
    /// `EMBED_BATCH_SIZE` (128): chunks per embed message (and per provider
    /// request), 1–2048.
    pub embed_batch_size: usize,
    /// `MAX_FILE_BYTES` (100 MiB): the largest object accepted.
    pub max_file_bytes: u64,
    /// `STAGE_DEADLINE_SECS` (120): the longest one delivery of a message may
    /// be worked on (in Lambda, the function timeout).
    #[serde(rename = "stage_deadline_secs", deserialize_with = "secs")]
    pub stage_deadline: Duration,
    /// `TENANT_STAGE_SHARE` (4): the most messages of one stage a tenant has
    /// in hand while a tenant with fewer has a job waiting for that stage;
    /// the rest let it go first (`pipeline::fair_share`). 0 turns this off.
    pub tenant_stage_share: u32,
    /// `SYNC_TENANT_IN_FLIGHT` (100): while this many of a tenant's
    /// documents are in the pipeline, its sync adds no more (a slice, 250
    /// objects, may pass it once), so a backfill goes at the pipeline's
    /// pace instead of filling the stage queues ahead of other tenants'
    /// uploads (`docpipe_ingest::sync`). 0 turns the bound off.
    pub sync_tenant_in_flight: u32,
    /// `DOCPIPE_BLOB_DIR` (.local/blobs): where the local blob store keeps
    /// objects (CLI and tests; S3 in Lambda).
    #[serde(rename = "docpipe_blob_dir")]
    pub local_blob_dir: PathBuf,
}

impl Default for StageSettings {
    fn default() -> Self {
        StageSettings {
            embed_batch_size: 128,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            stage_deadline: Duration::from_secs(120),
            tenant_stage_share: 4,
            sync_tenant_in_flight: 100,
            local_blob_dir: PathBuf::from(".local/blobs"),
        }
    }
}

impl Settings for StageSettings {
    fn check(self) -> Result<Self, ConfigError> {
        if !(1..=2048).contains(&self.embed_batch_size) {
            return Err(invalid(
                "EMBED_BATCH_SIZE",
                self.embed_batch_size,
                "must be 1..=2048 (OpenAI's inputs per request)",
            ));
        }
        Ok(self)
    }
}

/// The parts of the pipeline a process builds, each with settings of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub parse: bool,
    pub chunk: bool,
    /// The embedder: for the embed stage, search and the sweeper.
    pub embed: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        parse: true,
        chunk: true,
        embed: true,
    };
    /// What `ingest` builds: none.
    pub const NONE: Parts = Parts {
        parse: false,
        chunk: false,
        embed: false,
    };
    /// The embedder alone (the API, the sweeper).
    pub const EMBED: Parts = Parts {
        embed: true,
        ..Parts::NONE
    };
}

/// Everything a process that runs stages reads: the concerns every stage
/// shares, and the settings of the parts it builds (`None` for the others,
/// whose variables, and keys, it never reads).
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub database: DatabaseSettings,
    pub stages: StageSettings,
    pub services: ServiceSettings,
    pub external: ExternalPolicy,
    pub cost: CostPolicy,
    pub parser: Option<ParserSettings>,
    /// With `PARSER=llamaparse`.
    pub llamaparse: Option<LlamaParseSettings>,
    pub chunking: Option<ChunkingSettings>,
    pub embedding: Option<EmbeddingSettings>,
    /// With the embedder, during a model change: the model each tenant's
    /// vectors move to (`NEXT_EMBEDDING_*`, [`Env::next_model`]).
    pub next_embedding: Option<EmbeddingSettings>,
    /// With the embedder: search's reranker (`RERANK_PROVIDER`) and scan.
    pub rerank: Option<RerankSettings>,
    pub search: Option<SearchSettings>,
}

impl PipelineSettings {
    pub fn load(env: &Env, parts: Parts) -> Result<PipelineSettings, ConfigError> {
        let stages: StageSettings = env.load()?;
        let parser = parts
            .parse
            .then(|| env.load::<ParserSettings>())
            .transpose()?;
        if let Some(parser) = &parser
            && parser.limits().timeout >= stages.stage_deadline
        {
            // Else a slow parse would end as a lost delivery, retried, not as parse_timeout.
            return Err(invalid(
                "PARSE_TIMEOUT_SECS",
                parser.limits().timeout.as_secs(),
                "must be below STAGE_DEADLINE_SECS (default 120)",
            ));
        }
        let llamaparse = parser
            .as_ref()
            .filter(|parser| parser.provider == ParserProvider::LlamaParse)
            .map(|_| env.load::<LlamaParseSettings>())
            .transpose()?;
        let embedding = parts
            .embed
            .then(|| env.load::<EmbeddingSettings>())
            .transpose()?;
        let next_embedding = match (&embedding, env.next_model()) {
            (Some(current), Some(next)) => Some(next_model(current, &next)?),
            _ => None,
        };
        let mut cost: CostPolicy = env.load()?;
        cost.embedding_usd_per_million_tokens = embedding
            .as_ref()
            .map_or(0.0, EmbeddingSettings::usd_per_million_tokens);
        Ok(PipelineSettings {
            database: env.load()?,
            stages,
            services: env.load()?,
            external: env.load()?,
            cost,
            parser,
            llamaparse,
            chunking: parts.chunk.then(|| env.load()).transpose()?,
            rerank: parts.embed.then(|| env.load()).transpose()?,
            search: parts.embed.then(|| env.load()).transpose()?,
            embedding,
            next_embedding,
        })
    }

    /// The embedding settings, for code that is only built with them.
    pub fn embedding(&self) -> &EmbeddingSettings {
        self.embedding.as_ref().expect("loaded with Parts::embed")
    }
}

/// A model change's next model: another model than the current one. Its
/// errors name the `NEXT_` variables.
fn next_model(current: &EmbeddingSettings, env: &Env) -> Result<EmbeddingSettings, ConfigError> {
    let next = env.load::<EmbeddingSettings>().map_err(of_next_model)?;
    if next.model() == current.model() {
        return Err(invalid(
            "NEXT_EMBEDDING_MODEL",
            next.model(),
            "is the current model (EMBEDDING_MODEL): nothing to change to",
        ));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::super::{VectorStorage, env};
    use super::*;

    #[test]
    fn a_process_reads_only_the_parts_it_builds() {
        let without_keys = env(&[
            ("DATABASE_URL", "postgres://x"),
            ("EMBEDDING_PROVIDER", "openai"),
            ("PARSER", "llamaparse"),
        ]);
        let ingest = PipelineSettings::load(&without_keys, Parts::NONE).unwrap();
        assert!(ingest.embedding.is_none() && ingest.parser.is_none());
        let err = PipelineSettings::load(&without_keys, Parts::EMBED).unwrap_err();
        assert_eq!(err.to_string(), "OPENAI_API_KEY is not set");
        let parse = Parts {
            parse: true,
            ..Parts::NONE
        };
        let err = PipelineSettings::load(&without_keys, parse).unwrap_err();
        assert_eq!(err.to_string(), "LLAMA_CLOUD_API_KEY is not set");
    }

    #[test]
    fn a_model_change_names_its_next_model_and_keeps_the_vector_size() {
        let base = [
            ("DATABASE_URL", "postgres://x"),
            ("EMBEDDING_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "sk-live-123"),
            ("EMBEDDING_DIMS", "1024"),
        ];
        let with = |next: &[(&'static str, &'static str)]| {
            let vars: Vec<_> = base.iter().chain(next).copied().collect();
            PipelineSettings::load(&env(&vars), Parts::EMBED)
        };
        assert!(with(&[]).unwrap().next_embedding.is_none());
        let settings = with(&[
            ("NEXT_EMBEDDING_PROVIDER", "bedrock"),
            ("NEXT_EMBEDDING_MODEL", "cohere.embed-english-v3"),
        ])
        .unwrap();
        let next = settings.next_embedding.unwrap();
        assert_eq!(next.model(), "cohere.embed-english-v3");
        assert_eq!((next.dims, next.usd_per_million_tokens()), (1024, 0.10));
        assert_eq!(
            settings.embedding.unwrap().model(),
            "text-embedding-3-small"
        );
        let err = with(&[("NEXT_EMBEDDING_MODEL", "text-embedding-3-small")]).unwrap_err();
        assert!(err.to_string().contains("is the current model"), "{err}");
        let large = with(&[
            ("NEXT_EMBEDDING_MODEL", "text-embedding-3-large"),
            ("NEXT_EMBEDDING_DIMS", "3072"),
        ])
        .unwrap();
        let sizes: Vec<_> = large
            .database
            .vector_sizes()
            .iter()
            .map(|size| (size.dims, size.storage, size.setting("EMBEDDING_DIMS")))
            .collect();
        assert_eq!(
            sizes,
            [
                (1024, VectorStorage::Vector, "EMBEDDING_DIMS".to_string()),
                (
                    3072,
                    VectorStorage::Halfvec,
                    "NEXT_EMBEDDING_DIMS".to_string()
                )
            ]
        );
        let err = with(&[("NEXT_EMBEDDING_DIMS", "4001")]).unwrap_err();
        assert!(
            err.to_string().starts_with("NEXT_EMBEDDING_DIMS=\"4001\""),
            "{err}"
        );
        let err = with(&[("NEXT_EMBEDDING_PROVIDER", "local")]).unwrap_err();
        assert_eq!(err.to_string(), "NEXT_EMBEDDING_MODEL_DIR is not set");
    }

    #[test]
    fn a_parse_ends_before_its_delivery() {
        let err = PipelineSettings::load(
            &env(&[
                ("DATABASE_URL", "postgres://x"),
                ("PARSE_TIMEOUT_SECS", "30"),
                ("STAGE_DEADLINE_SECS", "30"),
            ]),
            Parts::ALL,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("below STAGE_DEADLINE_SECS"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let settings = PipelineSettings::load(
            &env(&[
                ("DATABASE_URL", "postgres://user:hunter2@db/x"),
                ("EMBEDDING_PROVIDER", "openai"),
                ("OPENAI_API_KEY", "sk-live-123"),
            ]),
            Parts::ALL,
        )
        .unwrap();
        let printed = format!("{settings:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("sk-live-123"),
            "{printed}"
        );
        assert_eq!(settings.cost.embedding_usd_per_million_tokens, 0.02);
    }
}
