//! `docpipe`: run the pipeline locally, search, and see its status, from
//! the database or (`--api URL`) through the HTTP API.

/// `println!` for a command's output, except that a reader gone early
/// (`docpipe search … | head`) ends the command quietly, as other tools
/// do, where `println!` panics.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::output_failed(&error);
        }
    }};
}

mod api;
mod commands;
mod searcher;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use docpipe_core::db;
use docpipe_core::ops::telemetry;
use docpipe_core::settings::{DatabaseSettings, Env, Parts, PipelineSettings};
use docpipe_core::store::status;
use docpipe_search::context::ContextRequest;
use docpipe_search::{SearchMode, eval};
use searcher::Searcher;
use std::path::PathBuf;
use std::process::ExitCode;

/// Documents in, searchable vectors out. Settings come from the environment
/// (DATABASE_URL, EMBEDDING_PROVIDER, EMBEDDING_DIMS, CHUNK_TOKENS, ...; see docs/operate/configuration.md).
#[derive(Parser)]
#[command(name = "docpipe", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `search` and `status` through this HTTP API (e.g. the local stack's
    /// http://127.0.0.1:3000) instead of the database.
    #[arg(long, global = true, env = "DOCPIPE_API_URL", value_name = "URL")]
    api: Option<String>,
    /// The API key for `--api`; it decides the tenant.
    #[arg(long, global = true, env = "DOCPIPE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Create or upgrade the database schema.
    Migrate,
    /// Run files or folders through the whole pipeline in this process.
    Ingest {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        tenant: String,
        /// A bulk load: drop the HNSW search index while loading and build it
        /// once after (faster for large loads; searches scan meanwhile).
        /// Always so when no tenant has any chunk yet.
        #[arg(long)]
        defer_index: bool,
    },
    /// Find the chunks nearest to a text, within one tenant.
    Search {
        query: String,
        /// Required without --api; with --api the key decides the tenant.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
        top_k: u32,
        /// A filter as the API takes it: `key_prefix`, `document_ids` and a
        /// metadata condition, e.g. '{"equals":{"key":"team","value":"legal"}}'.
        #[arg(long, value_parser = commands::search::parse_json)]
        filter: Option<serde_json::Value>,
        /// How hits are ranked: hybrid (keywords and meaning), vector, keyword.
        #[arg(long, default_value_t = SearchMode::Hybrid)]
        mode: SearchMode,
        /// Show each hit with up to N chunks before and after it.
        #[arg(long, value_name = "N", conflicts_with = "context_tokens")]
        neighbors: Option<u32>,
        /// Show each hit grown through its section up to T tokens.
        #[arg(long, value_name = "T")]
        context_tokens: Option<u32>,
        /// Hits as the search ranks them, without the (paid) reranker.
        #[arg(long)]
        no_rerank: bool,
        #[arg(long)]
        json: bool,
    },
    /// Retrieval quality on labeled queries: recall@1/@5/@10 and MRR@10 of
    /// the documents each search ranks, per mode.
    Eval {
        /// JSON Lines, a query a line: {"query": "…", "relevant": ["report.pdf", …]}
        /// (names under the tenant's folder, or full keys).
        #[arg(long)]
        queries: PathBuf,
        /// Required without --api; with --api the key decides the tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Modes to measure, comma-separated (default: hybrid,vector,keyword).
        #[arg(long = "mode", value_delimiter = ',')]
        modes: Vec<SearchMode>,
        /// Chunks each search returns; their documents, best hit first, are ranked.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        top_k: u32,
        /// Rerank settings to measure, comma-separated: `on` (the configured
        /// reranker, if any), `off`; both give each mode twice, `MODE` and
        /// `MODE+rerank`.
        #[arg(long, value_delimiter = ',', default_value = "on")]
        rerank: Vec<commands::eval::Rerank>,
        #[arg(long)]
        json: bool,
    },
    /// Moves a model change (NEXT_EMBEDDING_*) on as the sweeper does, until
    /// every tenant is switched or nothing more can be done now.
    Reembed {
        /// Chunks embedded by the next model per round.
        #[arg(long, default_value_t = 1000)]
        chunks: u32,
    },
    /// Jobs per state, recent failures, a model change's progress.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The deployed bucket under a tenant's folder against its documents:
    /// ingests what is new or changed, removes what is gone, reads changed
    /// sidecars (the deployment's settings, e.g. `.local/aws.env`).
    Sync {
        /// s3://bucket/uploads/<tenant>/[prefix], or s3://bucket/ with --tenant.
        url: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Count what would be done; do nothing.
        #[arg(long)]
        dry_run: bool,
        /// List from this S3 Inventory report (s3://bucket/inventory/…/manifest.json)
        /// instead of ListObjectsV2.
        #[arg(long)]
        inventory: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// SigV4 key pairs for Bedrock's clients (the API's `SIGV4_KEYS`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// A new key pair for a tenant: add its entry to `SIGV4_KEYS` (a tenant
    /// may have two, the current and the next); nothing is stored here.
    Issue {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

/// The end of a command whose output could not be written: quiet and
/// successful when its reader closed the pipe, else an error.
fn output_failed(error: &std::io::Error) -> ! {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("docpipe: writing the output: {error}");
    std::process::exit(1)
}

fn main() -> ExitCode {
    // Documents are parsed in children of this executable: one parses here and exits.
    docpipe_ingest::parsing::sandbox::serve_if_child();
    cli_main()
}

#[tokio::main]
async fn cli_main() -> ExitCode {
    // The summary reports every failure; logs below errors would repeat it.
    telemetry::init("error");
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("docpipe: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let api = match (&cli.api, &cli.command) {
        (Some(url), Command::Search { .. } | Command::Eval { .. } | Command::Status { .. }) => {
            Some(api::ApiClient::new(url, cli.api_key)?)
        }
        // Issuing keys touches no service; a sync, the deployment's own.
        (Some(_), Command::Keys { .. } | Command::Sync { .. }) => None,
        (Some(_), _) => bail!("--api serves `search`, `eval` and `status` only"),
        (None, _) => None,
    };
    match cli.command {
        Command::Keys {
            command: KeysCommand::Issue { tenant, json },
        } => commands::keys::issue(&tenant, json)?,
        Command::Sync {
            url,
            tenant,
            dry_run,
            inventory,
            json,
        } => {
            commands::sync::run(commands::sync::Request {
                url: &url,
                tenant: tenant.as_deref(),
                dry_run,
                inventory: inventory.as_deref(),
                json,
            })
            .await?
        }
        Command::Migrate => {
            let config: DatabaseSettings = Env::from_process().load()?;
            let report = db::schema::migrate(&config).await?;
            match report.applied.as_slice() {
                [] => say!("schema is up to date"),
                applied => say!("applied {}", applied.join(", ")),
            }
            commands::ingest::build_deferred_indexes(&db::pool(&config)?, &config).await?;
        }
        Command::Ingest {
            paths,
            tenant,
            defer_index,
        } => {
            let settings = PipelineSettings::load(&Env::from_process(), Parts::ALL)?;
            return commands::ingest::ingest(&settings, &paths, &tenant, defer_index).await;
        }
        Command::Search {
            query,
            tenant,
            top_k,
            filter,
            mode,
            neighbors,
            context_tokens,
            no_rerank,
            json,
        } => {
            let context = neighbors
                .map(ContextRequest::Neighbors)
                .or(context_tokens.map(ContextRequest::MaxTokens))
                .map(ContextRequest::checked)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let searcher = Searcher::new(api, tenant).await?;
            let hits = searcher
                .search(&query, (top_k, mode), (context, !no_rerank), filter)
                .await?;
            commands::search::print_hits(&hits, json)?;
        }
        Command::Eval {
            queries,
            tenant,
            modes,
            top_k,
            rerank,
            json,
        } => {
            let text = std::fs::read_to_string(&queries)
                .with_context(|| format!("reading {}", queries.display()))?;
            let labeled = eval::read_queries(&text)
                .map_err(anyhow::Error::msg)
                .with_context(|| queries.display().to_string())?;
            let searcher = Searcher::new(api, tenant).await?;
            let modes = if modes.is_empty() {
                vec![SearchMode::Hybrid, SearchMode::Vector, SearchMode::Keyword]
            } else {
                modes
            };
            let report =
                commands::eval::evaluate_all(&searcher, &labeled, (&modes, &rerank), top_k).await?;
            commands::eval::print_quality(&report, labeled.len(), top_k, json)?;
        }
        Command::Status { json } => match api {
            Some(api) => {
                let status = api.status().await?;
                if json {
                    say!("{}", serde_json::to_string_pretty(&status)?);
                } else {
                    api::print_status(&status);
                }
            }
            None => {
                let env = Env::from_process();
                let pool = db::connect(&env.load()?).await?;
                let overview = status::overview(&pool.get().await?).await?;
                let model_change = match env.next_model() {
                    Some(_) => Some(commands::status::model_change(&env, &pool).await?),
                    None => None,
                };
                commands::status::print_overview(&overview, model_change.as_ref(), json)?;
            }
        },
        Command::Reembed { chunks } => {
            let settings = PipelineSettings::load(&Env::from_process(), Parts::EMBED)?;
            return commands::reembed::reembed(&settings, chunks).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
