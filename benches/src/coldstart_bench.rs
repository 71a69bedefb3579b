//! `docpipe-coldstart-bench`: each Lambda function binary's cold start, from
//! process start to its first event handled, against a local Lambda Runtime
//! API of this bench's own, and each binary's size.
//!
//!   cargo build --release -p ingest -p parse -p chunk -p embed -p sweeper -p api -p migrate
//!   cargo run --profile perf -p docpipe-benches --bin docpipe-coldstart-bench -- [--bin-dir target/release] [--runs 20]
//!       [--only chunk,embed] [--env KEY=VALUE ...]
//!
//! `--env` sets a variable for the migration and every function, e.g. the
//! local model's `EMBEDDING_PROVIDER=local`, `EMBEDDING_MODEL_DIR` and
//! `EMBEDDING_DIMS=384`, which chunk, embed and api load at start.
//!
//! Needs DATABASE_URL (a Postgres with pgvector): the functions connect and
//! check the schema at start, as in Lambda. The events are the samples in
//! `events/`: stage messages for unknown jobs, an S3 test event, a sweep, a
//! search, a migration with nothing to apply.

use clap::Parser;
use docpipe_tests::TestDb;
use docpipe_tests::lambda_runtime_api::invoke_once;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "docpipe-coldstart-bench")]
struct Args {
    /// Where the function binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Cold starts per function.
    #[arg(long, default_value_t = 20)]
    runs: u32,
    /// Only these functions (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// A variable for the migration and every function, as KEY=VALUE.
    #[arg(long = "env", value_parser = key_value)]
    vars: Vec<(String, String)>,
}

fn key_value(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=')
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))
}

/// Each function and the sample event it handles first.
const FUNCTIONS: &[(&str, &str)] = &[
    ("ingest", "events/ingest-s3-test-event.json"),
    ("parse", "events/parse.json"),
    ("chunk", "events/chunk.json"),
    ("embed", "events/embed.json"),
    ("sweeper", "events/sweeper-schedule.json"),
    ("api", "events/api-search.json"),
    ("migrate", ""),
];

/// One cold start: process start to the first event's response.
async fn cold_start(binary: &Path, event: &str, env: &[(&str, &str)]) -> Duration {
    let invocation = invoke_once(binary, env, event).await;
    match invocation.answer {
        Ok(_) => invocation.took,
        Err(error) => panic!("{}: {error}", binary.display()),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let vars: Vec<(&str, &str)> = args
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let test_db = TestDb::migrated(&vars).await;
    let queue = |name: &str| format!("http://127.0.0.1:4566/queue/us-east-1/000000000000/{name}");
    let mut env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", test_db.url.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566".into()),
        ("DOCPIPE_BUCKET", "docpipe-bench".into()),
        ("UPLOADS_QUEUE_URL", queue("uploads")),
        ("PARSE_QUEUE_URL", queue("parse")),
        ("CHUNK_QUEUE_URL", queue("chunk")),
        ("EMBED_QUEUE_URL", queue("embed")),
    ];
    env.extend(vars.iter().map(|&(k, v)| (k, v.to_string())));
    println!(
        "docpipe-coldstart-bench: {} runs each, {} cores",
        args.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| function | binary size | cold start median | p90 | max |");
    println!("|---|---|---|---|---|");
    for (function, event_file) in FUNCTIONS
        .iter()
        .filter(|(f, _)| args.only.is_empty() || args.only.iter().any(|o| o == f))
    {
        let binary = args.bin_dir.join(function);
        let event = if event_file.is_empty() {
            "{}".to_string()
        } else {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(event_file);
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let mut times = Vec::new();
        for _ in 0..args.runs {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            times.push(cold_start(&binary, &event, &env).await);
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let size = std::fs::metadata(&binary).unwrap().len();
        println!(
            "| {function} | {:.1} MB | {:.1} ms | {:.1} ms | {:.1} ms |",
            size as f64 / 1e6,
            ms(times[times.len() / 2]),
            ms(times[times.len() * 9 / 10]),
            ms(times[times.len() - 1]),
        );
    }
}
