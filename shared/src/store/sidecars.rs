//! `metadata_sidecars`: the attributes of each document's sidecar, by the
//! document's key, whether or not the document has arrived.

use crate::domain::metadata::Attributes;
use crate::error::Result;
use deadpool_postgres::GenericClient;

/// The sidecar of the document at `key` gives `attributes`.
pub async fn put(
    tx: &impl GenericClient,
    key: &str,
    tenant: &str,
    attributes: &Attributes,
) -> Result<()> {
    tx.execute(
        "INSERT INTO upload_pipeline.metadata_sidecars (source_key, tenant, attributes)
         VALUES ($1, $2, $3)
         ON CONFLICT (source_key) DO UPDATE
            SET attributes = excluded.attributes, error = NULL, updated_at = now()",
        &[
            &key,
            &tenant,
            &serde_json::Value::Object(attributes.clone()),
        ],
    )
    .await?;
    Ok(())
}

/// The sidecar of the document at `key` cannot be applied, for `error`: its
/// last good attributes stay.
pub async fn refuse(tx: &impl GenericClient, key: &str, tenant: &str, error: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO upload_pipeline.metadata_sidecars (source_key, tenant, error)
         VALUES ($1, $2, $3)
         ON CONFLICT (source_key) DO UPDATE SET error = excluded.error, updated_at = now()",
        &[&key, &tenant, &error],
    )
    .await?;
    Ok(())
}

/// The document at `key` has no sidecar any more.
pub async fn delete(tx: &impl GenericClient, key: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM upload_pipeline.metadata_sidecars WHERE source_key = $1",
        &[&key],
    )
    .await?;
    Ok(())
}
