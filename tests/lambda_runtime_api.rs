//! A stand-in for the Lambda Runtime API: starts a function's real binary as
//! Lambda does (its environment and nothing else) and hands it one event.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

struct Runtime {
    /// The event for the first `next`; later ones wait for ever, as Lambda's
    /// do while no event comes.
    event: Mutex<Option<String>>,
    answers: mpsc::UnboundedSender<Result<String, String>>,
}

/// What a cold start and its first event came to.
pub struct Invocation {
    /// The function's answer, or its error report (or its log, if it exited
    /// first, or that it gave none in 60 s).
    pub answer: Result<String, String>,
    /// From the process's start to its answer.
    pub took: Duration,
}

impl Invocation {
    /// The answer as JSON; the error as it is.
    pub fn json(self) -> Result<serde_json::Value, String> {
        self.answer
            .and_then(|body| serde_json::from_str(&body).map_err(|e| format!("{e}: {body}")))
    }
}

/// Runs `exe` with only `env` (and the Runtime API's variables) and hands it
/// `event`.
pub async fn invoke_once(
    exe: impl AsRef<std::path::Path>,
    env: &[(&str, &str)],
    event: &str,
) -> Invocation {
    let exe = exe.as_ref();
    let (answers, mut answered) = mpsc::unbounded_channel();
    let runtime = Arc::new(Runtime {
        event: Mutex::new(Some(event.to_string())),
        answers,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(|State(rt): State<Arc<Runtime>>, body: String| async move {
                let _ = rt.answers.send(Ok(body));
            }),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(
                |State(rt): State<Arc<Runtime>>, Path(_id): Path<String>, body: String| async move {
                    let _ = rt.answers.send(Err(body));
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(|State(rt): State<Arc<Runtime>>, body: String| async move {
                let _ = rt.answers.send(Err(body));
            }),
        )
        .with_state(runtime);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let started = Instant::now();
    let mut child = tokio::process::Command::new(exe)
        .env_clear()
        .envs(env.iter().copied())
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "docpipe-test")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
    let mut log = child.stderr.take().unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::select! {
            answer = answered.recv() => answer.expect("the runtime keeps its sender"),
            status = child.wait() => {
                let mut text = String::new();
                tokio::io::AsyncReadExt::read_to_string(&mut log, &mut text).await.ok();
                Err(format!("exited ({status:?}) before answering: {text}"))
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no answer in 60 s".into()));
    let took = started.elapsed();
    child.kill().await.ok();
    server.abort();
    Invocation { answer, took }
}

async fn next(State(runtime): State<Arc<Runtime>>) -> (HeaderMap, String) {
    let Some(event) = runtime.event.lock().unwrap().take() else {
        return std::future::pending().await;
    };
    let mut headers = HeaderMap::new();
    let deadline = std::time::SystemTime::now() + Duration::from_secs(60);
    let deadline_ms = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", "request-1".to_string()),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:000000000000:function:docpipe-test".to_string(),
        ),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    (headers, event)
}
