//! `docpipe-coldstart-bench`: each Lambda function binary's cold start, from
//! process start to its first event handled, against a local Lambda Runtime
//! API of this bench's own, and each binary's size.
//!
//!   cargo build --release -p ingest -p parse -p chunk -p embed -p sweeper -p api -p migrate
//!   cargo run --profile perf -p docpipe-tests --bin docpipe-coldstart-bench -- [--bin-dir target/release] [--runs 20]
//!
//! Needs DATABASE_URL (a Postgres with pgvector): the functions connect and
//! check the schema at start, as in Lambda. The events are the samples in
//! `events/`: stage messages for unknown jobs, an S3 test event, a sweep, a
//! search, a migration with nothing to apply.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use clap::Parser;
use docpipe_tests::TestDb;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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

/// How the first invocation ended, as the function reported it.
enum Outcome {
    Response,
    Error(String),
}

/// One invocation on offer; what the function answered goes to `done`.
struct RuntimeApi {
    event: Mutex<Option<String>>,
    done: mpsc::UnboundedSender<Outcome>,
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> (HeaderMap, String) {
    let Some(event) = api.event.lock().unwrap().take() else {
        // One event per cold start: the process is stopped after it.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let mut headers = HeaderMap::new();
    let deadline = std::time::SystemTime::now() + Duration::from_secs(60);
    let deadline_ms = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    headers.insert("lambda-runtime-aws-request-id", "bench-1".parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline_ms.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:bench"
            .parse()
            .unwrap(),
    );
    (headers, event)
}

/// Serves the Runtime API on a free port; returns its `host:port`.
async fn serve_runtime_api(api: Arc<RuntimeApi>) -> String {
    let respond = |outcome: fn(String) -> Outcome| {
        move |State(api): State<Arc<RuntimeApi>>, body: String| async move {
            let _ = api.done.send(outcome(body));
            axum::http::StatusCode::ACCEPTED
        }
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond(|_| Outcome::Response)),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(respond(Outcome::Error)),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(respond(Outcome::Error)),
        )
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// One cold start: process start to the first event's response.
async fn cold_start(binary: &Path, event: &str, env: &[(&str, String)]) -> Duration {
    let (done, mut outcomes) = mpsc::unbounded_channel();
    let api = Arc::new(RuntimeApi {
        event: Mutex::new(Some(event.to_string())),
        done,
    });
    let address = serve_runtime_api(api).await;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", &address)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let outcome = tokio::time::timeout(Duration::from_secs(30), outcomes.recv())
        .await
        .unwrap_or_else(|_| panic!("{}: no answer within 30 s", binary.display()));
    let took = started.elapsed();
    child.kill().await.unwrap();
    match outcome {
        Some(Outcome::Response) => took,
        Some(Outcome::Error(body)) => panic!("{}: {body}", binary.display()),
        None => unreachable!("the sender lives in the server"),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let test_db = TestDb::migrated(&[]).await;
    let queue = |name: &str| format!("http://127.0.0.1:4566/queue/us-east-1/000000000000/{name}");
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", test_db.url.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566".into()),
        ("AWS_LAMBDA_FUNCTION_NAME", "bench".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("DOCPIPE_BUCKET", "docpipe-bench".into()),
        ("UPLOADS_QUEUE_URL", queue("uploads")),
        ("PARSE_QUEUE_URL", queue("parse")),
        ("CHUNK_QUEUE_URL", queue("chunk")),
        ("EMBED_QUEUE_URL", queue("embed")),
    ];
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
