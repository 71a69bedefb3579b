//! A sync's rows: the syncs themselves (`syncs`: scope, cursor, counts),
//! and (in `objects`) what a sync reads of the documents and sidecars it
//! compares a listing with.

mod inventory;
mod objects;

pub use inventory::{
    InventoryListing, InventoryRow, file_staged, inventory_page, stage_inventory, use_inventory,
};
pub use objects::{Objects, RANGE_PAGE, Read, keys_between, now, versions};

use deadpool_postgres::GenericClient;
use docpipe_core::db::UtcTime;
use docpipe_core::error::{Result, Wait};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

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
    /// The `failed`, by their job's error code (`too_large`), or
    /// `sidecar_refused`.
    pub failures: BTreeMap<String, u64>,
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
    /// Why it is not adding work just now, while it waits.
    pub waiting: Option<String>,
    /// Started by the scheduled reconcile.
    pub scheduled: bool,
    pub started_at: UtcTime,
    pub updated_at: UtcTime,
    pub finished_at: Option<UtcTime>,
    /// When it began, by the database's clock, exactly: no document
    /// written after it (or after its inventory was taken) is removed.
    #[serde(skip)]
    pub started: SystemTime,
    /// The S3 Inventory report it lists from, if not ListObjectsV2.
    #[serde(skip)]
    pub inventory: Option<InventoryListing>,
}

const SYNC_COLUMNS: &str = "id, tenant, prefix, knowledge_base_id, data_source_id, ingestion_job_id, \
                            description, dry_run, state, cursor, counts, error, waiting, \
                            scheduled, started_at, updated_at, finished_at, inventory, \
                            inventory_files, inventory_file_count, listed_at";

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
            waiting: row.get("waiting"),
            scheduled: row.get("scheduled"),
            started_at: row.get("started_at"),
            updated_at: row.get("updated_at"),
            finished_at: row.get("finished_at"),
            started: row.get("started_at"),
            inventory: InventoryListing::from_row(row),
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

/// Who asks for a sync.
#[derive(Debug, Clone, Copy)]
pub enum StartedBy<'a> {
    /// Someone, through the CLI or `POST /v1/syncs`.
    Request,
    /// A knowledge base's client, as its ingestion job.
    IngestionJob(IngestionJob<'a>),
    /// The scheduled reconcile.
    Schedule,
}

/// Starts a sync of `(tenant, prefix)`, unless one of that scope (and
/// `dry_run`) runs; as an ingestion job if `by` is one (named by the start
/// of its id).
pub async fn create(
    client: &impl GenericClient,
    (tenant, prefix): (&str, &str),
    dry_run: bool,
    by: StartedBy<'_>,
) -> Result<Started> {
    let id = Uuid::new_v4();
    let job = match by {
        StartedBy::IngestionJob(job) => Some(job),
        _ => None,
    };
    let ingestion_job_id = job.map(|_| id.simple().to_string()[..10].to_uppercase());
    let created = client
        .query_opt(
            "INSERT INTO upload_pipeline.syncs (id, tenant, prefix, dry_run, knowledge_base_id,
                                                data_source_id, description, ingestion_job_id,
                                                scheduled)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
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
                &matches!(by, StartedBy::Schedule),
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
        None => Box::pin(create(client, (tenant, prefix), dry_run, by)).await,
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
/// ends the sync (and drops its staged inventory).
pub async fn advance(
    tx: &impl GenericClient,
    id: Uuid,
    cursor: Option<&str>,
    counts: &SyncCounts,
    done: bool,
) -> Result<()> {
    tx.execute(
        "UPDATE upload_pipeline.syncs
            SET cursor = $2, counts = $3, updated_at = now(), waiting = NULL,
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
    if done {
        inventory::drop_staged(tx, id).await?;
    }
    Ok(())
}

/// Why `tenant`'s sync must wait before it adds work: a job of the
/// tenant's waiting for its spending to resume (budget, request cap), or
/// `in_flight` of its documents in the pipeline already (0: no bound).
pub async fn backlog(
    client: &impl GenericClient,
    tenant: &str,
    in_flight: u32,
) -> Result<Option<Wait>> {
    let spending = client
        .query_opt(
            "SELECT waiting_reason, waiting_until FROM upload_pipeline.upload_jobs
              WHERE tenant = $1 AND waiting_until > now()
              ORDER BY waiting_until DESC LIMIT 1",
            &[&tenant],
        )
        .await?;
    if let Some(row) = spending {
        let reason: Option<String> = row.get(0);
        return Ok(Some(Wait {
            reason: format!(
                "the tenant's spending is stopped ({})",
                reason.as_deref().unwrap_or("budget")
            ),
            until: row.get(1),
        }));
    }
    if in_flight == 0 {
        return Ok(None);
    }
    // Counted no further than the bound: one index range (state, tenant).
    let unfinished: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT 1 FROM upload_pipeline.upload_jobs
                WHERE state IN ('queued', 'parsed', 'chunked') AND tenant = $1 LIMIT $2) unfinished",
            &[&tenant, &i64::from(in_flight)],
        )
        .await?
        .get(0);
    Ok((unfinished >= i64::from(in_flight)).then(|| Wait {
        reason: format!(
            "{unfinished} of the tenant's documents are in the pipeline; \
             a sync adds more below {in_flight} (SYNC_TENANT_IN_FLIGHT)"
        ),
        until: SystemTime::now() + BACKLOG_RECHECK,
    }))
}

/// How soon a sync waiting on its tenant's documents in the pipeline looks again.
pub const BACKLOG_RECHECK: Duration = Duration::from_secs(5);

/// Records that the sync `id` waits, and why (it is not stalled).
pub async fn wait(client: &impl GenericClient, id: Uuid, why: &str) -> Result<()> {
    client
        .execute(
            "UPDATE upload_pipeline.syncs SET waiting = $2, updated_at = now() WHERE id = $1",
            &[&id, &why],
        )
        .await?;
    Ok(())
}

/// Ends the sync `id` as failed, for `error` (its staged inventory dropped).
pub async fn fail(client: &impl GenericClient, id: Uuid, error: &str) -> Result<()> {
    client
        .execute(
            "UPDATE upload_pipeline.syncs
                SET state = 'failed', error = $2, updated_at = now(), finished_at = now()
              WHERE id = $1 AND state = 'running'",
            &[&id, &error],
        )
        .await?;
    inventory::drop_staged(client, id).await
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
