//! `GET` and `DELETE /v1/documents/{id}`, `POST /v1/documents/{id}/reprocess`:
//! the caller's own documents only (another tenant's id is 404).

use super::jobs::{self, JobDetail};
use crate::auth::Tenant;
use crate::error::{ApiError, parse_id};
use crate::state::Api;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use docpipe_core::store::status;
use docpipe_ingest::pipeline::ingest::{self, Reprocess};
use serde::Serialize;
use std::num::NonZeroU32;
use std::sync::Arc;
use uuid::Uuid;

/// The caller's document `id` (a UUID), or 404.
async fn own_document(api: &Api, tenant: &str, id: &str) -> Result<status::Document, ApiError> {
    let id = parse_id(id, "document id")?;
    let client = api.client().await?;
    status::document(&client, tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("document"))
}

#[derive(Debug, Serialize)]
pub(super) struct DocumentDetail {
    #[serde(flatten)]
    document: status::Document,
    latest_job: Option<JobDetail>,
}

pub(super) async fn one(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<DocumentDetail>, ApiError> {
    let document = own_document(&api, &tenant, &id).await?;
    let latest_job = match document.latest_job_id {
        Some(job_id) => jobs::detail(&api.client().await?, &tenant, job_id).await?,
        None => None,
    };
    Ok(Json(DocumentDetail {
        document,
        latest_job,
    }))
}

/// Deletes the upload, its chunks, vectors and parsed text.
pub(super) async fn delete(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let document = own_document(&api, &tenant, &id).await?;
    ingest::delete_upload(&api.pipeline, &document.source_key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a reprocess weighs against the tenant's API requests a minute,
/// besides the request itself: it reads, parses, chunks and looks up every
/// chunk of the document again.
const REPROCESS_WEIGHT: NonZeroU32 = NonZeroU32::new(9).unwrap();

/// Runs the document's latest job again (202), unless it is running (409).
pub(super) async fn reprocess(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let document = own_document(&api, &tenant, &id).await?;
    // It runs the whole pipeline again: it weighs as that many requests.
    api.admit(&tenant, REPROCESS_WEIGHT).await?;
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
