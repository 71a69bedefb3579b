//! `mock-openai`: OpenAI's `POST /v1/embeddings`, deterministic. Vectors are
//! the in-process `mock` embedder's, so both paths give the same search results.
//! Faults come from [`FaultInjector`]; an optional tokens-per-minute limit is
//! enforced over a sliding window with 429s and `x-ratelimit-*` headers, as
//! OpenAI does. `GET /mock/stats` tells what was accepted and injected.

use crate::faults::{Fault, FaultInjector, FaultKnobs};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use docpipe_core::tokens::tokenizer;
use docpipe_ingest::embedding::mock;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// OpenAI's limits, enforced the way OpenAI does.
pub const MAX_INPUTS: usize = 2048;
pub const MAX_INPUT_TOKENS: usize = 8192;

#[derive(Debug, Clone)]
pub struct MockOpenAiConfig {
    /// Dimensions when the request has no `dimensions`.
    pub default_dims: usize,
    /// If set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Tokens accepted per `limit_window` (OpenAI's TPM when the window is a minute).
    pub tokens_per_window: Option<u64>,
    pub limit_window: Duration,
    pub faults: FaultKnobs,
}

impl Default for MockOpenAiConfig {
    fn default() -> Self {
        MockOpenAiConfig {
            default_dims: docpipe_core::settings::DEFAULT_EMBEDDING_DIMS,
            api_key: None,
            tokens_per_window: None,
            limit_window: Duration::from_secs(60),
            faults: FaultKnobs::default(),
        }
    }
}

/// Accepted requests within the last window, for the tokens-per-minute limit.
struct TokenWindow {
    limit: u64,
    window: Duration,
    accepted: VecDeque<(Instant, u64)>,
    used: u64,
}

impl TokenWindow {
    /// Takes `tokens` if they fit; otherwise how long until they would.
    fn take(&mut self, tokens: u64, now: Instant) -> Result<u64, Duration> {
        while let Some(&(at, n)) = self.accepted.front() {
            if now.duration_since(at) < self.window {
                break;
            }
            self.accepted.pop_front();
            self.used -= n;
        }
        if self.used + tokens <= self.limit {
            self.accepted.push_back((now, tokens));
            self.used += tokens;
            return Ok(self.limit - self.used);
        }
        // Wait until enough of the oldest requests leave the window.
        let mut freed = self.limit.saturating_sub(self.used);
        for &(at, n) in &self.accepted {
            freed += n;
            if freed >= tokens {
                return Err(self.window.saturating_sub(now.duration_since(at)));
            }
        }
        Err(self.window)
    }

    /// Until the oldest accepted request leaves the window.
    fn reset(&self, now: Instant) -> Duration {
        self.accepted.front().map_or(Duration::ZERO, |&(at, _)| {
            self.window.saturating_sub(now.duration_since(at))
        })
    }
}

/// What the mock accepted, for benches and tests: `(ms since start, tokens)`.
#[derive(Default)]
struct Stats {
    requests: u64,
    limited: u64,
    accepted: Vec<(u64, u64)>,
    /// Every request that reached the token limit, accepted or not.
    attempted: Vec<(u64, u64)>,
}

pub struct MockOpenAi {
    config: MockOpenAiConfig,
    pub faults: FaultInjector,
    window: Option<Mutex<TokenWindow>>,
    stats: Mutex<Stats>,
    started: Instant,
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    input: Input,
    model: String,
    dimensions: Option<usize>,
    #[serde(default)]
    encoding_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

/// An OpenAI-shaped error; every error this mock gives is an `invalid_request_error`.
fn error(status: StatusCode, code: Option<&str>, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "message": message.into(), "type": "invalid_request_error", "param": null, "code": code } });
    (status, Json(body)).into_response()
}

/// OpenAI's duration format in `x-ratelimit-reset-*`: `6m0s`, `1.5s`, `20ms`.
fn reset_header(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{}s", ms as f64 / 1000.0),
        _ => format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

fn rate_limited(message: &str, retry_after: Duration) -> Response {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        Some("rate_limit_exceeded"),
        message,
    );
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let headers = response.headers_mut();
    headers.insert("retry-after", HeaderValue::from(secs));
    headers.insert(
        "retry-after-ms",
        HeaderValue::from(retry_after.as_millis() as u64),
    );
    response
}

impl MockOpenAi {
    pub fn new(config: MockOpenAiConfig) -> Arc<MockOpenAi> {
        Arc::new(MockOpenAi {
            faults: FaultInjector::new(config.faults.clone()),
            window: config.tokens_per_window.map(|limit| {
                Mutex::new(TokenWindow {
                    limit,
                    window: config.limit_window,
                    accepted: VecDeque::new(),
                    used: 0,
                })
            }),
            stats: Mutex::default(),
            started: Instant::now(),
            config,
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/embeddings", post(embeddings))
            .route("/mock/stats", get(stats))
            .route("/mock/faults", get(get_faults).put(put_faults))
            .route("/health", get(|| async { "ok" }))
            .with_state(self.clone())
    }

    /// Requests received, faults included.
    pub fn requests(&self) -> u64 {
        self.stats.lock().unwrap().requests
    }

    /// Requests refused for the tokens-per-minute limit (injected 429s not counted).
    pub fn rate_limited(&self) -> u64 {
        self.stats.lock().unwrap().limited
    }

    /// Each accepted request as `(ms since start, tokens)`.
    pub fn accepted(&self) -> Vec<(u64, u64)> {
        self.stats.lock().unwrap().accepted.clone()
    }

    /// Each request that reached the token limit, accepted or refused, as `(ms since start, tokens)`.
    pub fn attempted(&self) -> Vec<(u64, u64)> {
        self.stats.lock().unwrap().attempted.clone()
    }
}

async fn stats(State(mock): State<Arc<MockOpenAi>>) -> Json<Value> {
    let stats = mock.stats.lock().unwrap();
    Json(json!({
        "requests": stats.requests,
        "rate_limited": stats.limited,
        "accepted_tokens": stats.accepted.iter().map(|(_, t)| t).sum::<u64>(),
        "accepted": stats.accepted,
        "faults": mock.faults.injected(),
    }))
}

async fn get_faults(State(mock): State<Arc<MockOpenAi>>) -> Json<FaultKnobs> {
    Json(mock.faults.knobs())
}

async fn put_faults(State(mock): State<Arc<MockOpenAi>>, Json(knobs): Json<FaultKnobs>) {
    mock.faults.set_knobs(knobs);
}

async fn embeddings(
    State(mock): State<Arc<MockOpenAi>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    mock.stats.lock().unwrap().requests += 1;
    let fault = mock.faults.next().await;
    let config = &mock.config;
    match fault {
        Some(Fault::ServerError) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "The server is overloaded or not ready yet.",
            );
        }
        Some(Fault::RateLimited) => {
            let knobs = mock.faults.knobs();
            let message = "Rate limit reached for requests";
            if let Some(raw) = knobs.retry_after_raw {
                let mut response = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    Some("rate_limit_exceeded"),
                    message,
                );
                if let Ok(value) = HeaderValue::from_str(&raw) {
                    response.headers_mut().insert("retry-after", value);
                }
                return response;
            }
            let retry_after = Duration::from_secs(knobs.retry_after_secs.max(1));
            return rate_limited(message, retry_after);
        }
        Some(Fault::Malformed) => return (StatusCode::OK, "{\"data\": [").into_response(),
        _ => {}
    }
    if !crate::bearer_authorised(&headers, config.api_key.as_deref()) {
        return error(
            StatusCode::UNAUTHORIZED,
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        );
    }
    let request: EmbeddingRequest = match serde_json::from_str(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, None, format!("Invalid body: {e}"));
        }
    };
    let inputs = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
    };
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        let message = format!(
            "'input' must have 1 to {MAX_INPUTS} items, got {}",
            inputs.len()
        );
        return error(StatusCode::BAD_REQUEST, None, message);
    }
    let dims = request.dimensions.unwrap_or(config.default_dims);
    if dims == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            None,
            "'dimensions' must be at least 1",
        );
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            let message = format!("'encoding_format' must be float or base64, got {other:?}");
            return error(StatusCode::BAD_REQUEST, None, message);
        }
    };
    let mut token_counts = Vec::with_capacity(inputs.len());
    for (index, text) in inputs.iter().enumerate() {
        let tokens = tokenizer().encode_ordinary(text).len();
        if tokens > MAX_INPUT_TOKENS {
            let message = format!(
                "This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however you requested {tokens} tokens (input {index})."
            );
            return error(
                StatusCode::BAD_REQUEST,
                Some("context_length_exceeded"),
                message,
            );
        }
        token_counts.push(tokens);
    }
    let prompt_tokens: usize = token_counts.iter().sum();
    let now = Instant::now();
    let at_ms = now.duration_since(mock.started).as_millis() as u64;
    mock.stats
        .lock()
        .unwrap()
        .attempted
        .push((at_ms, prompt_tokens as u64));
    let mut limit_headers = None;
    if let Some(window) = &mock.window {
        let mut window = window.lock().unwrap();
        match window.take(prompt_tokens as u64, now) {
            Ok(remaining) => limit_headers = Some((window.limit, remaining, window.reset(now))),
            Err(retry_after) => {
                drop(window);
                mock.stats.lock().unwrap().limited += 1;
                let message = format!(
                    "Rate limit reached for {} on tokens per min (TPM): Limit {}, Requested {prompt_tokens}.",
                    request.model,
                    config.tokens_per_window.unwrap_or(0)
                );
                return rate_limited(&message, retry_after);
            }
        }
    }
    mock.stats
        .lock()
        .unwrap()
        .accepted
        .push((at_ms, prompt_tokens as u64));
    let dims = if fault == Some(Fault::WrongDims) {
        dims.saturating_sub(1).max(1)
    } else {
        dims
    };
    let mut data = Vec::with_capacity(inputs.len());
    for (index, text) in inputs.iter().enumerate() {
        let vector = mock::vector(text, dims);
        let embedding = if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            json!(vector)
        };
        data.push(json!({ "object": "embedding", "index": index, "embedding": embedding }));
    }
    let mut response = Json(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens },
    }))
    .into_response();
    if let Some((limit, remaining, reset)) = limit_headers {
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit-tokens", HeaderValue::from(limit));
        headers.insert("x-ratelimit-remaining-tokens", HeaderValue::from(remaining));
        let reset = HeaderValue::from_str(&reset_header(reset)).expect("ascii");
        headers.insert("x-ratelimit-reset-tokens", reset);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_refuses_what_does_not_fit_and_says_for_how_long() {
        let start = Instant::now();
        let mut window = TokenWindow {
            limit: 100,
            window: Duration::from_secs(60),
            accepted: VecDeque::new(),
            used: 0,
        };
        assert_eq!(window.take(60, start), Ok(40));
        let later = start + Duration::from_secs(10);
        assert_eq!(window.take(30, later), Ok(10));
        // 50 more fit once the first 60 leave the window, 50 s from now.
        assert_eq!(
            window.take(50, later + Duration::from_secs(0)),
            Err(Duration::from_secs(50))
        );
        assert_eq!(window.take(50, start + Duration::from_secs(60)), Ok(20));
        assert_eq!(reset_header(Duration::from_millis(360_000)), "6m0s");
        assert_eq!(reset_header(Duration::from_millis(1500)), "1.5s");
        assert_eq!(reset_header(Duration::from_millis(20)), "20ms");
    }
}
