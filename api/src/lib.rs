//! docpipe's HTTP API as one axum router: served locally by `docpipe-api`
//! and, later, by the `api` Lambda function behind API Gateway. Every route
//! acts for one tenant, the caller's: another tenant's ids are 404, never 403,
//! so ids reveal nothing.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use docpipe_shared::external::health;
use docpipe_shared::stages::Pipeline;
use docpipe_shared::stages::ingest::{self, Reprocess};
use docpipe_shared::{JobState, search, status};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Largest `top_k` a search may ask for.
pub const MAX_TOP_K: u32 = 100;
/// Longest search query, in bytes.
pub const MAX_QUERY_BYTES: usize = 8192;

/// What every handler shares.
pub struct Api {
    pub pipeline: Arc<Pipeline>,
    /// API key → tenant (`API_KEYS=key:tenant,…` locally).
    pub api_keys: HashMap<String, String>,
}

/// An error as the API answers it: a status and `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
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
        (self.status, Json(body)).into_response()
    }
}

impl From<docpipe_shared::Error> for ApiError {
    fn from(error: docpipe_shared::Error) -> Self {
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

impl Api {
    async fn db(&self) -> Result<docpipe_shared::db::Client, ApiError> {
        Ok(self
            .pipeline
            .db
            .get()
            .await
            .map_err(docpipe_shared::Error::from)?)
    }
}

/// A UUID from a path or query, or a 400 naming `what` it should have been.
fn parse_id(text: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::bad_request(format!("{what} must be a UUID")))
}

/// The caller's tenant, from `Authorization: Bearer <API key>`.
pub struct Tenant(pub String);

impl FromRequestParts<Arc<Api>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send `Authorization: Bearer <API key>`",
            )
        };
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(unauthorized)?;
        api.api_keys
            .get(key.trim())
            .map(|tenant| Tenant(tenant.clone()))
            .ok_or_else(unauthorized)
    }
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/health", get(health_report))
        .route("/v1/metrics", get(tenant_metrics))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/documents/{id}", get(document).delete(delete_document))
        .route("/v1/documents/{id}/reprocess", post(reprocess_document))
        .route("/v1/search", post(search_chunks))
        .with_state(api)
}

#[derive(Debug, Serialize)]
struct Health {
    /// `ok` when every part answers and no breaker is open, else `degraded`.
    status: &'static str,
    database: &'static str,
    breakers: Vec<health::ServiceBreaker>,
}

async fn health_report(State(api): State<Arc<Api>>, _tenant: Tenant) -> (StatusCode, Json<Health>) {
    let breakers = match api.pipeline.db.get().await {
        Ok(client) => health::read(&client).await.ok(),
        Err(_) => None,
    };
    let database = if breakers.is_some() {
        "ok"
    } else {
        "unavailable"
    };
    let breakers = breakers.unwrap_or_default();
    let healthy = database == "ok" && breakers.iter().all(|b| b.state == "closed");
    let code = if database == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if healthy { "ok" } else { "degraded" };
    (
        code,
        Json(Health {
            status,
            database,
            breakers,
        }),
    )
}

#[derive(Debug, Serialize)]
struct JobDetail {
    #[serde(flatten)]
    outcome: status::JobOutcome,
    history: Vec<status::JobEvent>,
}

#[derive(Debug, Serialize)]
struct MetricsReport {
    #[serde(flatten)]
    tenant: status::TenantMetrics,
    daily_budget_usd: f64,
}

/// The caller's jobs per state, throughput and spending today.
async fn tenant_metrics(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
) -> Result<Json<MetricsReport>, ApiError> {
    Ok(Json(MetricsReport {
        tenant: status::tenant_metrics(&api.db().await?, &tenant).await?,
        daily_budget_usd: api.pipeline.cost.daily_budget_usd,
    }))
}

/// A job's outcome and history, if it exists.
async fn job_detail(
    client: &docpipe_shared::db::Client,
    id: Uuid,
) -> Result<Option<JobDetail>, ApiError> {
    let Some(outcome) = status::outcomes(client, &[id]).await?.pop() else {
        return Ok(None);
    };
    Ok(Some(JobDetail {
        history: status::history(client, id).await?,
        outcome,
    }))
}

async fn job(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    let id = parse_id(&id, "job id")?;
    match job_detail(&api.db().await?, id).await? {
        Some(detail) if detail.outcome.tenant == tenant => Ok(Json(detail)),
        _ => Err(ApiError::not_found("job")),
    }
}

/// The caller's document `id` (a UUID), or 404.
async fn own_document(api: &Api, tenant: &str, id: &str) -> Result<status::Document, ApiError> {
    let id = parse_id(id, "document id")?;
    let client = api.db().await?;
    match status::document(&client, id).await? {
        Some(document) if document.tenant == tenant => Ok(document),
        _ => Err(ApiError::not_found("document")),
    }
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
        Some(job_id) => job_detail(&api.db().await?, job_id).await?,
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
    ingest::delete_upload(&api.pipeline, &document.source_key).await?;
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
    match ingest::reprocess(&api.pipeline, document.document_id, &correlation_id).await? {
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
    let pipeline = &api.pipeline;
    let hits = search::search(
        &pipeline.db,
        pipeline.embedder.as_ref(),
        &tenant,
        query,
        request.top_k,
    )
    .await?;
    Ok(Json(SearchResponse { hits }))
}

/// `key:tenant,key:tenant` (the `API_KEYS` setting) as a map.
pub fn parse_api_keys(text: &str) -> Result<HashMap<String, String>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, tenant) = pair.split_once(':').ok_or_else(|| {
                "API_KEYS must be key:tenant pairs separated by commas".to_string()
            })?;
            let (key, tenant) = (key.trim(), tenant.trim());
            if key.len() < 16 || tenant.is_empty() {
                return Err("each API key needs 16 or more characters and a tenant".to_string());
            }
            Ok((key.to_string(), tenant.to_string()))
        })
        .collect()
}
