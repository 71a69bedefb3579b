//! `mock-llamaparse`: LlamaCloud's parsing API v1 (upload → job id → status →
//! markdown result), deterministic: the markdown is what docpipe's own
//! parsers read from the bytes (real text for txt, md, html and pdf), ready
//! after a configurable processing delay. Faults come from [`FaultInjector`].

use crate::faults::{Fault, FaultInjector, FaultKnobs};
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use docpipe_core::settings::ParseLimits;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct MockLlamaParseConfig {
    /// If set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// How long a job stays PENDING.
    pub processing_delay: Duration,
    pub faults: FaultKnobs,
}

struct ParseJob {
    submitted: Instant,
    outcome: Result<(String, u32), String>,
}

pub struct MockLlamaParse {
    config: MockLlamaParseConfig,
    pub faults: FaultInjector,
    jobs: Mutex<HashMap<String, ParseJob>>,
}

fn error(status: StatusCode, detail: &str) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

impl MockLlamaParse {
    pub fn new(config: MockLlamaParseConfig) -> Arc<MockLlamaParse> {
        Arc::new(MockLlamaParse {
            faults: FaultInjector::new(config.faults.clone()),
            jobs: Mutex::default(),
            config,
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/v1/parsing/upload", post(upload))
            .route("/api/v1/parsing/job/{id}", get(status))
            .route("/api/v1/parsing/job/{id}/result/markdown", get(result))
            .route("/health", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Jobs submitted so far.
    pub fn submitted(&self) -> usize {
        self.jobs.lock().unwrap().len()
    }

    /// The answer for a request that passed auth, or the fault's answer.
    async fn admit(&self, headers: &HeaderMap) -> Option<Response> {
        if !crate::bearer_authorised(headers, self.config.api_key.as_deref()) {
            return Some(error(StatusCode::UNAUTHORIZED, "Invalid API key"));
        }
        match self.faults.next().await? {
            Fault::ServerError | Fault::Hang => Some(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            )),
            Fault::RateLimited => {
                let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
                let secs = self.faults.knobs().retry_after_secs.max(1);
                response.headers_mut().insert("retry-after", secs.into());
                Some(response)
            }
            Fault::Malformed => Some((StatusCode::OK, "<html>gateway</html>").into_response()),
            Fault::WrongDims => None,
        }
    }

    fn job_body(&self, id: &str, job: &ParseJob) -> Value {
        let status = if job.submitted.elapsed() < self.config.processing_delay {
            "PENDING"
        } else if job.outcome.is_ok() {
            "SUCCESS"
        } else {
            "ERROR"
        };
        json!({
            "id": id,
            "status": status,
            "error_code": job.outcome.as_ref().err().map(|_| "PARSING_ERROR"),
            "error_message": job.outcome.as_ref().err(),
        })
    }
}

async fn upload(
    State(mock): State<Arc<MockLlamaParse>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    if let Some(refused) = mock.admit(&headers).await {
        return refused;
    }
    let mut file = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("file") {
            let name = field.file_name().unwrap_or("upload").to_string();
            match field.bytes().await {
                Ok(bytes) => file = Some((name, bytes)),
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
    }
    let Some((name, bytes)) = file else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "field required: file");
    };
    let outcome = docpipe_core::domain::format::Format::from_key(&name)
        .and_then(|format| {
            let bounds = ParseLimits::default().bounds(format, bytes.len());
            docpipe_ingest::parsing::parse(&name, bytes, &bounds)
        })
        .map(|doc| (doc.text, doc.pages.unwrap_or(1)))
        .map_err(|reason| reason.to_string());
    let id = uuid::Uuid::new_v4().to_string();
    let job = ParseJob {
        submitted: Instant::now(),
        outcome,
    };
    let body = mock.job_body(&id, &job);
    mock.jobs.lock().unwrap().insert(id, job);
    Json(body).into_response()
}

async fn status(
    State(mock): State<Arc<MockLlamaParse>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = mock.admit(&headers).await {
        return refused;
    }
    match mock.jobs.lock().unwrap().get(&id) {
        Some(job) => Json(mock.job_body(&id, job)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Job not found"),
    }
}

async fn result(
    State(mock): State<Arc<MockLlamaParse>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = mock.admit(&headers).await {
        return refused;
    }
    let jobs = mock.jobs.lock().unwrap();
    let Some(job) = jobs.get(&id) else {
        return error(StatusCode::NOT_FOUND, "Job not found");
    };
    match (&job.outcome, job.submitted.elapsed() < mock.config.processing_delay) {
        (_, true) => error(StatusCode::NOT_FOUND, "Job is not done yet"),
        (Err(reason), _) => error(StatusCode::BAD_REQUEST, reason),
        (Ok((markdown, pages)), _) => Json(json!({
            "markdown": markdown,
            "job_metadata": { "job_pages": pages, "credits_used": pages, "job_is_cache_hit": false },
        }))
        .into_response(),
    }
}
