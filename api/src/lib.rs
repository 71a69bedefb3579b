//! docpipe's HTTP API as one axum router: served by the `api` Lambda function
//! behind API Gateway (HTTP API, payload v2) and locally by `docpipe-api`.
//! Every route acts for one tenant, the caller's: another tenant's ids are
//! 404, never 403, so ids reveal nothing.

pub mod auth;
mod health;
mod rate_limit;
pub mod server;
mod settings;
mod uploads;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use docpipe_shared::lambda::Deployment;
use docpipe_shared::settings::{Env, Parts};
use docpipe_shared::stages::ingest::{self, Reprocess};
use docpipe_shared::{JobState, cost, search, status};
use serde::{Deserialize, Serialize};
pub use settings::ApiSettings;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

pub use auth::{Auth, Tenant, parse_api_keys};

/// Largest `top_k` a search may ask for.
pub const MAX_TOP_K: u32 = 100;
/// Longest search query, in bytes.
pub const MAX_QUERY_BYTES: usize = 8192;
/// Largest request body any route reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI document of every route, served at `/v1/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../openapi.yaml");
/// The operations dashboard, one page with no build step.
const DASHBOARD: &str = include_str!("../dashboard.html");

/// What every handler shares.
pub struct Api {
    pub deployment: Arc<Deployment>,
    pub auth: Auth,
    /// The queues `GET /v1/health` reports.
    pub queues: Vec<WatchedQueue>,
    /// How long a presigned upload URL stays valid.
    pub upload_url_ttl: Duration,
    /// Each tenant's requests a minute.
    rates: rate_limit::TenantRates,
    /// Tenants that see deployment-wide figures (every tenant's messages in
    /// the queues): the operators' (`API_OPERATOR_TENANTS`).
    pub operators: std::collections::HashSet<String>,
}

/// A queue and its dead-letter queue, as health reports them.
#[derive(Debug, Clone)]
pub struct WatchedQueue {
    pub name: &'static str,
    pub url: String,
    pub dead_letter_url: Option<String>,
}

impl Api {
    /// The API over `deployment`, with the queues it watches, the upload
    /// URL lifetime, the rate limit and the operators from `settings`.
    pub fn new(deployment: Arc<Deployment>, auth: Auth, settings: &ApiSettings) -> Api {
        let stages = &deployment.aws.queues;
        let mut queues = Vec::new();
        for (name, url, dead_letter_url) in [
            (
                "uploads",
                settings.uploads_queue_url.clone(),
                &settings.uploads_dlq_url,
            ),
            ("parse", Some(stages.parse.clone()), &settings.parse_dlq_url),
            ("chunk", Some(stages.chunk.clone()), &settings.chunk_dlq_url),
            ("embed", Some(stages.embed.clone()), &settings.embed_dlq_url),
        ] {
            if let Some(url) = url {
                queues.push(WatchedQueue {
                    name,
                    url,
                    dead_letter_url: dead_letter_url.clone(),
                });
            }
        }
        let per_minute =
            NonZeroU32::new(settings.tenant_api_requests_per_minute).unwrap_or(NonZeroU32::MIN);
        Api {
            deployment,
            auth,
            queues,
            upload_url_ttl: settings.upload_url_ttl,
            rates: rate_limit::TenantRates::new(per_minute),
            operators: settings.api_operator_tenants.iter().cloned().collect(),
        }
    }

    /// Counts a request of `tenant`: 429 once it is over its allowance.
    async fn admit(&self, tenant: &str) -> Result<(), ApiError> {
        let override_per_minute = async {
            let client = self.deployment.pipeline.db.get().await.ok()?;
            cost::api_requests_per_minute(&client, tenant).await.ok()?
        };
        self.rates
            .admit(tenant, override_per_minute)
            .await
            .map_err(|over| {
                let message = format!(
                    "tenant {tenant} is over its {} requests a minute; retry later",
                    over.per_minute
                );
                ApiError::too_many("rate_limited", message, over.retry_in)
            })
    }

    async fn db(&self) -> Result<docpipe_shared::db::Client, ApiError> {
        Ok(self
            .deployment
            .pipeline
            .db
            .get()
            .await
            .map_err(docpipe_shared::Error::from)?)
    }
}

/// An error as the API answers it: a status and `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds to wait before asking again (`Retry-After`), for a 429.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429: come back in `wait` (at least a second).
    fn too_many(code: &'static str, message: impl Into<String>, wait: Duration) -> Self {
        ApiError {
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<docpipe_shared::Error> for ApiError {
    fn from(error: docpipe_shared::Error) -> Self {
        match &error {
            // The request's own data (e.g. the database refused a value of it).
            docpipe_shared::Error::Rejected(reason) => {
                return ApiError::bad_request(reason.to_string());
            }
            // The caller's spending (or the deployment's) is stopped for now.
            docpipe_shared::Error::Waiting(wait) => {
                let left = wait
                    .until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                return ApiError::too_many("spending_stopped", wait.reason.clone(), left);
            }
            docpipe_shared::Error::Transient(_) => {}
        }
        tracing::error!(%error, "request failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the service could not answer; try again",
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(rejection.status(), "bad_request", rejection.body_text())
    }
}

/// A UUID from a path or query, or a 400 naming `what` it should have been.
fn parse_id(text: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::bad_request(format!("{what} must be a UUID")))
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(DASHBOARD) }))
        .route("/v1/openapi.yaml", get(openapi))
        .route("/v1/health", get(health::report))
        .route("/v1/uploads", post(uploads::create))
        .route("/v1/metrics", get(tenant_metrics))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/documents/{id}", get(document).delete(delete_document))
        .route("/v1/documents/{id}/reprocess", post(reprocess_document))
        .route("/v1/search", post(search_chunks))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI)
}

#[derive(Debug, Serialize)]
struct JobDetail {
    #[serde(flatten)]
    outcome: status::JobOutcome,
    history: Vec<status::JobEvent>,
}

#[derive(Debug, Serialize)]
struct MetricsReport {
    tenant: String,
    #[serde(flatten)]
    metrics: status::TenantMetrics,
    /// The caller's own limits, and its paid requests in the last hour.
    #[serde(flatten)]
    limits: cost::TenantLimits,
    requests_last_hour: i64,
}

/// The caller's jobs per state, throughput and spending today.
async fn tenant_metrics(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
) -> Result<Json<MetricsReport>, ApiError> {
    let client = api.db().await?;
    let policy = &api.deployment.pipeline.cost;
    Ok(Json(MetricsReport {
        metrics: status::tenant_metrics(&client, &tenant).await?,
        limits: cost::tenant_limits(&client, policy, &tenant).await?,
        requests_last_hour: cost::spending(&client, Some(&tenant))
            .await?
            .requests_last_hour,
        tenant,
    }))
}

/// `tenant`'s job `id` with its history, if there is one. Every query names
/// the tenant, so a crafted id of another tenant finds nothing.
async fn job_detail(
    client: &docpipe_shared::db::Client,
    tenant: &str,
    id: Uuid,
) -> Result<Option<JobDetail>, ApiError> {
    let Some(outcome) = status::tenant_job(client, tenant, id).await? else {
        return Ok(None);
    };
    Ok(Some(JobDetail {
        history: status::history(client, tenant, id).await?,
        outcome,
    }))
}

async fn job(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    let id = parse_id(&id, "job id")?;
    match job_detail(&api.db().await?, &tenant, id).await? {
        Some(detail) => Ok(Json(detail)),
        None => Err(ApiError::not_found("job")),
    }
}

/// The caller's document `id` (a UUID), or 404.
async fn own_document(api: &Api, tenant: &str, id: &str) -> Result<status::Document, ApiError> {
    let id = parse_id(id, "document id")?;
    let client = api.db().await?;
    status::document(&client, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("document"))
}

#[derive(Debug, Serialize)]
struct DocumentDetail {
    #[serde(flatten)]
    document: status::Document,
    latest_job: Option<JobDetail>,
}

async fn document(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<DocumentDetail>, ApiError> {
    let document = own_document(&api, &tenant, &id).await?;
    let latest_job = match document.latest_job_id {
        Some(job_id) => job_detail(&api.db().await?, &tenant, job_id).await?,
        None => None,
    };
    Ok(Json(DocumentDetail {
        document,
        latest_job,
    }))
}

/// Deletes the upload, its chunks, vectors and parsed text.
async fn delete_document(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let document = own_document(&api, &tenant, &id).await?;
    ingest::delete_upload(&api.deployment.pipeline, &document.source_key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs the document's latest job again (202), unless it is running (409).
async fn reprocess_document(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let document = own_document(&api, &tenant, &id).await?;
    let correlation_id = Uuid::new_v4().to_string();
    match ingest::reprocess(
        &api.deployment.pipeline,
        document.document_id,
        &correlation_id,
    )
    .await?
    {
        Reprocess::Queued(job_id) => Ok((
            StatusCode::ACCEPTED,
            Json(
                serde_json::json!({"job_id": job_id, "state": "queued", "correlation_id": correlation_id}),
            ),
        )),
        Reprocess::Running(state) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_progress",
            format!("the document's job is still {state}; try again when it has ended"),
        )),
        Reprocess::Unknown => Err(ApiError::not_found("document")),
    }
}

/// Largest page of `GET /v1/jobs`.
pub const MAX_PAGE: i64 = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobsQuery {
    state: Option<String>,
    /// Only the caller's own tenant may be named.
    tenant: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
struct JobsPage {
    jobs: Vec<status::JobOutcome>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<Uuid>,
}

async fn list_jobs(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Json<JobsPage>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    if query.tenant.as_ref().is_some_and(|t| *t != tenant) {
        return Err(ApiError::not_found("tenant"));
    }
    let state = match query.state.as_deref() {
        None => None,
        Some(name) => Some(JobState::parse(name).ok_or_else(|| {
            let known: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(format!("state must be one of {}", known.join(", ")))
        })?),
    };
    let after = match query.after.as_deref() {
        None => None,
        Some(id) => Some(parse_id(id, "after")?),
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let client = api.db().await?;
    let jobs = status::jobs(&client, &tenant, state, after, limit).await?;
    let next = if jobs.len() as i64 == limit {
        jobs.last().map(|j| j.job_id)
    } else {
        None
    };
    Ok(Json(JobsPage { jobs, next }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    query: String,
    #[serde(default = "default_top_k")]
    top_k: u32,
    #[serde(default)]
    filter: SearchFilterRequest,
}

/// Most document ids one search may name.
pub const MAX_FILTER_IDS: usize = 100;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchFilterRequest {
    /// A folder or name prefix under the caller's folder (`reports/2026/`).
    key_prefix: Option<String>,
    document_ids: Option<Vec<Uuid>>,
}

impl SearchFilterRequest {
    /// The filter in the caller's folder: a prefix can never reach another tenant's keys.
    fn scoped(self, tenant: &str) -> Result<search::SearchFilter, ApiError> {
        if let Some(ids) = &self.document_ids
            && !(1..=MAX_FILTER_IDS).contains(&ids.len())
        {
            return Err(ApiError::bad_request(format!(
                "filter.document_ids must name 1 to {MAX_FILTER_IDS} documents"
            )));
        }
        if let Some(prefix) = &self.key_prefix
            && prefix.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request(
                "filter.key_prefix must not contain control characters (NUL, newlines…)",
            ));
        }
        Ok(search::SearchFilter {
            key_prefix: self
                .key_prefix
                .map(|prefix| format!("{}{tenant}/{prefix}", ingest::UPLOAD_PREFIX)),
            document_ids: self.document_ids,
        })
    }
}

fn default_top_k() -> u32 {
    10
}

#[derive(Debug, Serialize)]
struct SearchResponse {
    hits: Vec<search::SearchHit>,
}

async fn search_chunks(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    request: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let Json(request) = request?;
    let query = request.query.trim();
    if query.is_empty() {
        return Err(ApiError::bad_request("query must not be empty"));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "query is {} bytes; at most {MAX_QUERY_BYTES}",
            query.len()
        )));
    }
    if !(1..=MAX_TOP_K).contains(&request.top_k) {
        return Err(ApiError::bad_request(format!(
            "top_k must be 1 to {MAX_TOP_K}"
        )));
    }
    let filter = request.filter.scoped(&tenant)?;
    let pipeline = &api.deployment.pipeline;
    let hits = search::search(
        &pipeline.db,
        pipeline.embedding()?.embedder.as_ref(),
        &pipeline.cost,
        &tenant,
        query,
        request.top_k,
        &filter,
    )
    .await?;
    Ok(Json(SearchResponse { hits }))
}

/// The `api` Lambda function: a cold start builds the clients once, then
/// API Gateway's requests go through the same router as locally. The tenant
/// is the authorizer's `TENANT_CLAIM` (default `tenant`).
pub async fn serve_lambda() -> Result<(), lambda_http::Error> {
    docpipe_shared::telemetry::init("info");
    // Search embeds queries: the API builds the embedder and no other part.
    let deployment = Deployment::from_env(Parts::EMBED).await.inspect_err(|e| {
        tracing::error!(error = %e, "configuration error");
    })?;
    let settings: ApiSettings = Env::from_process().load()?;
    let claim = settings.tenant_claim.clone();
    let api = Api::new(Arc::new(deployment), Auth::Authorizer { claim }, &settings);
    lambda_http::run(router(Arc::new(api))).await
}
