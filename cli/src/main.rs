//! `docpipe`: run the pipeline locally, search, and see its status, from
//! the database or (`--api URL`) through the HTTP API.

mod api;
mod searcher;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use docpipe_shared::domain::keys::{Tenant, sidecar_target};
use docpipe_shared::drivers::local::{LocalPipeline, Progress, upload_keys};
use docpipe_shared::ops::telemetry;
use docpipe_shared::pipeline::ingest::Change;
use docpipe_shared::pipeline::metadata::Sidecar;
use docpipe_shared::pipeline::reembed;
use docpipe_shared::search::context::ContextRequest;
use docpipe_shared::search::{SearchMode, eval};
use docpipe_shared::settings::{DatabaseSettings, Env, Parts, PipelineSettings};
use docpipe_shared::store::bulk;
use docpipe_shared::store::db;
use docpipe_shared::store::{models, status};
use docpipe_shared::{JobState, search};
use indicatif::{ProgressBar, ProgressStyle};
use searcher::Searcher;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

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
        #[arg(long, value_parser = parse_json)]
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
}

fn main() -> ExitCode {
    // Documents are parsed in children of this executable: one parses here and exits.
    docpipe_shared::parsing::sandbox::serve_if_child();
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
        (Some(_), _) => bail!("--api serves `search`, `eval` and `status` only"),
        (None, _) => None,
    };
    match cli.command {
        Command::Migrate => {
            let config: DatabaseSettings = Env::from_process().load()?;
            let report = db::migrate(&config).await?;
            match report.applied.as_slice() {
                [] => println!("schema is up to date"),
                applied => println!("applied {}", applied.join(", ")),
            }
            build_deferred_indexes(&db::pool(&config)?, &config).await?;
        }
        Command::Ingest {
            paths,
            tenant,
            defer_index,
        } => {
            let settings = PipelineSettings::load(&Env::from_process(), Parts::ALL)?;
            return ingest(&settings, &paths, &tenant, defer_index).await;
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
            print_hits(&hits, json)?;
        }
        Command::Eval {
            queries,
            tenant,
            modes,
            top_k,
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
            let mut report = Vec::new();
            for mode in modes {
                report.push((mode, evaluate(&searcher, &labeled, mode, top_k).await?));
            }
            print_quality(&report, labeled.len(), top_k, json)?;
        }
        Command::Status { json } => match api {
            Some(api) => {
                let status = api.status().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&status)?);
                } else {
                    api::print_status(&status);
                }
            }
            None => {
                let env = Env::from_process();
                let pool = db::connect(&env.load()?).await?;
                let overview = status::overview(&pool.get().await?).await?;
                let model_change = match env.next_model() {
                    Some(_) => Some(model_change(&env, &pool).await?),
                    None => None,
                };
                print_overview(&overview, model_change.as_ref(), json)?;
            }
        },
        Command::Reembed { chunks } => {
            let settings = PipelineSettings::load(&Env::from_process(), Parts::EMBED)?;
            return reembed(&settings, chunks).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The quality of `mode` on `labeled`: each query searched once.
async fn evaluate(
    searcher: &Searcher,
    labeled: &[eval::LabeledQuery],
    mode: SearchMode,
    top_k: u32,
) -> anyhow::Result<eval::Quality> {
    let mut rankings = Vec::new();
    for query in labeled {
        let hits = searcher
            .search(&query.query, (top_k, mode), (None, true), None)
            .await?;
        let keys: Vec<String> = hits
            .iter()
            .map(|hit| eval::document_name(&hit.source_key).to_string())
            .collect();
        let relevant: HashSet<String> = query
            .relevant
            .iter()
            .map(|key| eval::document_name(key).to_string())
            .collect();
        rankings.push((keys, relevant));
    }
    let borrowed: Vec<(Vec<&str>, HashSet<&str>)> = rankings
        .iter()
        .map(|(keys, relevant)| {
            let ranked = eval::documents_ranked(keys.iter().map(String::as_str));
            (ranked, relevant.iter().map(String::as_str).collect())
        })
        .collect();
    Ok(eval::quality(&borrowed))
}

fn print_quality(
    report: &[(SearchMode, eval::Quality)],
    queries: usize,
    top_k: u32,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let modes: serde_json::Map<String, serde_json::Value> = report
            .iter()
            .map(|(mode, quality)| Ok((mode.to_string(), serde_json::to_value(quality)?)))
            .collect::<anyhow::Result<_>>()?;
        println!("{}", serde_json::to_string_pretty(&modes)?);
        return Ok(());
    }
    println!("{queries} queries; documents ranked by their best hit among {top_k} chunks");
    println!("mode     recall@1  recall@5  recall@10  MRR@10");
    for (mode, q) in report {
        println!(
            "{:<8} {:>8.3}  {:>8.3}  {:>9.3}  {:>6.3}",
            mode.to_string(),
            q.recall_at_1,
            q.recall_at_5,
            q.recall_at_10,
            q.mrr_at_10
        );
    }
    Ok(())
}

/// A command-line argument that must be JSON.
fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

fn print_hits(hits: &[search::SearchHit], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("no results");
    }
    for (rank, hit) in hits.iter().enumerate() {
        let snippet: String = hit
            .text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(160)
            .collect();
        println!(
            "{}. {:.3}  {}  ({})",
            rank + 1,
            hit.score,
            hit.source_key,
            where_in_document(hit)
        );
        if !hit.headings.is_empty() {
            println!("   § {}", hit.headings.join(" › "));
        }
        if !hit.metadata.is_empty() {
            let attributes: Vec<String> = hit
                .metadata
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            println!("   {}", attributes.join(" "));
        }
        match &hit.context {
            // Asked for: the whole context, as it reads.
            Some(context) => {
                println!("   chunks {}-{}:", context.chunk_start, context.chunk_end);
                for line in context.text.lines() {
                    println!("{}", format!("   | {line}").trim_end());
                }
            }
            None => println!("   {snippet}"),
        }
    }
    Ok(())
}

/// `page 3, rows 2-40, chunk 5`: where a hit is, as far as its document says.
fn where_in_document(hit: &search::SearchHit) -> String {
    let range = |name: &str, start: Option<i32>, end: Option<i32>| match (start, end) {
        (Some(start), Some(end)) if start != end => Some(format!("{name}s {start}-{end}")),
        (Some(start), _) => Some(format!("{name} {start}")),
        _ => None,
    };
    let mut parts: Vec<String> = [
        range("page", hit.page_start, hit.page_end),
        range("row", hit.row_start, hit.row_end),
    ]
    .into_iter()
    .flatten()
    .collect();
    parts.push(format!("chunk {}", hit.chunk_index));
    parts.join(", ")
}

/// A model change's progress, as `status` shows it.
#[derive(serde::Serialize)]
struct ModelChangeStatus {
    current: String,
    next: String,
    tenants: Vec<models::TenantProgress>,
}

async fn model_change(env: &Env, pool: &db::Pool) -> anyhow::Result<ModelChangeStatus> {
    let settings = PipelineSettings::load(env, Parts::EMBED)?;
    let change = models::ModelChange::configured(&settings).context("no model change")?;
    Ok(ModelChangeStatus {
        current: change.current.to_string(),
        next: change.next.to_string(),
        tenants: models::progress(&pool.get().await?, &change).await?,
    })
}

fn print_overview(
    overview: &status::Overview,
    model_change: Option<&ModelChangeStatus>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let mut status = serde_json::to_value(overview)?;
        status["model_change"] = serde_json::to_value(model_change)?;
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!(
        "documents {}, searchable chunks {}",
        overview.documents, overview.searchable_chunks
    );
    println!("jobs per state:");
    for (state, count) in &overview.jobs_by_state {
        println!("  {state:<11} {count}");
    }
    if !overview.recent_failures.is_empty() {
        println!("recent failures:");
        for failed in &overview.recent_failures {
            let job = &failed.outcome;
            // Operators read the reason in full: a provider's words too.
            let reason = failed
                .error_detail
                .as_deref()
                .or(job.error_message.as_deref())
                .unwrap_or("");
            println!(
                "  {}  {}  {}: {reason}",
                job.state_changed_at,
                job.source_key,
                job.error_code.as_deref().unwrap_or("?")
            );
        }
    }
    println!("{}", overview.spend_estimates);
    for waiting in &overview.waiting {
        println!(
            "waiting: {} jobs until {}: {}",
            waiting.jobs, waiting.until, waiting.reason
        );
    }
    for breaker in &overview.breakers {
        println!(
            "{} circuit breaker: {} (as of {})",
            breaker.service, breaker.state, breaker.observed_at
        );
    }
    if let Some(change) = model_change {
        let switched = change
            .tenants
            .iter()
            .filter(|t| t.progress.switched)
            .count();
        println!(
            "model change {} -> {}: {switched} of {} tenants switched",
            change.current,
            change.next,
            change.tenants.len()
        );
        for tenant in &change.tenants {
            let state = if tenant.progress.switched {
                "switched"
            } else {
                "building"
            };
            println!(
                "  {:<20} {state:<9} {}/{} chunks with the next model's vectors",
                tenant.tenant, tenant.progress.ready, tenant.progress.chunks
            );
        }
    }
    Ok(())
}

/// Moves the model change on until every tenant is switched, or a round
/// embeds nothing (the next model's provider is down, or spending stopped).
async fn reembed(settings: &PipelineSettings, chunks: u32) -> anyhow::Result<ExitCode> {
    let local = LocalPipeline::new(settings, db::connect(&settings.database).await?)?;
    let pipeline = local.pipeline();
    if reembed::model_change(pipeline)?.is_none() {
        bail!("no model change is configured (NEXT_EMBEDDING_MODEL …)");
    }
    loop {
        let report = reembed::advance_model_change(pipeline, chunks).await?;
        for (tenant, moved) in &report.switched {
            println!("{tenant}: switched ({moved} chunks)");
        }
        let progress = reembed::model_change_progress(pipeline).await?;
        let waiting: i64 = progress
            .iter()
            .map(|t| t.progress.chunks - t.progress.ready)
            .sum();
        if progress.iter().all(|t| t.progress.switched) {
            println!("every tenant searches the next model");
            return Ok(ExitCode::SUCCESS);
        }
        if report.embedded == 0 {
            println!("{waiting} chunks still lack the next model's vectors; try again later");
            return Ok(ExitCode::FAILURE);
        }
        println!("embedded {}; {waiting} to go", report.embedded);
    }
}

/// Builds the search index if a bulk load deferred it (this run's, or one
/// that was interrupted).
async fn build_deferred_indexes(
    pool: &db::Pool,
    settings: &DatabaseSettings,
) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    for index in bulk::rebuild_deferred_indexes(&mut client, settings).await? {
        println!(
            "built index {} in {:.1} s",
            index.name,
            index.took.as_secs_f64()
        );
    }
    Ok(())
}

async fn ingest(
    config: &PipelineSettings,
    paths: &[PathBuf],
    tenant: &str,
    defer_index: bool,
) -> anyhow::Result<ExitCode> {
    Tenant::new(tenant)?;
    let started = Instant::now();
    let files = upload_keys(tenant, paths).context("reading input paths")?;
    if files.is_empty() {
        bail!("no files found in {paths:?}");
    }
    let pool = db::connect(&config.database).await?;
    let mut local = LocalPipeline::new(config, pool.clone())?;
    // A first load into an empty table: nothing to search meanwhile, and
    // building the graph once is twice as fast as growing it row by row.
    let first_load = !defer_index && bulk::no_chunks_yet(&*pool.get().await?).await?;
    if defer_index || first_load {
        bulk::defer_search_index(&mut *pool.get().await?).await?;
    } else {
        build_deferred_indexes(&pool, &config.database).await?;
    }
    for (key, file) in &files {
        local
            .upload(key, file)
            .await
            .with_context(|| format!("copying {}", file.display()))?;
    }

    let documents = files
        .iter()
        .filter(|(key, _)| sidecar_target(key).is_none());
    let bar = ProgressBar::new(documents.count() as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} documents {elapsed} {msg}",
    )?);
    let keys = files.into_iter().map(|(key, _)| key).collect();
    let run = local
        .run(keys, |progress| match progress {
            Progress::Ingested { ingested, .. } if ingested.state.is_terminal() => bar.inc(1),
            Progress::IngestFailed { .. } => bar.inc(1),
            Progress::JobEnded { state, .. } => {
                bar.inc(1);
                if state == JobState::Failed {
                    bar.set_message("(some failed)");
                }
            }
            Progress::Ingested { .. } => {}
        })
        .await;
    bar.finish_and_clear();
    if defer_index || first_load {
        build_deferred_indexes(&pool, &config.database).await?;
    }

    let job_ids: Vec<_> = run.ingested.iter().map(|(_, i)| i.job_id).collect();
    let outcomes = status::outcomes(&pool.get().await?, &job_ids).await?;
    let unchanged: HashSet<_> = run
        .ingested
        .iter()
        .filter(|(_, i)| i.change == Change::Unchanged)
        .map(|(_, i)| i.job_id)
        .collect();
    let (complete, failed): (Vec<_>, Vec<_>) =
        outcomes.iter().partition(|o| o.state == JobState::Complete);
    // New work is what completed in this run, not what was already there.
    let (chunks, tokens) = complete
        .iter()
        .filter(|o| !unchanged.contains(&o.job_id))
        .fold((0i64, 0i64), |(c, t), o| {
            (
                c + i64::from(o.chunk_count.unwrap_or(0)),
                t + o.token_count.unwrap_or(0),
            )
        });
    let new_jobs: Vec<_> = job_ids
        .iter()
        .filter(|id| !unchanged.contains(*id))
        .copied()
        .collect();
    let paid = status::tokens_paid(&pool.get().await?, &new_jobs).await?;
    let seconds = started.elapsed().as_secs_f64();

    println!(
        "{} documents: {} complete, {} failed ({} unchanged since the last run)",
        run.ingested.len() + run.not_ingested.len(),
        complete.len(),
        failed.len() + run.not_ingested.len(),
        unchanged.len()
    );
    println!(
        "new chunks {chunks}, tokens {tokens} ({paid} paid, {} reused from the cache), {seconds:.2} s ({:.0} chunks/s)",
        (tokens - paid).max(0),
        chunks as f64 / seconds.max(1e-9)
    );
    for outcome in &failed {
        let code = outcome
            .error_code
            .as_deref()
            .unwrap_or(outcome.state.as_str());
        println!(
            "  failed {}: {code}: {}",
            outcome.source_key,
            outcome.error_message.as_deref().unwrap_or("not finished")
        );
    }
    for (key, error) in &run.not_ingested {
        println!("  failed {key}: {error}");
    }
    let refused: Vec<_> = run
        .sidecars
        .iter()
        .filter_map(|(key, change)| match &change.sidecar {
            Sidecar::Refused(problem) => Some((key, problem)),
            _ => None,
        })
        .collect();
    if !run.sidecars.is_empty() {
        println!(
            "{} metadata sidecars read, {} refused",
            run.sidecars.len(),
            refused.len()
        );
    }
    for (key, problem) in &refused {
        println!("  refused {key}: {problem}");
    }
    Ok(
        if failed.is_empty() && run.not_ingested.is_empty() && refused.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
