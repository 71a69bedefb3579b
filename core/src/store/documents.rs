//! `documents`: one row per upload key, pointing at its latest job (the
//! newest content) and its live one (whose chunks search finds). Lock order
//! everywhere: the document, then its jobs.

use crate::domain::metadata::Attributes;
use crate::error::Result;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

/// Makes the transaction's changes to the document at `key` and to its
/// sidecar take turns with any other transaction's, until it ends. A row
/// lock cannot: the document's row may not exist yet, or not be committed.
pub async fn lock_key(tx: &impl GenericClient, key: &str) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&key],
    )
    .await?;
    Ok(())
}

/// Creates the document at `key`, or touches it, and locks its row (ingests
/// of one key take turns); returns its latest job.
pub async fn upsert(
    tx: &impl GenericClient,
    id: Uuid,
    tenant: &str,
    key: &str,
) -> Result<Option<Uuid>> {
    Ok(tx
        .query_one(
            "INSERT INTO upload_pipeline.documents (id, tenant, source_key) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET updated_at = now()
             RETURNING latest_job_id",
            &[&id, &tenant, &key],
        )
        .await?
        .get(0))
}

/// Locks the document: `None` if there is none, else its latest job. The
/// lock (`FOR NO KEY UPDATE`: the id never changes) leaves foreign-key
/// checks through it alone: a stage's second update of its job row in one
/// transaction checks the job's document (`KEY SHARE`), and with a `FOR
/// UPDATE` here that stage and a reprocess holding this lock while it waits
/// for the job would deadlock.
pub async fn lock(tx: &impl GenericClient, id: Uuid) -> Result<Option<Option<Uuid>>> {
    Ok(tx
        .query_opt(
            "SELECT latest_job_id FROM upload_pipeline.documents WHERE id = $1 FOR NO KEY UPDATE",
            &[&id],
        )
        .await?
        .map(|row| row.get(0)))
}

pub async fn set_latest_job(tx: &impl GenericClient, id: Uuid, job_id: Uuid) -> Result<()> {
    tx.execute(
        "UPDATE upload_pipeline.documents SET latest_job_id = $2 WHERE id = $1",
        &[&id, &job_id],
    )
    .await?;
    Ok(())
}

/// The job whose chunks search finds from now on.
/// Makes `job_id` the document's live version; returns the one it replaces.
pub async fn set_live_job(tx: &impl GenericClient, id: Uuid, job_id: Uuid) -> Result<Option<Uuid>> {
    let row = tx
        .query_opt(
            "UPDATE upload_pipeline.documents d SET live_job_id = $2, updated_at = now()
               FROM (SELECT live_job_id FROM upload_pipeline.documents WHERE id = $1) old
              WHERE d.id = $1
          RETURNING old.live_job_id",
            &[&id, &job_id],
        )
        .await?;
    Ok(row.and_then(|row| row.get(0)))
}

/// Deletes the document; its jobs, events, chunks and vectors cascade.
pub async fn delete(tx: &impl GenericClient, id: Uuid) -> Result<()> {
    tx.execute(
        "DELETE FROM upload_pipeline.documents WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// Records the attributes of the document's object (its S3 user metadata).
pub async fn set_object_metadata(
    tx: &impl GenericClient,
    id: Uuid,
    attributes: &Attributes,
) -> Result<()> {
    tx.execute(
        "UPDATE upload_pipeline.documents SET object_metadata = $2 WHERE id = $1",
        &[&id, &serde_json::Value::Object(attributes.clone())],
    )
    .await?;
    Ok(())
}

/// The version (S3 ETag) of the document's object as ingest last read it.
pub async fn set_object_version(tx: &impl GenericClient, id: Uuid, version: &str) -> Result<()> {
    tx.execute(
        "UPDATE upload_pipeline.documents SET object_version = $2 WHERE id = $1",
        &[&id, &version],
    )
    .await?;
    Ok(())
}

/// Merges the document's metadata again (its object's attributes, then its
/// sidecar's over them) and gives it to its searchable chunks, which keep
/// their vectors: no text changed. Returns whether the metadata changed.
/// The caller holds [`lock_key`] for the document's key.
pub async fn refresh_metadata(tx: &impl GenericClient, id: Uuid) -> Result<bool> {
    let changed = tx
        .execute(
            "UPDATE upload_pipeline.documents d
                SET metadata = merged.metadata, updated_at = now()
               FROM (SELECT d.id, d.object_metadata || coalesce(s.attributes, '{}') AS metadata
                       FROM upload_pipeline.documents d
                       LEFT JOIN upload_pipeline.metadata_sidecars s USING (source_key)
                      WHERE d.id = $1) merged
              WHERE d.id = merged.id AND d.metadata IS DISTINCT FROM merged.metadata",
            &[&id],
        )
        .await?
        == 1;
    if changed {
        tx.execute(
            "UPDATE upload_pipeline.document_chunks c SET metadata = d.metadata
               FROM upload_pipeline.documents d
              WHERE d.id = $1 AND c.document_id = d.id",
            &[&id],
        )
        .await?;
    }
    Ok(changed)
}
