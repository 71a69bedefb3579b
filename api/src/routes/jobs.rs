//! `GET /v1/jobs` (the caller's, a page at a time) and `GET /v1/jobs/{id}`.

use crate::auth::Tenant;
use crate::error::{ApiError, parse_id};
use crate::state::Api;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use docpipe_core::JobState;
use docpipe_core::store::status;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// Largest page of `GET /v1/jobs`.
pub const MAX_PAGE: i64 = 200;

#[derive(Debug, Serialize)]
pub(super) struct JobDetail {
    #[serde(flatten)]
    outcome: status::JobOutcome,
    history: Vec<status::JobEvent>,
}

/// `tenant`'s job `id` with its history, if there is one. Every query names
/// the tenant, so a crafted id of another tenant finds nothing.
pub(super) async fn detail(
    client: &docpipe_core::db::Client,
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

pub(super) async fn one(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    let id = parse_id(&id, "job id")?;
    match detail(&api.client().await?, &tenant, id).await? {
        Some(detail) => Ok(Json(detail)),
        None => Err(ApiError::not_found("job")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobsQuery {
    state: Option<String>,
    /// Only the caller's own tenant may be named.
    tenant: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
pub(super) struct JobsPage {
    jobs: Vec<status::JobOutcome>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<Uuid>,
}

pub(super) async fn list(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Result<Json<JobsPage>, ApiError> {
    let Query(query) = query?;
    if query.tenant.as_ref().is_some_and(|t| t != tenant.as_str()) {
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
    let client = api.client().await?;
    let jobs = status::jobs(&client, &tenant, state, after, limit).await?;
    let next = if jobs.len() as i64 == limit {
        jobs.last().map(|j| j.job_id)
    } else {
        None
    };
    Ok(Json(JobsPage { jobs, next }))
}
