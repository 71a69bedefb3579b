//! What a sync reads of the documents and sidecars it compares a listing
//! with: their objects' versions, and the keys in a stretch of the
//! listing's order, a bounded page at a time.

use deadpool_postgres::GenericClient;
use docpipe_core::domain::keys::SIDECAR_SUFFIX;
use docpipe_core::error::Result;
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

/// What a row says of its object: the version it was last read at (`None`
/// when not known), and, for a document, its latest job if that is still
/// `queued`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    pub version: Option<String>,
    pub queued_job: Option<Uuid>,
}

/// What the rows of `keys` (object keys) say of their objects; a key
/// without a row is absent.
pub async fn versions(
    client: &impl GenericClient,
    objects: Objects,
    tenant: &str,
    keys: &[&str],
) -> Result<HashMap<String, Read>> {
    let (key, table) = objects.sql();
    // By `source_key` (indexed): a sidecar's row is its document's key.
    let source_keys: Vec<&str> = keys
        .iter()
        .map(|key| key.strip_suffix(SIDECAR_SUFFIX).unwrap_or(key))
        .collect();
    let queued_job = match objects {
        Objects::Documents => {
            "(SELECT j.id FROM upload_pipeline.upload_jobs j
               WHERE j.id = o.latest_job_id AND j.state = 'queued')"
        }
        Objects::Sidecars => "NULL::uuid",
    };
    let sql = format!(
        "SELECT {key}, o.object_version, {queued_job} FROM {table} o
          WHERE o.tenant = $1 AND o.source_key = ANY($2)"
    );
    Ok(client
        .query(&sql, &[&tenant, &source_keys])
        .await?
        .iter()
        .map(|row| {
            let read = Read {
                version: row.get(1),
                queued_job: row.get(2),
            };
            (row.get(0), read)
        })
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
