//! Bedrock Agent's ingestion jobs (`StartIngestionJob`, `GetIngestionJob`,
//! `ListIngestionJobs`) over docpipe's syncs: a knowledge base's data
//! source is its prefix of the tenant's folder, and an ingestion job a sync
//! of it, with Bedrock's statistics.

use super::syncs::ask_for_a_slice;
use crate::auth::Tenant;
use crate::bedrock::{KnowledgeBase, paging};
use crate::error::ApiError;
use crate::state::Api;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use docpipe_ingest::store::sync::{self as rows, SyncRow};
use docpipe_ingest::sync::{self, IngestionJob, Scope, Started, StartedBy};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::SystemTime;

/// `ListIngestionJobs`' default and largest `maxResults` (Bedrock's).
const DEFAULT_RESULTS: u32 = 10;
const MAX_RESULTS: u32 = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct StartRequest {
    /// Bedrock's idempotency token: one job of a data source runs at a time
    /// whatever the token.
    #[serde(rename = "clientToken")]
    _client_token: Option<serde::de::IgnoredAny>,
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ListRequest {
    filters: Option<Vec<Filter>>,
    sort_by: Option<SortBy>,
    max_results: Option<u32>,
    next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    attribute: String,
    operator: String,
    values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SortBy {
    attribute: String,
    order: String,
}

fn refuse(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// The caller's knowledge base `id` whose data source is `data_source_id`;
/// another tenant's and an unknown one are not found alike.
fn data_source(
    api: &Api,
    tenant: &str,
    id: &str,
    data_source_id: &str,
) -> Result<KnowledgeBase, ApiError> {
    let missing = |what: String| ApiError::new(StatusCode::NOT_FOUND, "not_found", what);
    let base = api
        .bedrock
        .knowledge_bases
        .of(tenant, id)
        .ok_or_else(|| missing(format!("knowledge base {id} is not found")))?;
    if base.data_source_id != data_source_id {
        return Err(missing(format!(
            "data source {data_source_id} of knowledge base {id} is not found"
        )));
    }
    Ok(base.clone())
}

/// A sync as Bedrock's `IngestionJob` (and `IngestionJobSummary`).
fn ingestion_job(row: &SyncRow) -> Value {
    let counts = &row.counts;
    let status = match row.state.as_str() {
        "complete" => "COMPLETE",
        "failed" => "FAILED",
        _ => "IN_PROGRESS",
    };
    let mut job = json!({
        "knowledgeBaseId": row.knowledge_base_id,
        "dataSourceId": row.data_source_id,
        "ingestionJobId": row.ingestion_job_id,
        "status": status,
        "statistics": {
            "numberOfDocumentsScanned": counts.documents_scanned,
            "numberOfMetadataDocumentsScanned": counts.metadata_documents_scanned,
            "numberOfNewDocumentsIndexed": counts.new,
            "numberOfModifiedDocumentsIndexed": counts.modified,
            "numberOfMetadataDocumentsModified": counts.metadata_modified,
            "numberOfDocumentsDeleted": counts.deleted,
            "numberOfDocumentsFailed": counts.failed,
        },
        "startedAt": row.started_at.to_string(),
        "updatedAt": row.updated_at.to_string(),
    });
    if let Some(description) = &row.description {
        job["description"] = json!(description);
    }
    let reasons: Vec<String> = row
        .error
        .iter()
        .cloned()
        .chain(
            counts
                .failures
                .iter()
                .map(|(code, count)| format!("{count} documents failed: {code}")),
        )
        .collect();
    if !reasons.is_empty() {
        job["failureReasons"] = json!(reasons);
    }
    job
}

/// `PUT …/ingestionjobs/`: a sync of the data source's prefix.
pub(super) async fn start(
    State(api): State<Arc<Api>>,
    Path((id, data_source_id)): Path<(String, String)>,
    Tenant(tenant): Tenant,
    request: Result<Json<StartRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let base = data_source(&api, &tenant, &id, &data_source_id)?;
    let Json(request) = request?;
    if let Some(description) = &request.description
        && !(1..=200).contains(&description.chars().count())
    {
        return Err(refuse("description must be 1 to 200 characters"));
    }
    let scope = Scope::new(tenant.clone(), base.prefix.as_deref().unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let job = IngestionJob {
        knowledge_base_id: &id,
        data_source_id: &data_source_id,
        description: request.description.as_deref(),
    };
    let started = sync::start(&api.pipeline, &scope, false, StartedBy::IngestionJob(job)).await?;
    ask_for_a_slice(&api, started).await?;
    if !matches!(started, Started::New(_)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("a sync of data source {data_source_id} is in progress; wait for it to end"),
        ));
    }
    let client = api.client().await?;
    let row = rows::get(&client, &tenant, started.id())
        .await?
        .ok_or_else(|| ApiError::not_found("ingestion job"))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "ingestionJob": ingestion_job(&row) })),
    ))
}

/// `GET …/ingestionjobs/{ingestionJobId}`.
pub(super) async fn one(
    State(api): State<Arc<Api>>,
    Path((id, data_source_id, job_id)): Path<(String, String, String)>,
    Tenant(tenant): Tenant,
) -> Result<Json<Value>, ApiError> {
    data_source(&api, &tenant, &id, &data_source_id)?;
    let client = api.client().await?;
    match rows::ingestion_job(&client, (&tenant, &id), &job_id).await? {
        Some(row) => Ok(Json(json!({ "ingestionJob": ingestion_job(&row) }))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("ingestion job {job_id} is not found"),
        )),
    }
}

/// `POST …/ingestionjobs/`: the data source's jobs, newest first unless
/// asked otherwise, paged by `nextToken`.
pub(super) async fn list(
    State(api): State<Arc<Api>>,
    Path((id, data_source_id)): Path<(String, String)>,
    Tenant(tenant): Tenant,
    request: Result<Json<ListRequest>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    data_source(&api, &tenant, &id, &data_source_id)?;
    let Json(request) = request?;
    let states = match request.filters.as_deref() {
        None => None,
        Some(
            [
                Filter {
                    attribute,
                    operator,
                    values,
                },
            ],
        ) if attribute == "STATUS" && operator == "EQ" => Some(
            values
                .iter()
                .map(|status| state_of(status))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(refuse("filters: one filter, attribute STATUS, operator EQ")),
    };
    let ascending = match &request.sort_by {
        None => false,
        Some(SortBy { attribute, order }) if attribute == "STARTED_AT" => order == "ASCENDING",
        Some(_) => {
            return Err(refuse(
                "sortBy: attribute STARTED_AT, order ASCENDING or DESCENDING",
            ));
        }
    };
    let limit = request.max_results.unwrap_or(DEFAULT_RESULTS);
    if !(1..=MAX_RESULTS).contains(&limit) {
        return Err(refuse(format!("maxResults must be 1 to {MAX_RESULTS}")));
    }
    // A page continues the listing it was given for, and no other.
    let binding = hex::encode(Sha256::digest(format!(
        "{tenant}\n{id}\n{states:?}\n{ascending}\n{limit}"
    )));
    let now = SystemTime::now();
    let offset = api
        .bedrock
        .page_tokens
        .offset(request.next_token.as_deref(), &binding, now)
        .ok_or_else(|| refuse(paging::REFUSED))?;
    let client = api.client().await?;
    let page = (i64::from(offset), i64::from(limit) + 1);
    let mut jobs =
        rows::ingestion_jobs(&client, (&tenant, &id), states.as_deref(), ascending, page).await?;
    let more = jobs.len() > limit as usize;
    jobs.truncate(limit as usize);
    let mut answer =
        json!({ "ingestionJobSummaries": jobs.iter().map(ingestion_job).collect::<Vec<_>>() });
    if more {
        answer["nextToken"] = json!(api.bedrock.page_tokens.issue(&binding, offset + limit, now));
    }
    Ok(Json(answer))
}

/// The sync state a Bedrock ingestion-job status names.
fn state_of(status: &str) -> Result<&'static str, ApiError> {
    match status {
        "STARTING" | "IN_PROGRESS" | "STOPPING" => Ok("running"),
        "COMPLETE" => Ok("complete"),
        "FAILED" | "STOPPED" => Ok("failed"),
        other => Err(refuse(format!("filters: unknown status {other:?}"))),
    }
}
