//! Finalize: when a job's last vector lands, swap the document's searchable
//! chunks for the job's, in the caller's transaction, each with its vector
//! from the embedding cache.

use crate::domain::state::JobState;
use crate::error::{Error, Result};
use crate::store::jobs::{self, Job};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

/// What finalizing did.
pub struct Finalized {
    pub state: JobState,
    /// The parsed text of the document's older versions, no longer needed
    /// once this one is live: to delete after the commit.
    pub stale_texts: Vec<String>,
}

/// Makes `job` the document's live version, or supersedes it if a newer
/// version arrived meanwhile. The caller holds the document and job locks.
pub async fn finalize(
    tx: &impl GenericClient,
    job: &Job,
    latest_job_id: Option<Uuid>,
    dims: i32,
    // The cache scope the job's vectors are kept in.
    scope: &str,
) -> Result<Finalized> {
    if latest_job_id != Some(job.id) {
        let detail = serde_json::json!({ "latest_job": latest_job_id });
        jobs::transition(tx, job.id, JobState::Chunked, JobState::Superseded, detail).await?;
        return Ok(Finalized {
            state: JobState::Superseded,
            stale_texts: Vec::new(),
        });
    }
    tx.execute(
        "DELETE FROM upload_pipeline.document_chunks WHERE document_id = $1",
        &[&job.document_id],
    )
    .await?;
    let chunks = tx
        .execute(
            "INSERT INTO upload_pipeline.document_chunks
                 (chunk_id, document_id, job_id, tenant, source_key, chunk_index, text,
                  token_count, char_start, char_end, model, embedding)
             SELECT b.chunk_id, $2, b.job_id, $3, $4, b.chunk_index, b.text,
                    b.token_count, b.char_start, b.char_end, v.model, c.embedding
               FROM upload_pipeline.document_chunk_buffer b
               JOIN upload_pipeline.document_vector_buffer v USING (job_id, chunk_index)
               -- One primary-key lookup per chunk (LIMIT keeps the planner from
               -- hashing the whole cache, which grows with every document).
               CROSS JOIN LATERAL (
                   SELECT embedding FROM upload_pipeline.embedding_cache
                    WHERE text_sha256 = b.text_sha256 AND model = v.model AND dims = $5
                      AND scope = $6
                    LIMIT 1) c
              WHERE b.job_id = $1",
            &[
                &job.id,
                &job.document_id,
                &job.tenant,
                &job.source_key,
                &dims,
                &scope,
            ],
        )
        .await?;
    // Every chunk must go live with its vector; fewer would be a lost vector.
    if Some(chunks) != job.chunk_count.map(|n| n as u64) {
        return Err(Error::Transient(format!(
            "job {} has {:?} chunks but {chunks} went live; not finalized",
            job.id, job.chunk_count
        )));
    }
    tx.execute(
        "UPDATE upload_pipeline.documents SET live_job_id = $2, updated_at = now() WHERE id = $1",
        &[&job.document_id, &job.id],
    )
    .await?;
    jobs::transition(
        tx,
        job.id,
        JobState::Chunked,
        JobState::Complete,
        serde_json::json!({ "chunks": chunks }),
    )
    .await?;
    // Older versions (this one is the latest) will not be chunked again.
    let stale_texts = tx
        .query(
            "UPDATE upload_pipeline.upload_jobs j SET parsed_key = NULL
               FROM (SELECT id, parsed_key FROM upload_pipeline.upload_jobs
                      WHERE document_id = $1 AND id <> $2 AND parsed_key IS NOT NULL) old
              WHERE j.id = old.id
          RETURNING old.parsed_key",
            &[&job.document_id, &job.id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    Ok(Finalized {
        state: JobState::Complete,
        stale_texts,
    })
}
