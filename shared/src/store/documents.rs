//! `documents`: one row per upload key, pointing at its latest job (the
//! newest content) and its live one (whose chunks search finds). Lock order
//! everywhere: the document, then its jobs.

use crate::error::Result;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

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

/// Locks the document: `None` if there is none, else its latest job.
pub async fn lock(tx: &impl GenericClient, id: Uuid) -> Result<Option<Option<Uuid>>> {
    Ok(tx
        .query_opt(
            "SELECT latest_job_id FROM upload_pipeline.documents WHERE id = $1 FOR UPDATE",
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
pub async fn set_live_job(tx: &impl GenericClient, id: Uuid, job_id: Uuid) -> Result<()> {
    tx.execute(
        "UPDATE upload_pipeline.documents SET live_job_id = $2, updated_at = now() WHERE id = $1",
        &[&id, &job_id],
    )
    .await?;
    Ok(())
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
