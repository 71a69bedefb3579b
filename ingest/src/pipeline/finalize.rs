//! Finalize: when a job's last vector lands, swap the document's searchable
//! chunks for the job's, in the caller's transaction, each with its vector
//! from the embedding cache.

use crate::store::chunks;
use deadpool_postgres::GenericClient;
use docpipe_core::domain::state::JobState;
use docpipe_core::embedding::models::VectorSlot;
use docpipe_core::error::{Error, Result};
use docpipe_core::store::documents;
use docpipe_core::store::jobs::{self, Job};
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
    // Where the job's vectors are kept.
    slot: &VectorSlot,
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
    let chunks = chunks::go_live(tx, job, slot, scope).await?;
    // Every chunk must go live with its vector; fewer would be a lost vector.
    if Some(chunks) != job.chunk_count.map(|n| n as u64) {
        return Err(Error::Transient(format!(
            "job {} has {:?} chunks but {chunks} went live; not finalized",
            job.id, job.chunk_count
        )));
    }
    let replaced = documents::set_live_job(tx, job.document_id, job.id).await?;
    if let Some(older) = replaced.filter(|older| *older != job.id) {
        let detail = serde_json::json!({ "by_job": job.id });
        jobs::transition(tx, older, JobState::Complete, JobState::Superseded, detail).await?;
    }
    jobs::transition(
        tx,
        job.id,
        JobState::Chunked,
        JobState::Complete,
        serde_json::json!({ "chunks": chunks }),
    )
    .await?;
    // Older versions (this one is the latest) will not be chunked again.
    let stale_texts = jobs::release_older_texts(tx, job.document_id, job.id).await?;
    Ok(Finalized {
        state: JobState::Complete,
        stale_texts,
    })
}
