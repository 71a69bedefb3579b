//! Chunk: split the parsed text into token-sized chunks, buffer them, and fan
//! out one embed message per batch.

use super::{Pipeline, blocking, job_in_state};
use crate::error::{Error, Result};
use crate::ids;
use crate::jobs;
use crate::metrics::{self, Metric};
use crate::queue::{Stage, StageMessage};
use crate::state::JobState;
use uuid::Uuid;

/// Embed stages for batches `[first, first + count)` covering `total` chunks.
pub fn embed_stages(total: u32, batch_size: u32) -> impl Iterator<Item = Stage> {
    (0..total)
        .step_by(batch_size as usize)
        .map(move |first_chunk| Stage::Embed {
            first_chunk,
            chunk_count: batch_size.min(total - first_chunk),
        })
}

pub async fn chunk(pipeline: &Pipeline, message: &StageMessage) -> Result<Option<JobState>> {
    let job_id = message.job_id;
    let Some(job) = job_in_state(pipeline, job_id, JobState::Parsed, "chunk").await? else {
        return Ok(None);
    };
    let parsed_key = job
        .parsed_key
        .ok_or_else(|| Error::Transient(format!("parsed job {job_id} has no parsed_key")))?;
    let bytes = pipeline.blobs.get(&parsed_key, u64::MAX).await?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| Error::transient("parsed text", e))?;
    let chunker = pipeline.chunker.clone();
    let markdown = parsed_key.ends_with(".md");
    let chunks = blocking(move || chunker.chunk(&text, markdown)).await?;

    let hashes: Vec<[u8; 32]> = chunks
        .iter()
        .map(|c| ids::sha256(c.text.as_bytes()))
        .collect();
    let indexes: Vec<i32> = chunks.iter().map(|c| c.index as i32).collect();
    let chunk_ids: Vec<Uuid> = chunks
        .iter()
        .zip(&hashes)
        .map(|(c, h)| ids::chunk_id(job_id, c.index, h))
        .collect();
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    let hash_refs: Vec<&[u8]> = hashes.iter().map(|h| h.as_slice()).collect();
    let tokens: Vec<i32> = chunks.iter().map(|c| c.token_count as i32).collect();
    let starts: Vec<i32> = chunks.iter().map(|c| c.char_start as i32).collect();
    let ends: Vec<i32> = chunks.iter().map(|c| c.char_end as i32).collect();
    let total_tokens: i64 = tokens.iter().map(|&t| i64::from(t)).sum();
    let count = chunks.len() as u32;

    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    if !jobs::transition(
        &tx,
        job_id,
        JobState::Parsed,
        JobState::Chunked,
        serde_json::json!({ "chunks": count, "tokens": total_tokens }),
    )
    .await?
    {
        return Ok(None);
    }
    // One statement for all chunks; replays insert nothing new.
    tx.execute(
        "INSERT INTO upload_pipeline.document_chunk_buffer
             (job_id, chunk_index, chunk_id, text, text_sha256, token_count, char_start, char_end)
         SELECT $1, * FROM unnest($2::int4[], $3::uuid[], $4::text[], $5::bytea[], $6::int4[], $7::int4[], $8::int4[])
         ON CONFLICT DO NOTHING",
        &[&job_id, &indexes, &chunk_ids, &texts, &hash_refs, &tokens, &starts, &ends],
    )
    .await?;
    tx.execute(
        "UPDATE upload_pipeline.upload_jobs SET chunk_count = $2, token_count = $3, embedded_chunks = 0 WHERE id = $1",
        &[&job_id, &(count as i32), &total_tokens],
    )
    .await?;
    tx.commit().await?;
    metrics::add(Metric::ChunksCreated, count as f64);

    let messages = embed_stages(count, pipeline.embed_batch_size)
        .map(|stage| message.next(stage))
        .collect();
    pipeline.queue.send(messages).await?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_chunk_once() {
        let ranges = |total, size| {
            embed_stages(total, size)
                .map(|stage| match stage {
                    Stage::Embed {
                        first_chunk,
                        chunk_count,
                    } => (first_chunk, chunk_count),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ranges(0, 4), []);
        assert_eq!(ranges(4, 4), [(0, 4)]);
        assert_eq!(ranges(10, 4), [(0, 4), (4, 4), (8, 2)]);
        assert_eq!(ranges(3, 128), [(0, 3)]);
    }
}
