//! Settings from the environment, validated once at startup.

use crate::error::ConfigError;
use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Default chunk size in cl100k tokens.
pub const DEFAULT_CHUNK_TOKENS: usize = 512;
/// Default overlap between neighbouring chunks, in tokens.
pub const DEFAULT_CHUNK_OVERLAP: usize = 64;
/// Default chunks per embed message (and per provider request).
pub const DEFAULT_EMBED_BATCH: usize = 128;
/// Default dimension: OpenAI text-embedding-3-small.
pub const DEFAULT_EMBEDDING_DIMS: usize = 1536;
/// pgvector's HNSW index takes `vector` columns of at most this many dimensions.
pub const MAX_HNSW_DIMS: usize = 2000;
/// Default largest object accepted: 100 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingProvider {
    /// In-process, deterministic, free.
    Mock,
    /// Any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM, TEI).
    OpenAi,
    /// An Azure OpenAI deployment: `EMBEDDING_MODEL` names the deployment.
    Azure,
}

/// Which implementation of each external service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceMode {
    /// The in-process stand-ins only: mock embedder, local parsers. Free.
    Mock,
    /// The configured services only.
    Real,
    /// The configured services; outside production, the stand-ins when a
    /// service is down (fallback vectors keep the mock's model name).
    Hybrid,
}

/// Which tenants reuse one another's cached vectors (`EMBEDDING_CACHE_SCOPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheScope {
    /// Each tenant its own cache (the default): what a tenant is billed never
    /// tells whether another tenant holds a text.
    Tenant,
    /// One cache for every tenant of the deployment: for tenants that trust
    /// one another (one organisation), who then pay once for a shared text.
    Shared,
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

/// Retries, backoff and circuit breaker for calls to external services.
#[derive(Debug, Clone)]
pub struct ExternalPolicy {
    /// Attempts per call before the error goes back to the queue.
    pub max_attempts: u32,
    pub first_backoff: Duration,
    /// The longest wait spent in-process; a longer `Retry-After` is left to redelivery.
    pub max_wait: Duration,
    /// Failures in a row that open a service's breaker.
    pub breaker_threshold: u32,
    pub breaker_cool_down: Duration,
}

/// Prices and spending limits. Dollars are estimates from the price table,
/// recorded per call in `cost_ledger`.
#[derive(Debug, Clone)]
pub struct CostPolicy {
    /// New external calls stop for the day once all tenants spent this much.
    pub daily_budget_usd: f64,
    /// New external calls stop once this many went out in the last hour.
    pub hourly_request_cap: u32,
    /// The same limits for each tenant alone, unless `tenant_limits` says
    /// otherwise for it: one tenant at its limit never stops another.
    pub tenant_daily_budget_usd: f64,
    pub tenant_hourly_request_cap: u32,
    pub embedding_usd_per_million_tokens: f64,
    pub llamaparse_usd_per_page: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParserProvider {
    /// In-process parsers for text, markdown, HTML and PDF text layers.
    Local,
    /// LlamaParse (LlamaCloud) for the configured extensions, local for the rest.
    LlamaParse,
}

#[derive(Debug, Clone)]
pub struct LlamaParseConfig {
    /// Up to, not including, `/api/v1`.
    pub base_url: String,
    pub api_key: Secret,
    /// Lower-case extensions sent to LlamaParse (default: pdf).
    pub extensions: Vec<String>,
    /// HTTP timeout of each request.
    pub timeout: Duration,
    /// A parse job not done after this long fails the document.
    pub job_timeout: Duration,
    /// First delay before checking a submitted job; doubles up to `max_poll_delay`.
    pub first_poll_delay: Duration,
    pub max_poll_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct EmbeddingConfig {
    pub provider: EmbeddingProvider,
    pub model: String,
    pub dims: usize,
    /// Base URL up to and including `/v1`.
    pub base_url: String,
    pub api_key: Secret,
    /// Send the `dimensions` parameter (only text-embedding-3-* accept it).
    pub send_dimensions: bool,
    pub timeout: Duration,
    /// Azure's `api-version` query parameter.
    pub azure_api_version: String,
    /// The provider's limits: tokens per input, inputs and tokens per request.
    pub max_input_tokens: u32,
    pub max_inputs_per_request: usize,
    pub max_request_tokens: u32,
    /// Client-side limits shared by every call in this process (per container in Lambda).
    pub tokens_per_minute: Option<NonZeroU32>,
    pub requests_per_minute: Option<NonZeroU32>,
}

#[derive(Debug, Clone)]
pub struct ChunkingConfig {
    pub max_tokens: usize,
    /// Paragraphs join until a chunk holds this many tokens. Smaller: an
    /// edited paragraph re-embeds less beside itself, at more rows.
    pub min_tokens: usize,
    pub overlap_tokens: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: Secret,
    /// Extra root certificates (PEM) for TLS to Postgres (`sslmode=require`).
    pub database_ca_file: Option<std::path::PathBuf>,
    pub db_pool_size: usize,
    pub mode: ServiceMode,
    /// `production` (default) never falls back to mocks.
    pub production: bool,
    pub embedding: EmbeddingConfig,
    pub parser: ParserProvider,
    pub llamaparse: LlamaParseConfig,
    pub external: ExternalPolicy,
    pub cost: CostPolicy,
    pub chunking: ChunkingConfig,
    pub embed_batch_size: usize,
    /// Texts a process chunks at once (`CHUNK_CONCURRENCY`).
    pub chunk_concurrency: usize,
    pub cache_scope: CacheScope,
    pub max_file_bytes: u64,
    /// What parsing one document may cost.
    pub parse_limits: crate::parsing::ParseLimits,
    /// The longest one delivery of a message may be worked on
    /// (`STAGE_DEADLINE_SECS`; in Lambda, the function timeout).
    pub stage_deadline: Duration,
    /// The executable parse children run (`PARSE_SANDBOX_EXE`); by default
    /// the running one.
    pub parse_sandbox_exe: Option<PathBuf>,
    /// Where the local blob store keeps objects (CLI and tests; S3 in Lambda).
    pub local_blob_dir: PathBuf,
}

/// The stage queues' URLs.
#[derive(Debug, Clone)]
pub struct QueueUrls {
    pub parse: String,
    pub chunk: String,
    pub embed: String,
}

/// When the sweeper treats an unfinished job as stuck, and how often it
/// resumes one before failing it.
#[derive(Debug, Clone)]
pub struct SweepPolicy {
    /// Idle time after which a job in `queued`, `parsed` or `chunked` is stuck.
    pub queued_timeout: Duration,
    pub parsed_timeout: Duration,
    pub chunked_timeout: Duration,
    /// Resumes per job before it fails with `stuck`.
    pub max_retries: u32,
    /// Jobs claimed per run.
    pub batch: u32,
}

impl Default for SweepPolicy {
    fn default() -> Self {
        SweepPolicy {
            queued_timeout: Duration::from_secs(900),
            parsed_timeout: Duration::from_secs(900),
            chunked_timeout: Duration::from_secs(1800),
            max_retries: 3,
            batch: 100,
        }
    }
}

/// Settings of the deployed pipeline (Lambda, and the local runner against an emulator).
#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// The bucket holding `uploads/` and `parsed/`.
    pub bucket: String,
    pub queues: QueueUrls,
    /// Path-style S3 addressing (emulators); real S3 takes virtual-hosted style.
    pub s3_force_path_style: bool,
    /// The queues' redrive `maxReceiveCount`: the receive after which a failing
    /// message goes to its dead-letter queue and its job is failed.
    pub max_receive_count: u32,
    pub sweep: SweepPolicy,
}

impl AwsConfig {
    pub fn from_env() -> Result<AwsConfig, ConfigError> {
        AwsConfig::from_lookup(Env(|name| std::env::var(name).ok()))
    }

    pub fn from_lookup<F: Fn(&str) -> Option<String>>(
        env: Env<F>,
    ) -> Result<AwsConfig, ConfigError> {
        let secs = |name, default: Duration| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(env.parsed(name, default.as_secs())?))
        };
        let sweep = SweepPolicy::default();
        let max_receive_count = env.parsed("MAX_RECEIVE_COUNT", 5)?;
        if max_receive_count == 0 {
            return Err(invalid("MAX_RECEIVE_COUNT", 0, "must be at least 1"));
        }
        Ok(AwsConfig {
            bucket: env.required("DOCPIPE_BUCKET")?,
            queues: QueueUrls {
                parse: env.required("PARSE_QUEUE_URL")?,
                chunk: env.required("CHUNK_QUEUE_URL")?,
                embed: env.required("EMBED_QUEUE_URL")?,
            },
            s3_force_path_style: env.parsed("S3_FORCE_PATH_STYLE", false)?,
            max_receive_count,
            sweep: SweepPolicy {
                queued_timeout: secs("SWEEP_QUEUED_TIMEOUT_SECS", sweep.queued_timeout)?,
                parsed_timeout: secs("SWEEP_PARSED_TIMEOUT_SECS", sweep.parsed_timeout)?,
                chunked_timeout: secs("SWEEP_CHUNKED_TIMEOUT_SECS", sweep.chunked_timeout)?,
                max_retries: env.parsed("SWEEP_MAX_RETRIES", sweep.max_retries)?,
                batch: env.parsed("SWEEP_BATCH", sweep.batch)?,
            },
        })
    }
}

/// Reads settings from a lookup function, so tests need not touch the process environment.
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing { name })
    }

    fn parsed<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    fn optional<T: FromStr>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.get(name)
            .map(|value| {
                value.parse().map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    reason: e.to_string(),
                    value,
                })
            })
            .transpose()
    }
}

fn invalid(name: &'static str, value: impl fmt::Display, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// OpenAI's list prices (USD per million input tokens, 2026-11); other models
/// are free unless `EMBEDDING_USD_PER_MILLION_TOKENS` says otherwise.
fn list_price_per_million_tokens(model: &str) -> f64 {
    match model {
        "text-embedding-3-small" => 0.02,
        "text-embedding-3-large" => 0.13,
        "text-embedding-ada-002" => 0.10,
        _ => 0.0,
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(Env(|name| std::env::var(name).ok()))
    }

    pub fn from_lookup<F: Fn(&str) -> Option<String>>(env: Env<F>) -> Result<Config, ConfigError> {
        let provider = match env.get("EMBEDDING_PROVIDER").as_deref() {
            None | Some("mock") => EmbeddingProvider::Mock,
            Some("openai") => EmbeddingProvider::OpenAi,
            Some("azure") => EmbeddingProvider::Azure,
            Some(other) => {
                return Err(invalid(
                    "EMBEDDING_PROVIDER",
                    other,
                    "expected mock, openai or azure",
                ));
            }
        };
        let mode = match env.get("SERVICE_MODE").as_deref() {
            None | Some("real") => ServiceMode::Real,
            Some("mock") => ServiceMode::Mock,
            Some("hybrid") => ServiceMode::Hybrid,
            Some(other) => {
                return Err(invalid(
                    "SERVICE_MODE",
                    other,
                    "expected mock, real or hybrid",
                ));
            }
        };
        let production = match env.get("DOCPIPE_ENVIRONMENT").as_deref() {
            None | Some("production") => true,
            Some("dev") => false,
            Some(other) => {
                return Err(invalid(
                    "DOCPIPE_ENVIRONMENT",
                    other,
                    "expected production or dev",
                ));
            }
        };
        let dims = env.parsed("EMBEDDING_DIMS", DEFAULT_EMBEDDING_DIMS)?;
        if dims == 0 || dims > MAX_HNSW_DIMS {
            return Err(invalid(
                "EMBEDDING_DIMS",
                dims,
                "must be 1..=2000 (pgvector's HNSW limit); for larger models request fewer with the `dimensions` parameter",
            ));
        }
        let default_model = match provider {
            EmbeddingProvider::Mock => crate::embedding::mock::MODEL,
            EmbeddingProvider::OpenAi | EmbeddingProvider::Azure => "text-embedding-3-small",
        };
        let model = env
            .get("EMBEDDING_MODEL")
            .unwrap_or_else(|| default_model.to_string());
        let api_key = match provider {
            EmbeddingProvider::OpenAi | EmbeddingProvider::Azure => {
                env.required("OPENAI_API_KEY")?
            }
            EmbeddingProvider::Mock => String::new(),
        };
        let send_dimensions = env.parsed(
            "EMBEDDING_SEND_DIMENSIONS",
            model.starts_with("text-embedding-3"),
        )?;
        let embedding = EmbeddingConfig {
            provider,
            dims,
            send_dimensions,
            base_url: env
                .get("OPENAI_BASE_URL")
                .unwrap_or_else(|| "https://api.openai.com/v1".to_string())
                .trim_end_matches('/')
                .to_string(),
            api_key: Secret::new(api_key),
            timeout: Duration::from_secs(env.parsed("EMBEDDING_TIMEOUT_SECS", 60)?),
            azure_api_version: env
                .get("AZURE_OPENAI_API_VERSION")
                .unwrap_or_else(|| "2024-10-21".to_string()),
            max_input_tokens: env.parsed("EMBEDDING_MAX_INPUT_TOKENS", 8192)?,
            max_inputs_per_request: env.parsed("EMBEDDING_MAX_INPUTS", 2048)?,
            max_request_tokens: env.parsed("EMBEDDING_MAX_REQUEST_TOKENS", 300_000)?,
            tokens_per_minute: env.optional("EMBEDDING_TPM")?,
            requests_per_minute: env.optional("EMBEDDING_RPM")?,
            model,
        };
        let parser = match env.get("PARSER").as_deref() {
            None | Some("local") => ParserProvider::Local,
            Some("llamaparse") => ParserProvider::LlamaParse,
            Some(other) => return Err(invalid("PARSER", other, "expected local or llamaparse")),
        };
        let llamaparse = LlamaParseConfig {
            base_url: env
                .get("LLAMAPARSE_BASE_URL")
                .unwrap_or_else(|| "https://api.cloud.llamaindex.ai".to_string())
                .trim_end_matches('/')
                .to_string(),
            api_key: Secret::new(match parser {
                ParserProvider::LlamaParse => env.required("LLAMA_CLOUD_API_KEY")?,
                ParserProvider::Local => String::new(),
            }),
            extensions: env
                .get("LLAMAPARSE_EXTENSIONS")
                .unwrap_or_else(|| "pdf".to_string())
                .split(',')
                .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
            timeout: Duration::from_secs(env.parsed("LLAMAPARSE_HTTP_TIMEOUT_SECS", 60)?),
            job_timeout: Duration::from_secs(env.parsed("LLAMAPARSE_JOB_TIMEOUT_SECS", 1800)?),
            first_poll_delay: Duration::from_secs(env.parsed("LLAMAPARSE_FIRST_POLL_SECS", 2)?),
            max_poll_delay: Duration::from_secs(env.parsed("LLAMAPARSE_MAX_POLL_SECS", 60)?),
        };
        let external = ExternalPolicy {
            max_attempts: env.parsed("EXTERNAL_MAX_ATTEMPTS", 5)?.max(1),
            first_backoff: Duration::from_millis(env.parsed("EXTERNAL_FIRST_BACKOFF_MS", 500)?),
            max_wait: Duration::from_secs(env.parsed("EXTERNAL_MAX_WAIT_SECS", 20)?),
            breaker_threshold: env.parsed(
                "BREAKER_THRESHOLD",
                crate::external::breaker::DEFAULT_THRESHOLD,
            )?,
            breaker_cool_down: Duration::from_secs(env.parsed(
                "BREAKER_COOLDOWN_SECS",
                crate::external::breaker::DEFAULT_COOL_DOWN.as_secs(),
            )?),
        };
        let cost = CostPolicy {
            daily_budget_usd: env.parsed("DAILY_BUDGET_USD", 5.0)?,
            hourly_request_cap: env.parsed("HOURLY_REQUEST_CAP", 5000)?,
            tenant_daily_budget_usd: env.parsed("TENANT_DAILY_BUDGET_USD", 1.0)?,
            tenant_hourly_request_cap: env.parsed("TENANT_HOURLY_REQUEST_CAP", 1000)?,
            embedding_usd_per_million_tokens: env.parsed(
                "EMBEDDING_USD_PER_MILLION_TOKENS",
                list_price_per_million_tokens(&embedding.model),
            )?,
            llamaparse_usd_per_page: env.parsed("LLAMAPARSE_USD_PER_PAGE", 0.003)?,
        };

        let max_tokens = env.parsed("CHUNK_TOKENS", DEFAULT_CHUNK_TOKENS)?;
        let chunking = ChunkingConfig {
            max_tokens,
            min_tokens: env.parsed("CHUNK_MIN_TOKENS", max_tokens / 8)?,
            overlap_tokens: env.parsed("CHUNK_OVERLAP_TOKENS", DEFAULT_CHUNK_OVERLAP)?,
        };
        if chunking.max_tokens == 0 {
            return Err(invalid("CHUNK_TOKENS", 0, "must be at least 1"));
        }
        if chunking.min_tokens > chunking.max_tokens {
            return Err(invalid(
                "CHUNK_MIN_TOKENS",
                chunking.min_tokens,
                "must not exceed CHUNK_TOKENS",
            ));
        }
        if chunking.overlap_tokens >= chunking.max_tokens {
            return Err(invalid(
                "CHUNK_OVERLAP_TOKENS",
                chunking.overlap_tokens,
                "must be smaller than CHUNK_TOKENS",
            ));
        }
        let embed_batch_size = env.parsed("EMBED_BATCH_SIZE", DEFAULT_EMBED_BATCH)?;
        if !(1..=2048).contains(&embed_batch_size) {
            return Err(invalid(
                "EMBED_BATCH_SIZE",
                embed_batch_size,
                "must be 1..=2048 (OpenAI's inputs per request)",
            ));
        }

        let parse = crate::parsing::ParseLimits::default();
        let parse_limits = crate::parsing::ParseLimits {
            timeout: Duration::from_secs(
                env.parsed("PARSE_TIMEOUT_SECS", parse.timeout.as_secs())?,
            ),
            memory_bytes: env
                .parsed("PARSE_MEMORY_MB", parse.memory_bytes >> 20)?
                .saturating_mul(1 << 20),
            max_chars: env.parsed("PARSE_MAX_CHARS", parse.max_chars)?,
            chars_per_byte: env.parsed("PARSE_CHARS_PER_BYTE", parse.chars_per_byte)?,
            max_depth: env.parsed("PARSE_MAX_DEPTH", parse.max_depth)?,
            max_pages: env.parsed("PARSE_MAX_PAGES", parse.max_pages)?,
            concurrency: env.parsed("PARSE_CONCURRENCY", parse.concurrency)?,
        };
        let stage_deadline = Duration::from_secs(env.parsed("STAGE_DEADLINE_SECS", 120)?);
        if parse_limits.timeout >= stage_deadline {
            // Else a slow parse would end as a lost delivery, retried, not as parse_timeout.
            return Err(invalid(
                "PARSE_TIMEOUT_SECS",
                parse_limits.timeout.as_secs(),
                "must be below STAGE_DEADLINE_SECS (default 120)",
            ));
        }
        if parse_limits.timeout.is_zero() || parse_limits.memory_bytes < 64 << 20 {
            return Err(invalid(
                "PARSE_TIMEOUT_SECS/PARSE_MEMORY_MB",
                format!(
                    "{:?}/{}",
                    parse_limits.timeout,
                    parse_limits.memory_bytes >> 20
                ),
                "parsing needs at least 1 s and 64 MB",
            ));
        }

        Ok(Config {
            database_url: Secret::new(env.required("DATABASE_URL")?),
            database_ca_file: env.get("DATABASE_CA_FILE").map(Into::into),
            db_pool_size: env.parsed("DB_POOL_SIZE", 8)?,
            mode,
            production,
            embedding,
            parser,
            llamaparse,
            external,
            cost,
            chunking,
            embed_batch_size,
            chunk_concurrency: env.parsed("CHUNK_CONCURRENCY", 2)?,
            cache_scope: match env.get("EMBEDDING_CACHE_SCOPE").as_deref() {
                None | Some("tenant") => CacheScope::Tenant,
                Some("shared") => CacheScope::Shared,
                Some(other) => {
                    return Err(invalid(
                        "EMBEDDING_CACHE_SCOPE",
                        other,
                        "expected tenant or shared",
                    ));
                }
            },
            max_file_bytes: env.parsed("MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES)?,
            parse_limits,
            stage_deadline,
            parse_sandbox_exe: env.get("PARSE_SANDBOX_EXE").map(PathBuf::from),
            local_blob_dir: PathBuf::from(
                env.get("DOCPIPE_BLOB_DIR")
                    .unwrap_or_else(|| ".local/blobs".to_string()),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(Env(move |name| map.get(name).cloned()))
    }

    #[test]
    fn defaults_need_only_a_database() {
        let config = config(&[("DATABASE_URL", "postgres://x")]).unwrap();
        assert_eq!(config.embedding.provider, EmbeddingProvider::Mock);
        assert_eq!(config.embedding.dims, 1536);
        assert_eq!(config.chunking.max_tokens, 512);
        assert_eq!(config.chunking.overlap_tokens, 64);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let err = config(&[("DATABASE_URL", "x"), ("EMBEDDING_DIMS", "3072")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("EMBEDDING_DIMS=\"3072\" is invalid"),
            "{err}"
        );
        let err = config(&[("DATABASE_URL", "x"), ("CHUNK_TOKENS", "abc")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("CHUNK_TOKENS=\"abc\" is invalid"),
            "{err}"
        );
        let err = config(&[
            ("DATABASE_URL", "x"),
            ("CHUNK_TOKENS", "64"),
            ("CHUNK_OVERLAP_TOKENS", "64"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("smaller than CHUNK_TOKENS"),
            "{err}"
        );
        let err = config(&[
            ("DATABASE_URL", "x"),
            ("CHUNK_TOKENS", "64"),
            ("CHUNK_MIN_TOKENS", "65"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("must not exceed CHUNK_TOKENS"),
            "{err}"
        );
        let err = config(&[("DATABASE_URL", "x"), ("EMBEDDING_PROVIDER", "openai")]).unwrap_err();
        assert_eq!(err.to_string(), "OPENAI_API_KEY is not set");
        assert_eq!(
            config(&[]).unwrap_err().to_string(),
            "DATABASE_URL is not set"
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let config = config(&[
            ("DATABASE_URL", "postgres://user:hunter2@db/x"),
            ("EMBEDDING_PROVIDER", "openai"),
            ("OPENAI_API_KEY", "sk-live-123"),
        ])
        .unwrap();
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("sk-live-123"),
            "{printed}"
        );
    }
}
