//! `docpipe-provider-bench`: the embedding provider's quota and bill, measured
//! through the whole in-process pipeline against mock-openai over HTTP.
//!
//!   cargo run --release -p docpipe-benches --bin docpipe-provider-bench -- rate [--tpm 100000] [--minutes 4]
//!   cargo run --release -p docpipe-benches --bin docpipe-provider-bench -- reingest [--mb 2] [--edited 0.05]
//!
//! `rate`: a corpus needing several minutes of a tokens-per-minute quota,
//! against a mock enforcing that quota (and injecting 429s with Retry-After):
//! share of the quota used, chunks lost, and the most tokens sent in any
//! 60-second window. `reingest`: tokens paid when a corpus is ingested again
//! with a share of its paragraphs edited, as a share of the first run's.
//! Needs DATABASE_URL (a Postgres with pgvector).

use clap::{Parser, Subcommand};
use docpipe_core::JobState;
use docpipe_mocks::faults::FaultKnobs;
use docpipe_mocks::openai::MockOpenAiConfig;
use docpipe_tests::corpus::{Rng, WORDS, generate};
use docpipe_tests::{ScratchDir, TestDb, ingest_locally, spawn_openai};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "docpipe-provider-bench")]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Share of a tokens-per-minute quota used over a run that needs several minutes of it.
    Rate {
        #[arg(long, default_value_t = 100_000)]
        tpm: u32,
        /// Minutes of quota the corpus needs.
        #[arg(long, default_value_t = 4.0)]
        minutes: f64,
        /// Share of requests answered 429 with `Retry-After: 1`.
        #[arg(long, default_value_t = 0.03)]
        rate_limit_rate: f64,
    },
    /// Tokens paid by a re-ingest with some paragraphs edited, against the first run.
    Reingest {
        #[arg(long, default_value_t = 2.0)]
        mb: f64,
        /// Share of paragraphs edited between the runs.
        #[arg(long, default_value_t = 0.05)]
        edited: f64,
        /// `CHUNK_MIN_TOKENS` (default: the pipeline's, a 64th of `CHUNK_TOKENS`).
        #[arg(long)]
        chunk_min_tokens: Option<usize>,
    },
}

const DIMS: &str = "64";

fn main() {
    // Documents are parsed in children of this executable: one parses here and exits.
    docpipe_ingest::parsing::sandbox::serve_if_child();
    bench_main()
}

#[tokio::main]
async fn bench_main() {
    match Args::parse().bench {
        Bench::Rate {
            tpm,
            minutes,
            rate_limit_rate,
        } => rate(tpm, minutes, rate_limit_rate).await,
        Bench::Reingest {
            mb,
            edited,
            chunk_min_tokens,
        } => reingest(mb, edited, chunk_min_tokens).await,
    }
}

/// The most tokens in any `window` of `(ms, tokens)` events.
fn max_in_window(events: &[(u64, u64)], window: Duration) -> u64 {
    let window = window.as_millis() as u64;
    let (mut start, mut sum, mut max) = (0, 0, 0);
    for &(at, tokens) in events {
        sum += tokens;
        while events[start].0 + window <= at {
            sum -= events[start].1;
            start += 1;
        }
        max = max.max(sum);
    }
    max
}

async fn rate(tpm: u32, minutes: f64, rate_limit_rate: f64) {
    let (url, mock) = spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        tokens_per_window: Some(u64::from(tpm)),
        faults: FaultKnobs {
            rate_limit_rate,
            retry_after_secs: 1,
            seed: 42,
            ..FaultKnobs::default()
        },
        ..MockOpenAiConfig::default()
    })
    .await;
    // ~0.22 cl100k tokens per byte of the generated text.
    let scratch = ScratchDir::new();
    let bytes = (f64::from(tpm) * minutes / 0.22) as usize;
    generate(&scratch, bytes, 60);
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let tpm_text = tpm.to_string();
    let config = test_db.config(&[
        ("EMBEDDING_DIMS", DIMS),
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-bench"),
        ("OPENAI_BASE_URL", &url),
        ("EMBEDDING_TPM", &tpm_text),
        ("EXTERNAL_MAX_ATTEMPTS", "20"),
        ("DAILY_BUDGET_USD", "1000"),
    ]);
    let started = Instant::now();
    let (_, outcomes) = ingest_locally(&config, "bench", std::slice::from_ref(&scratch.0)).await;
    let seconds = started.elapsed().as_secs_f64();

    let complete = outcomes
        .values()
        .filter(|o| o.state == JobState::Complete)
        .count();
    let expected_chunks: i64 = outcomes
        .values()
        .map(|o| i64::from(o.chunk_count.unwrap_or(0)))
        .sum();
    let stored = test_db.count("document_chunks").await;
    let accepted = mock.accepted();
    let tokens: u64 = accepted.iter().map(|(_, t)| t).sum();
    let largest_request = accepted.iter().map(|(_, t)| *t).max().unwrap_or(0);
    let busiest_minute = max_in_window(&mock.attempted(), Duration::from_secs(60));
    let allowed = f64::from(tpm) * seconds / 60.0;
    println!(
        "docpipe-provider-bench rate: TPM {tpm}, {} documents ({complete} complete), {tokens} tokens in {} requests, \
         {} refused by the TPM window, {} injected 429s, {} cores",
        outcomes.len(),
        accepted.len(),
        mock.rate_limited(),
        mock.faults.injected().len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "  {seconds:.1} s: {:.1} % of the quota used ({:.0} tokens/min); chunks stored {stored} of {expected_chunks}; \
         busiest 60 s sent {busiest_minute} tokens = limit + {} (largest request {largest_request})",
        100.0 * tokens as f64 / allowed,
        tokens as f64 / seconds * 60.0,
        busiest_minute as i64 - i64::from(tpm),
    );
    if complete != outcomes.len() || stored != expected_chunks {
        std::process::exit(1);
    }
}

async fn reingest(mb: f64, edited: f64, chunk_min_tokens: Option<usize>) {
    let (url, _mock) = spawn_openai(MockOpenAiConfig {
        default_dims: 64,
        ..MockOpenAiConfig::default()
    })
    .await;
    let scratch = ScratchDir::new();
    generate(&scratch, (mb * 1024.0 * 1024.0) as usize, 50);
    let test_db = TestDb::migrated(&[("EMBEDDING_DIMS", DIMS)]).await;
    let vars = [
        ("EMBEDDING_DIMS", DIMS),
        ("EMBEDDING_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-bench"),
        ("OPENAI_BASE_URL", &url),
        ("DAILY_BUDGET_USD", "1000"),
    ];
    let min_tokens = chunk_min_tokens.map(|n| n.to_string());
    let chunking = min_tokens.as_deref().map(|n| ("CHUNK_MIN_TOKENS", n));
    let config = test_db.config(&[&vars[..], chunking.as_slice()].concat());
    let paid = async || -> i64 {
        let sum: Vec<Option<i64>> = test_db
            .column(
                "SELECT sum(units)::int8 FROM upload_pipeline.cost_ledger WHERE unit = 'tokens'",
            )
            .await;
        sum[0].unwrap_or(0)
    };
    ingest_locally(&config, "bench", std::slice::from_ref(&scratch.0)).await;
    let first = paid().await;
    let chunks = test_db.count("document_chunks").await;

    // Edit a share of all paragraphs: one word replaced in each.
    let mut rng = Rng(0xed17);
    let (mut paragraphs, mut changed) = (0, 0);
    for entry in std::fs::read_dir(&scratch.0).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let edited_text: Vec<String> = text
            .split("\n\n")
            .map(|paragraph| {
                paragraphs += 1;
                if (rng.next_u64() % 10_000) as f64 >= edited * 10_000.0
                    || paragraph.trim().is_empty()
                {
                    return paragraph.to_string();
                }
                changed += 1;
                let word = WORDS[rng.below(WORDS.len())];
                paragraph.replacen(' ', &format!(" {word}ly "), 1)
            })
            .collect();
        std::fs::write(&path, edited_text.join("\n\n")).unwrap();
    }
    ingest_locally(&config, "bench", std::slice::from_ref(&scratch.0)).await;
    let second = paid().await - first;
    println!(
        "docpipe-provider-bench reingest: {mb} MB, {changed} of {paragraphs} paragraphs edited ({:.1} %), \
         CHUNK_MIN_TOKENS {}; first run {chunks} chunks, paid {first} tokens; re-ingest {second} tokens = {:.1} % of the first",
        100.0 * changed as f64 / paragraphs as f64,
        config.chunking.as_ref().unwrap().min_tokens(),
        100.0 * second as f64 / first as f64,
    );
}
