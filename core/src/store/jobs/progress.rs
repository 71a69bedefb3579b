//! What each stage records on its job besides the state: the parsed text
//! and its length, the chunks and how many are embedded, the older texts to
//! delete, and the LlamaParse request a parse waits for.

use super::record;
use crate::domain::state::JobState;
use crate::error::Result;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

/// Records where the job's parsed text is, and its length in characters.
pub async fn set_parsed(
    tx: &impl GenericClient,
    job_id: Uuid,
    parsed_key: &str,
    chars: i64,
) -> Result<()> {
    tx.execute(
        "UPDATE upload_pipeline.upload_jobs SET parsed_key = $2, parsed_chars = $3 WHERE id = $1",
        &[&job_id, &parsed_key, &chars],
    )
    .await?;
    Ok(())
}

/// Records the job's chunks and tokens; none of them is embedded yet.
pub async fn set_chunked(
    tx: &impl GenericClient,
    job_id: Uuid,
    chunks: u32,
    tokens: i64,
) -> Result<()> {
    tx.execute(
        "UPDATE upload_pipeline.upload_jobs SET chunk_count = $2, token_count = $3, embedded_chunks = 0 WHERE id = $1",
        &[&job_id, &(chunks as i32), &tokens],
    )
    .await?;
    Ok(())
}

/// Counts `newly` embedded chunks (progress: the sweeper's count starts
/// again); returns the chunks embedded so far and the job's total.
pub async fn add_embedded(
    tx: &impl GenericClient,
    job_id: Uuid,
    newly: u64,
) -> Result<(i32, Option<i32>)> {
    let row = tx
        .query_one(
            "UPDATE upload_pipeline.upload_jobs
                SET embedded_chunks = embedded_chunks + $2, updated_at = now(),
                    sweep_count = CASE WHEN $2 > 0 THEN 0 ELSE sweep_count END
              WHERE id = $1
          RETURNING embedded_chunks, chunk_count",
            &[&job_id, &(newly as i32)],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Forgets the parsed text of the document's other jobs (older versions,
/// never chunked again) and returns their keys, to delete after the commit.
pub async fn release_older_texts(
    tx: &impl GenericClient,
    document_id: Uuid,
    live_job: Uuid,
) -> Result<Vec<String>> {
    Ok(tx
        .query(
            "UPDATE upload_pipeline.upload_jobs j SET parsed_key = NULL
               FROM (SELECT id, parsed_key FROM upload_pipeline.upload_jobs
                      WHERE document_id = $1 AND id <> $2 AND parsed_key IS NOT NULL) old
              WHERE j.id = old.id
          RETURNING old.parsed_key",
            &[&document_id, &live_job],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The parsed text of each of the document's jobs (`None` before parse).
pub async fn parsed_keys(
    tx: &impl GenericClient,
    document_id: Uuid,
) -> Result<Vec<Option<String>>> {
    Ok(tx
        .query(
            "SELECT parsed_key FROM upload_pipeline.upload_jobs WHERE document_id = $1",
            &[&document_id],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Claims the right to submit a queued job to LlamaParse. A claim without a
/// request id that is older than ten minutes was abandoned and may be taken.
pub async fn claim_parse_request(client: &impl GenericClient, job_id: Uuid) -> Result<bool> {
    Ok(client
        .execute(
            "UPDATE upload_pipeline.upload_jobs
                SET parse_requested_at = now(), updated_at = now()
              WHERE id = $1 AND state = 'queued' AND parse_request_id IS NULL
                AND (parse_requested_at IS NULL OR parse_requested_at < now() - interval '10 minutes')",
            &[&job_id],
        )
        .await?
        == 1)
}

/// Gives a claim back after a failed upload, so a retry may claim again.
pub async fn release_parse_request(client: &impl GenericClient, job_id: Uuid) -> Result<()> {
    client
        .execute(
            "UPDATE upload_pipeline.upload_jobs SET parse_requested_at = NULL
              WHERE id = $1 AND parse_request_id IS NULL",
            &[&job_id],
        )
        .await?;
    Ok(())
}

/// Records LlamaParse's job id for the claimed job, with an audit row.
pub async fn set_parse_request(
    client: &impl GenericClient,
    job_id: Uuid,
    request_id: &str,
) -> Result<()> {
    client
        .execute(
            "UPDATE upload_pipeline.upload_jobs SET parse_request_id = $2 WHERE id = $1",
            &[&job_id, &request_id],
        )
        .await?;
    let detail = serde_json::json!({ "llamaparse_job": request_id });
    record(
        client,
        job_id,
        Some(JobState::Queued),
        JobState::Queued,
        "parse_submitted",
        &detail,
    )
    .await
}
