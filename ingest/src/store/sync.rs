//! A sync's rows: the syncs themselves (`syncs`: scope, cursor, counts),
//! and what a sync reads of the documents and sidecars it compares a
//! listing with: their objects' versions, and the keys in a stretch of the
//! listing's order, a bounded page at a time.

use deadpool_postgres::GenericClient;
use docpipe_core::db::UtcTime;
use docpipe_core::domain::keys::SIDECAR_SUFFIX;
use docpipe_core::error::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::SystemTime;
use uuid::Uuid;

/// Most keys one read of a stretch returns.
pub const RANGE_PAGE: i64 = 1000;

/// Which table a sync reads: the documents' or their sidecars'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objects {
    Documents,
    Sidecars,
}

impl Objects {
    /// The object key of a row (`source_key`, or the sidecar's key) and
    /// its table.
    fn sql(self) -> (String, &'static str) {
        match self {
            Objects::Documents => ("source_key".into(), "upload_pipeline.documents"),
            Objects::Sidecars => (
                format!("source_key || '{SIDECAR_SUFFIX}'"),
                "upload_pipeline.metadata_sidecars",
            ),
        }
    }
}

/// The version each of `keys` (object keys) was last read at: `None` when
/// the row is there but its version is not known; absent when no row is.
pub async fn versions(
    client: &impl GenericClient,
    objects: Objects,
    tenant: &str,
    keys: &[&str],
) -> Result<HashMap<String, Option<String>>> {
    let (key, table) = objects.sql();
    // By `source_key` (indexed): a sidecar's row is its document's key.
    let source_keys: Vec<&str> = keys
        .iter()
        .map(|key| key.strip_suffix(SIDECAR_SUFFIX).unwrap_or(key))
        .collect();
    let sql = format!(
        "SELECT {key}, object_version FROM {table} WHERE tenant = $1 AND source_key = ANY($2)"
    );
    Ok(client
        .query(&sql, &[&tenant, &source_keys])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Up to [`RANGE_PAGE`] object keys of `tenant`'s rows under `prefix`, in
/// byte order, after `after` and up to `upto` (inclusive; none: no end),
/// whose row was last written before `before`.
pub async fn keys_between(
    client: &impl GenericClient,
    objects: Objects,
    (tenant, prefix): (&str, &str),
    (after, upto): (Option<&str>, Option<&str>),
    before: SystemTime,
) -> Result<Vec<String>> {
    let (key, table) = objects.sql();
    let sql = format!(
        "SELECT {key} FROM {table}
          WHERE tenant = $1 AND starts_with({key}, $2)
            AND ($3::text IS NULL OR {key} COLLATE \"C\" > $3)
            AND ($4::text IS NULL OR {key} COLLATE \"C\" <= $4)
            AND updated_at < $5
          ORDER BY {key} COLLATE \"C\" LIMIT $6"
    );
    Ok(client
        .query(
            &sql,
            &[&tenant, &prefix, &after, &upto, &before, &RANGE_PAGE],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The database's clock now: what a sync's start is compared with.
pub async fn now(client: &impl GenericClient) -> Result<SystemTime> {
    Ok(client.query_one("SELECT now()", &[]).await?.get(0))
}

/// What a sync found and did, in the terms of Bedrock's ingestion-job
/// statistics, with what it left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncCounts {
    pub documents_scanned: u64,
    pub metadata_documents_scanned: u64,
    pub new: u64,
    pub modified: u64,
    pub metadata_modified: u64,
    pub deleted: u64,
    pub failed: u64,
    pub unchanged: u64,
    /// Objects not read, by why (a key with control characters, say).
    pub skipped: BTreeMap<String, u64>,
}

/// A sync as its row holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncRow {
    pub id: Uuid,
    pub tenant: String,
    pub prefix: String,
    pub knowledge_base_id: Option<String>,
    pub data_source_id: Option<String>,
    /// Its name as Bedrock's ingestion job (ten capitals and digits).
    pub ingestion_job_id: Option<String>,
    pub description: Option<String>,
    pub dry_run: bool,
    /// `running`, `complete` or `failed`.
    pub state: String,
    /// The last key listed: the next page lists after it.
    #[serde(skip)]
    pub cursor: Option<String>,
    pub counts: SyncCounts,
    pub error: Option<String>,
    pub started_at: UtcTime,
    pub updated_at: UtcTime,
    pub finished_at: Option<UtcTime>,
    /// When it began, by the database's clock, exactly: no document
    /// written after it is removed.
    #[serde(skip)]
    pub started: SystemTime,
}

const SYNC_COLUMNS: &str = "id, tenant, prefix, knowledge_base_id, data_source_id, ingestion_job_id, \
                            description, dry_run, state, cursor, counts, error, started_at, \
                            updated_at, finished_at";

impl SyncRow {
    fn from_row(row: &tokio_postgres::Row) -> SyncRow {
        SyncRow {
            id: row.get("id"),
            tenant: row.get("tenant"),
            prefix: row.get("prefix"),
            knowledge_base_id: row.get("knowledge_base_id"),
            data_source_id: row.get("data_source_id"),
            ingestion_job_id: row.get("ingestion_job_id"),
            description: row.get("description"),
            dry_run: row.get("dry_run"),
            state: row.get("state"),
            cursor: row.get("cursor"),
            counts: serde_json::from_value(row.get("counts")).unwrap_or_default(),
            error: row.get("error"),
            started_at: row.get("started_at"),
            updated_at: row.get("updated_at"),
            finished_at: row.get("finished_at"),
            started: row.get("started_at"),
        }
    }
}

/// What asking for a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    New(Uuid),
    /// A sync of the same scope is running: this one.
    Running(Uuid),
    /// A sync of the same scope is running, but no slice of it has moved for
    /// [`STALLED_AFTER_SECS`] (its message was lost): asking again resumes it.
    Stalled(Uuid),
}

/// A running sync no slice has moved for this long has lost its message.
pub const STALLED_AFTER_SECS: f64 = 300.0;

impl Started {
    pub fn id(self) -> Uuid {
        match self {
            Started::New(id) | Started::Running(id) | Started::Stalled(id) => id,
        }
    }

    /// Whether its next slice must be asked for.
    pub fn needs_a_slice(self) -> bool {
        !matches!(self, Started::Running(_))
    }
}

/// A sync asked for as Bedrock's ingestion job of a knowledge base's data
/// source.
#[derive(Debug, Clone, Copy)]
pub struct IngestionJob<'a> {
    pub knowledge_base_id: &'a str,
    pub data_source_id: &'a str,
    pub description: Option<&'a str>,
}

/// Starts a sync of `(tenant, prefix)`, unless one of that scope (and
/// `dry_run`) runs; as an ingestion job when `job` says so (named by the
/// start of its id).
pub async fn create(
    client: &impl GenericClient,
    (tenant, prefix): (&str, &str),
    dry_run: bool,
    job: Option<IngestionJob<'_>>,
) -> Result<Started> {
    let id = Uuid::new_v4();
    let ingestion_job_id = job.map(|_| id.simple().to_string()[..10].to_uppercase());
    let created = client
        .query_opt(
            "INSERT INTO upload_pipeline.syncs (id, tenant, prefix, dry_run, knowledge_base_id,
                                                data_source_id, description, ingestion_job_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant, prefix, dry_run) WHERE state = 'running' DO NOTHING RETURNING id",
            &[
                &id,
                &tenant,
                &prefix,
                &dry_run,
                &job.map(|job| job.knowledge_base_id),
                &job.map(|job| job.data_source_id),
                &job.and_then(|job| job.description),
                &ingestion_job_id,
            ],
        )
        .await?;
    if let Some(row) = created {
        return Ok(Started::New(row.get(0)));
    }
    let running = client
        .query_opt(
            "SELECT id, updated_at < now() - make_interval(secs => $4) FROM upload_pipeline.syncs
              WHERE tenant = $1 AND prefix = $2 AND dry_run = $3 AND state = 'running'",
            &[&tenant, &prefix, &dry_run, &STALLED_AFTER_SECS],
        )
        .await?;
    match running {
        Some(row) if row.get(1) => Ok(Started::Stalled(row.get(0))),
        Some(row) => Ok(Started::Running(row.get(0))),
        // It ended between the two statements: ask again.
        None => Box::pin(create(client, (tenant, prefix), dry_run, job)).await,
    }
}

/// The running sync `id`, locked for one slice of work; none if it is not
/// running or another slice holds it.
pub async fn lock(tx: &impl GenericClient, id: Uuid) -> Result<Option<SyncRow>> {
    let sql = format!(
        "SELECT {SYNC_COLUMNS} FROM upload_pipeline.syncs
          WHERE id = $1 AND state = 'running' FOR UPDATE SKIP LOCKED"
    );
    Ok(tx
        .query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(SyncRow::from_row))
}

/// Records a slice: the last key listed and the counts so far; `done`
/// ends the sync.
pub async fn advance(
    tx: &impl GenericClient,
    id: Uuid,
    cursor: Option<&str>,
    counts: &SyncCounts,
    done: bool,
) -> Result<()> {
    tx.execute(
        "UPDATE upload_pipeline.syncs
            SET cursor = $2, counts = $3, updated_at = now(),
                state = CASE WHEN $4 THEN 'complete' ELSE state END,
                finished_at = CASE WHEN $4 THEN now() END
          WHERE id = $1",
        &[
            &id,
            &cursor,
            &serde_json::to_value(counts).unwrap_or_default(),
            &done,
        ],
    )
    .await?;
    Ok(())
}

/// Ends the sync `id` as failed, for `error`.
pub async fn fail(client: &impl GenericClient, id: Uuid, error: &str) -> Result<()> {
    client
        .execute(
            "UPDATE upload_pipeline.syncs
                SET state = 'failed', error = $2, updated_at = now(), finished_at = now()
              WHERE id = $1 AND state = 'running'",
            &[&id, &error],
        )
        .await?;
    Ok(())
}

/// `tenant`'s sync `id`; another tenant's is none.
pub async fn get(client: &impl GenericClient, tenant: &str, id: Uuid) -> Result<Option<SyncRow>> {
    let sql =
        format!("SELECT {SYNC_COLUMNS} FROM upload_pipeline.syncs WHERE id = $1 AND tenant = $2");
    Ok(client
        .query_opt(&sql, &[&id, &tenant])
        .await?
        .as_ref()
        .map(SyncRow::from_row))
}

/// `tenant`'s ingestion job `job_id` of knowledge base `knowledge_base_id`.
pub async fn ingestion_job(
    client: &impl GenericClient,
    (tenant, knowledge_base_id): (&str, &str),
    job_id: &str,
) -> Result<Option<SyncRow>> {
    let sql = format!(
        "SELECT {SYNC_COLUMNS} FROM upload_pipeline.syncs
          WHERE tenant = $1 AND knowledge_base_id = $2 AND ingestion_job_id = $3"
    );
    Ok(client
        .query_opt(&sql, &[&tenant, &knowledge_base_id, &job_id])
        .await?
        .as_ref()
        .map(SyncRow::from_row))
}

/// `tenant`'s ingestion jobs of knowledge base `knowledge_base_id`, in
/// `states` if given, by start (oldest first if `ascending`), `limit` of
/// them after the first `offset`.
pub async fn ingestion_jobs(
    client: &impl GenericClient,
    (tenant, knowledge_base_id): (&str, &str),
    states: Option<&[&str]>,
    ascending: bool,
    (offset, limit): (i64, i64),
) -> Result<Vec<SyncRow>> {
    let order = if ascending { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT {SYNC_COLUMNS} FROM upload_pipeline.syncs
          WHERE tenant = $1 AND knowledge_base_id = $2 AND ingestion_job_id IS NOT NULL
            AND ($3::text[] IS NULL OR state = ANY($3))
          ORDER BY started_at {order}, id OFFSET $4 LIMIT $5"
    );
    Ok(client
        .query(
            &sql,
            &[&tenant, &knowledge_base_id, &states, &offset, &limit],
        )
        .await?
        .iter()
        .map(SyncRow::from_row)
        .collect())
}

/// `tenant`'s latest `limit` syncs, newest first.
pub async fn recent(client: &impl GenericClient, tenant: &str, limit: i64) -> Result<Vec<SyncRow>> {
    let sql = format!(
        "SELECT {SYNC_COLUMNS} FROM upload_pipeline.syncs
          WHERE tenant = $1 ORDER BY started_at DESC LIMIT $2"
    );
    Ok(client
        .query(&sql, &[&tenant, &limit])
        .await?
        .iter()
        .map(SyncRow::from_row)
        .collect())
}
