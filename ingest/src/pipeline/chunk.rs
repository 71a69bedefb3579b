//! Chunk: split the parsed text into token-sized chunks, buffer them, and fan
//! out one embed message per batch.

use super::{Pipeline, blocking, job_in_state};
use crate::parsing::StoredText;
use crate::store::chunks;
use docpipe_aws::queue::{Stage, StageMessage};
use docpipe_core::domain::keys;
use docpipe_core::domain::state::JobState;
use docpipe_core::error::{Error, Result};
use docpipe_core::ops::metrics::{self, Metric};
use docpipe_core::store::{jobs, sidecars};
use std::sync::Arc;

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
    let stored = StoredText::from_bytes(&parsed_key, bytes)
        .map_err(|e| Error::Transient(format!("parsed text {parsed_key}: {e}")))?;
    // Chunks embedded with the attributes the sidecar marks for it leave
    // room for them.
    let attributes = sidecars::for_embedding(&pipeline.db.get().await?, &job.source_key).await?;
    let chunker = match attributes.map(|text| (chunking.chunker.with_attributes(&text), text)) {
        Some((Some(with_attributes), _)) => Arc::new(with_attributes),
        Some((None, text)) => {
            tracing::warn!(%job_id, chars = text.len(), "the attributes for embedding take over half a chunk: embedded without them");
            chunking.chunker.clone()
        }
        None => chunking.chunker.clone(),
    };
    let file_name = keys::file_name(&job.source_key).to_owned();
    let (text, chunks, provenance, headers) = blocking(move || {
        let StoredText {
            markdown,
            layout,
            text,
        } = stored;
        let chunks = chunker.chunk(&text, markdown, &layout);
        let provenance = layout.locate(chunks.iter().map(|c| c.bytes.clone()));
        let headers: Vec<_> = chunks
            .iter()
            .zip(&provenance)
            .map(|(chunk, place)| chunker.header(&file_name, &place.headings, chunk.text(&text)))
            .collect();
        (text, chunks, provenance, headers)
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
    let located = chunks::Located {
        document: &text,
        chunks: &chunks,
        provenance: &provenance,
        headers: &headers,
    };
    chunks::buffer(&tx, job_id, &located).await?;
    jobs::set_chunked(&tx, job_id, count, total_tokens).await?;
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
