//! Chunk: split the parsed text into token-sized chunks, buffer them, and fan
//! out one embed message per batch.

use super::{Pipeline, blocking, job_in_state};
use crate::adapters::queue::{Stage, StageMessage};
use crate::chunking::Chunk;
use crate::domain::ids;
use crate::domain::state::JobState;
use crate::error::{Error, Result};
use crate::ops::metrics::{self, Metric};
use crate::store::jobs;
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
    // A process holds at most CHUNK_CONCURRENCY texts (and their chunks) at once.
    let chunking = pipeline.chunking()?;
    let _turn = chunking
        .slots
        .acquire()
        .await
        .map_err(|e| Error::transient("chunk slots", e))?;
    let bytes = pipeline.blobs.get(&parsed_key, u64::MAX).await?;
    // No copy when the buffer is the blob store's alone (it is for local files).
    let text =
        String::from_utf8(Vec::from(bytes)).map_err(|e| Error::transient("parsed text", e))?;
    let chunker = chunking.chunker.clone();
    let markdown = parsed_key.ends_with(".md");
    let (text, chunks) = blocking(move || {
        let chunks = chunker.chunk(&text, markdown);
        (text, chunks)
    })
    .await?;
    let total_tokens: i64 = chunks.iter().map(|c| i64::from(c.token_count)).sum();
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
    for batch in chunks.chunks(INSERT_BATCH) {
        buffer_chunks(&tx, job_id, &text, batch).await?;
    }
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

/// Chunk rows per statement: the parameters of one statement are held in
/// memory whole, so a very large document goes in several.
const INSERT_BATCH: usize = 2000;

/// One statement for a batch of chunks; replays insert nothing new.
async fn buffer_chunks(
    tx: &deadpool_postgres::Transaction<'_>,
    job_id: Uuid,
    document: &str,
    chunks: &[Chunk],
) -> Result<()> {
    let texts: Vec<&str> = chunks.iter().map(|c| c.text(document)).collect();
    let hashes: Vec<[u8; 32]> = texts.iter().map(|t| ids::sha256(t.as_bytes())).collect();
    let chunk_ids: Vec<Uuid> = chunks
        .iter()
        .zip(&hashes)
        .map(|(c, h)| ids::chunk_id(job_id, c.index, h))
        .collect();
    let hash_refs: Vec<&[u8]> = hashes.iter().map(|h| h.as_slice()).collect();
    let column =
        |value: fn(&Chunk) -> u32| -> Vec<i32> { chunks.iter().map(|c| value(c) as i32).collect() };
    let indexes = column(|c| c.index);
    let tokens = column(|c| c.token_count);
    let starts = column(|c| c.char_start);
    let ends = column(|c| c.char_end);
    tx.execute(
        "INSERT INTO upload_pipeline.document_chunk_buffer
             (job_id, chunk_index, chunk_id, text, text_sha256, token_count, char_start, char_end)
         SELECT $1, * FROM unnest($2::int4[], $3::uuid[], $4::text[], $5::bytea[], $6::int4[], $7::int4[], $8::int4[])
         ON CONFLICT DO NOTHING",
        &[&job_id, &indexes, &chunk_ids, &texts, &hash_refs, &tokens, &starts, &ends],
    )
    .await?;
    Ok(())
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
