//! A sync's listing staged from an S3 Inventory report: its rows under the
//! sync's prefix, loaded a file per slice, then read in byte order a page
//! at a time, as ListObjectsV2 would list them.

use deadpool_postgres::GenericClient;
use docpipe_aws::blob::{Listed, ListedPage};
use docpipe_core::error::{Error, Result};
use std::time::SystemTime;
use uuid::Uuid;

/// One object as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryRow {
    pub key: String,
    pub size: u64,
    /// As S3 gives an ETag (quoted), so it compares with a listing's.
    pub etag: String,
}

/// A sync's S3 Inventory report, when it lists from one.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryListing {
    /// The report's manifest key.
    pub manifest: String,
    /// Of its files, how many are staged, and how many there are.
    pub files_staged: i32,
    pub file_count: i32,
    /// When the report was taken.
    pub taken: SystemTime,
}

impl InventoryListing {
    /// The report a sync's row names, if any.
    pub(super) fn from_row(row: &tokio_postgres::Row) -> Option<InventoryListing> {
        Some(InventoryListing {
            manifest: row.get::<_, Option<String>>("inventory")?,
            files_staged: row.get("inventory_files"),
            file_count: row.get("inventory_file_count"),
            taken: row.get::<_, Option<SystemTime>>("listed_at")?,
        })
    }
}

/// Marks the new sync `id` as listing from the report `manifest` of
/// `files` files, taken at `listed_at`.
pub async fn use_inventory(
    client: &impl GenericClient,
    id: Uuid,
    (manifest, files): (&str, i32),
    listed_at: SystemTime,
) -> Result<()> {
    client
        .execute(
            "UPDATE upload_pipeline.syncs
                SET inventory = $2, inventory_file_count = $3, listed_at = $4
              WHERE id = $1",
            &[&id, &manifest, &files, &listed_at],
        )
        .await?;
    Ok(())
}

/// Stages `rows` of sync `id`'s listing (a row staged before, by a slice
/// killed mid-file, is kept).
pub async fn stage_inventory(
    client: &impl GenericClient,
    id: Uuid,
    rows: &[InventoryRow],
) -> Result<()> {
    let keys: Vec<&str> = rows.iter().map(|row| row.key.as_str()).collect();
    let sizes = rows
        .iter()
        .map(|row| i64::try_from(row.size))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Transient(format!("an inventory size out of range: {e}")))?;
    let etags: Vec<&str> = rows.iter().map(|row| row.etag.as_str()).collect();
    client
        .execute(
            "INSERT INTO upload_pipeline.sync_inventory (sync_id, key, size, etag)
             SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[])
             ON CONFLICT DO NOTHING",
            &[&id, &keys, &sizes, &etags],
        )
        .await?;
    Ok(())
}

/// Records that one more of sync `id`'s inventory files is staged.
pub async fn file_staged(client: &impl GenericClient, id: Uuid) -> Result<()> {
    client
        .execute(
            "UPDATE upload_pipeline.syncs
                SET inventory_files = inventory_files + 1, updated_at = now(), waiting = NULL
              WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}

/// Up to `max_keys` of sync `id`'s staged objects after `after`, in byte
/// order.
pub async fn inventory_page(
    client: &impl GenericClient,
    id: Uuid,
    after: Option<&str>,
    max_keys: usize,
) -> Result<ListedPage> {
    let rows = client
        .query(
            "SELECT key, size, etag FROM upload_pipeline.sync_inventory
              WHERE sync_id = $1 AND ($2::text IS NULL OR key > $2)
              ORDER BY key LIMIT $3",
            &[&id, &after, &(max_keys as i64 + 1)],
        )
        .await?;
    let truncated = rows.len() > max_keys;
    let objects = rows
        .iter()
        .take(max_keys)
        .map(|row| Listed {
            key: row.get(0),
            size: row.get::<_, i64>(1).max(0) as u64,
            version: row.get(2),
        })
        .collect();
    Ok(ListedPage { objects, truncated })
}

/// Drops sync `id`'s staged listing (it is done with it).
pub(super) async fn drop_staged(client: &impl GenericClient, id: Uuid) -> Result<()> {
    client
        .execute(
            "DELETE FROM upload_pipeline.sync_inventory WHERE sync_id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}
