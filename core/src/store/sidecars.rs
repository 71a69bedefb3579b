//! `metadata_sidecars`: the attributes of each document's sidecar, by the
//! document's key, whether or not the document has arrived.

use crate::domain::metadata::Sidecar;
use crate::error::Result;
use deadpool_postgres::GenericClient;
use std::time::Duration;

/// The sidecar of the document at `key` gives `sidecar`'s attributes.
pub async fn put(
    tx: &impl GenericClient,
    key: &str,
    tenant: &str,
    sidecar: &Sidecar,
) -> Result<()> {
    tx.execute(
        "INSERT INTO upload_pipeline.metadata_sidecars (source_key, tenant, attributes, for_embedding)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (source_key) DO UPDATE
            SET attributes = excluded.attributes, for_embedding = excluded.for_embedding,
                error = NULL, updated_at = now()",
        &[
            &key,
            &tenant,
            &serde_json::Value::Object(sidecar.attributes.clone()),
            &sidecar.for_embedding,
        ],
    )
    .await?;
    Ok(())
}

/// The version (S3 ETag) of the sidecar of the document at `key` as a sync
/// last read it.
pub async fn set_version(client: &impl GenericClient, key: &str, version: &str) -> Result<()> {
    client
        .execute(
            "UPDATE upload_pipeline.metadata_sidecars SET object_version = $2 WHERE source_key = $1",
            &[&key, &version],
        )
        .await?;
    Ok(())
}

/// The text the chunks of the document at `key` are embedded with, from its
/// sidecar's attributes marked `includeForEmbedding`, if any.
pub async fn for_embedding(client: &impl GenericClient, key: &str) -> Result<Option<String>> {
    Ok(client
        .query_opt(
            "SELECT for_embedding FROM upload_pipeline.metadata_sidecars WHERE source_key = $1",
            &[&key],
        )
        .await?
        .and_then(|row| row.get(0)))
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

/// The sidecar at `sidecar_key` was written for an upload of `document_key`
/// that may never come: it goes if none has arrived `expires_in` from now.
pub async fn expect_upload(
    client: &impl GenericClient,
    sidecar_key: &str,
    document_key: &str,
    tenant: &str,
    expires_in: Duration,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO upload_pipeline.pending_sidecars (sidecar_key, document_key, tenant, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))
             ON CONFLICT (sidecar_key) DO UPDATE SET expires_at = excluded.expires_at",
            &[&sidecar_key, &document_key, &tenant, &expires_in.as_secs_f64()],
        )
        .await?;
    Ok(())
}

/// Up to `limit` expected uploads past their expiry by `grace`, taken off
/// the list (in the caller's transaction, other sweepers' skipped): the
/// sidecar keys of those whose document never came.
pub async fn take_unclaimed(
    tx: &impl GenericClient,
    grace: Duration,
    limit: i64,
) -> Result<Vec<String>> {
    Ok(tx
        .query(
            "DELETE FROM upload_pipeline.pending_sidecars p
              WHERE p.sidecar_key IN (
                    SELECT sidecar_key FROM upload_pipeline.pending_sidecars
                     WHERE expires_at < now() - make_interval(secs => $1)
                     ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
          RETURNING p.sidecar_key,
                    EXISTS (SELECT 1 FROM upload_pipeline.documents d
                             WHERE d.tenant = p.tenant AND d.source_key = p.document_key)",
            &[&grace.as_secs_f64(), &limit],
        )
        .await?
        .iter()
        .filter(|row| !row.get::<_, bool>(1))
        .map(|row| row.get(0))
        .collect())
}
