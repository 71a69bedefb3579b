//! `POST /v1/syncs` (sync the caller's folder, or a prefix of it, with its
//! documents), `GET /v1/syncs/{id}` and `GET /v1/syncs` (its recent ones).
//! A sync moves through the uploads queue a slice at a time
//! (`docpipe_ingest::sync`).

use crate::auth::Tenant;
use crate::error::{ApiError, parse_id};
use crate::state::Api;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use docpipe_ingest::sync::{self, Scope, Started, StartedBy, SyncRow};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Syncs `GET /v1/syncs` lists, newest first.
const RECENT: i64 = 20;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncRequest {
    /// A folder or name prefix under the caller's folder; none: all of it.
    #[serde(default)]
    prefix: String,
    /// Count what a sync would do, and do nothing.
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct SyncList {
    syncs: Vec<SyncRow>,
}

pub(super) async fn start(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    request: Result<Json<SyncRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<SyncRow>), ApiError> {
    let Json(request) = request?;
    let scope = Scope::new(tenant.clone(), &request.prefix).map_err(ApiError::bad_request)?;
    let started = sync::start(&api.pipeline, &scope, request.dry_run, StartedBy::Request).await?;
    ask_for_a_slice(&api, started).await?;
    let client = api.client().await?;
    let row = docpipe_ingest::store::sync::get(&client, &tenant, started.id())
        .await?
        .ok_or_else(|| ApiError::not_found("sync"))?;
    Ok((StatusCode::ACCEPTED, Json(row)))
}

/// Sends a new sync's first slice, or a stalled one's next (its message
/// lost), to the uploads queue.
pub(super) async fn ask_for_a_slice(api: &Api, started: Started) -> Result<(), ApiError> {
    if !started.needs_a_slice() {
        return Ok(());
    }
    let Some(queue) = api
        .infrastructure
        .queues
        .iter()
        .find(|q| q.name == "uploads")
    else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "syncs need the uploads queue (UPLOADS_QUEUE_URL)",
        ));
    };
    let message = sync::slice_message(started.id());
    let sqs = &api.infrastructure.sqs;
    Ok(docpipe_aws::sqs::send_one(sqs, &queue.url, message, Duration::ZERO).await?)
}

pub(super) async fn one(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<SyncRow>, ApiError> {
    let id = parse_id(&id, "sync id")?;
    let client = api.client().await?;
    match docpipe_ingest::store::sync::get(&client, &tenant, id).await? {
        Some(row) => Ok(Json(row)),
        None => Err(ApiError::not_found("sync")),
    }
}

pub(super) async fn list(
    State(api): State<Arc<Api>>,
    Tenant(tenant): Tenant,
) -> Result<Json<SyncList>, ApiError> {
    let client = api.client().await?;
    let syncs = docpipe_ingest::store::sync::recent(&client, &tenant, RECENT).await?;
    Ok(Json(SyncList { syncs }))
}
