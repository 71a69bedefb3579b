//! Parse: read the uploaded object, extract its text, store the text under
//! `parsed/`, and send the job to chunk.

use super::{Pipeline, blocking, job_in_state};
use crate::error::Result;
use crate::jobs;
use crate::parsing;
use crate::queue::{Stage, StageMessage};
use crate::state::JobState;
use bytes::Bytes;
use uuid::Uuid;

/// Where a job's parsed text is stored. Markdown keeps its extension so chunk
/// can follow its structure.
pub fn parsed_key(tenant: &str, job_id: Uuid, markdown: bool) -> String {
    format!(
        "parsed/{tenant}/{job_id}.{}",
        if markdown { "md" } else { "txt" }
    )
}

pub async fn parse(pipeline: &Pipeline, message: &StageMessage) -> Result<Option<JobState>> {
    let job_id = message.job_id;
    let Some(job) = job_in_state(pipeline, job_id, JobState::Queued, "parse").await? else {
        return Ok(None);
    };
    let bytes = pipeline
        .blobs
        .get(&job.source_key, pipeline.max_file_bytes)
        .await?;
    let key = job.source_key.clone();
    let document = blocking(move || parsing::parse(&key, &bytes)).await??;
    let parsed_key = parsed_key(&job.tenant, job_id, document.format.is_markdown());
    let chars = document.text.chars().count() as i64;
    let detail = serde_json::json!({
        "format": format!("{:?}", document.format).to_lowercase(),
        "chars": chars,
        "pages": document.pages,
    });
    pipeline
        .blobs
        .put(&parsed_key, Bytes::from(document.text))
        .await?;

    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    if !jobs::transition(&tx, job_id, JobState::Queued, JobState::Parsed, detail).await? {
        // The document was deleted while this ran: nothing tracks the text now.
        if jobs::find(&tx, job_id).await?.is_none() {
            pipeline.blobs.delete(&parsed_key).await?;
        }
        return Ok(None);
    }
    tx.execute(
        "UPDATE upload_pipeline.upload_jobs SET parsed_key = $2, parsed_chars = $3 WHERE id = $1",
        &[&job_id, &parsed_key, &chars],
    )
    .await?;
    tx.commit().await?;
    pipeline
        .queue
        .send(vec![message.next(Stage::Chunk)])
        .await?;
    Ok(None)
}
