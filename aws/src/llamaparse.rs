//! Client for LlamaParse (LlamaCloud parsing API v1): upload a file, get a
//! job id; check the job; fetch its markdown. Each call is one short HTTP
//! exchange through [`ExternalService`]; the waiting between them is done by
//! delayed queue messages, never by sleeping in a function.

use bytes::Bytes;
use docpipe_core::error::{Error, Rejection, Result};
use docpipe_core::external::rate_limit::RateLimiter;
use docpipe_core::external::{self, ExternalService, Failure};
use docpipe_core::settings::{ExposeSecret, ExternalPolicy, LlamaParseSettings, Secret};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::num::NonZeroU32;

pub struct LlamaParseClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Secret,
    extensions: Vec<String>,
    service: ExternalService,
}

/// Where a submitted job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    /// `SUCCESS` or `PARTIAL_SUCCESS`: the result can be fetched.
    Done,
    /// `ERROR` or `CANCELLED`, with LlamaParse's reason.
    Failed(String),
}

/// A finished job's markdown and the pages it was billed for.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseResult {
    pub markdown: String,
    pub pages: u32,
}

#[derive(Deserialize)]
struct JobBody {
    id: String,
    status: String,
    #[serde(default)]
    error_message: Option<String>,
}

#[derive(Deserialize)]
struct ResultBody {
    markdown: String,
    #[serde(default)]
    job_metadata: Option<JobMetadata>,
}

#[derive(Deserialize)]
struct JobMetadata {
    #[serde(default)]
    job_pages: Option<u32>,
}

#[derive(Deserialize)]
struct ErrorBody {
    detail: serde_json::Value,
}

impl LlamaParseClient {
    pub fn new(config: &LlamaParseSettings, policy: &ExternalPolicy) -> Result<Self> {
        let http = external::http_client(config.timeout)?;
        Ok(LlamaParseClient {
            http,
            base_url: format!("{}/api/v1/parsing", config.base_url),
            api_key: config.api_key(),
            extensions: config.extensions.clone(),
            service: ExternalService::new(
                "llamaparse",
                policy,
                RateLimiter::new(None, NonZeroU32::MIN, None),
            ),
        })
    }

    /// Whether documents with this key go to LlamaParse.
    pub fn handles(&self, key: &str) -> bool {
        let name = docpipe_core::domain::keys::file_name(key);
        name.rsplit_once('.')
            .is_some_and(|(_, ext)| self.extensions.contains(&ext.to_ascii_lowercase()))
    }

    pub fn service(&self) -> &ExternalService {
        &self.service
    }

    /// Uploads a file; returns LlamaParse's job id.
    pub async fn submit(&self, file_name: &str, bytes: Bytes) -> Result<String> {
        let job: JobBody = self
            .service
            .call(0, || async {
                let part =
                    reqwest::multipart::Part::stream_with_length(bytes.clone(), bytes.len() as u64)
                        .file_name(file_name.to_string());
                let form = reqwest::multipart::Form::new().part("file", part);
                let request = self
                    .http
                    .post(format!("{}/upload", self.base_url))
                    .multipart(form);
                self.exchange(request, "LlamaParse upload").await
            })
            .await?;
        Ok(job.id)
    }

    pub async fn status(&self, job_id: &str) -> Result<JobStatus> {
        let job: JobBody = self
            .service
            .call(0, || async {
                let request = self.http.get(format!("{}/job/{job_id}", self.base_url));
                self.exchange(request, "LlamaParse job status").await
            })
            .await?;
        Ok(match job.status.as_str() {
            "SUCCESS" | "PARTIAL_SUCCESS" => JobStatus::Done,
            "ERROR" | "CANCELLED" | "CANCELED" => JobStatus::Failed(match job.error_message {
                Some(message) => docpipe_core::ops::redact::credentials(&message),
                None => format!("job ended {}", job.status),
            }),
            _ => JobStatus::Pending,
        })
    }

    pub async fn result(&self, job_id: &str) -> Result<ParseResult> {
        let result: ResultBody = self
            .service
            .call(0, || async {
                let url = format!("{}/job/{job_id}/result/markdown", self.base_url);
                self.exchange(self.http.get(url), "LlamaParse result").await
            })
            .await?;
        Ok(ParseResult {
            markdown: result.markdown,
            pages: result.job_metadata.and_then(|m| m.job_pages).unwrap_or(1),
        })
    }

    /// One authorised exchange whose answer is JSON of type `T`.
    async fn exchange<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, Failure> {
        let request = request
            .bearer_auth(self.api_key.expose_secret())
            .header("accept", "application/json");
        let (status, headers, body) = external::send(request, what).await?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| match b.detail {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                })
                .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(300)]).into());
            // 402: out of credits; no retry helps.
            return Err(external::status_failure(
                status,
                &headers,
                format!("{what}: {detail}"),
                false,
                |detail| Rejection::ParseFailed { detail }.into(),
            ));
        }
        serde_json::from_slice(&body).map_err(|e| {
            Failure::Unavailable(Error::transient(
                &format!("{what} is not the expected JSON"),
                e,
            ))
        })
    }
}
