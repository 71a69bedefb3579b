//! The chunk tables: `document_chunk_buffer` (a job's chunks until it goes
//! live), `document_vector_buffer` (which of them have their vector, from
//! which model), `embedding_cache` (vectors by text hash, model and scope),
//! and `document_chunks` (what search finds).

use crate::chunking::{Chunk, EmbedHeader, embed_input};
use crate::parsing::layout::Provenance;
use deadpool_postgres::GenericClient;
use docpipe_core::domain::format::Format;
use docpipe_core::domain::ids;
use docpipe_core::embedding::models::VectorSlot;
use docpipe_core::error::Result;
use docpipe_core::store::jobs::Job;
use pgvector::Vector;
use std::ops::Range;
use uuid::Uuid;

/// Chunk rows per statement: the parameters of one statement are held in
/// memory whole, so a very large document goes in several.
const INSERT_BATCH: usize = 2000;

/// A document's chunks, each with where it came from and the header it is
/// embedded under, if any.
pub struct Located<'a> {
    pub document: &'a str,
    pub chunks: &'a [Chunk],
    pub provenance: &'a [Provenance],
    pub headers: &'a [Option<EmbedHeader>],
}

/// Buffers the job's chunks until the job goes live, a statement per
/// [`INSERT_BATCH`]; replays insert nothing new.
pub async fn buffer(tx: &impl GenericClient, job_id: Uuid, located: &Located<'_>) -> Result<()> {
    for start in (0..located.chunks.len()).step_by(INSERT_BATCH) {
        let end = (start + INSERT_BATCH).min(located.chunks.len());
        let batch = Located {
            document: located.document,
            chunks: &located.chunks[start..end],
            provenance: &located.provenance[start..end],
            headers: &located.headers[start..end],
        };
        buffer_batch(tx, job_id, &batch).await?;
    }
    Ok(())
}

async fn buffer_batch(tx: &impl GenericClient, job_id: Uuid, located: &Located<'_>) -> Result<()> {
    let Located {
        document,
        chunks,
        provenance,
        headers,
    } = *located;
    let texts: Vec<&str> = chunks.iter().map(|c| c.text(document)).collect();
    // The hash is of what is embedded: the cache keys vectors by it.
    let hashes: Vec<[u8; 32]> = texts
        .iter()
        .zip(headers)
        .map(|(text, header)| {
            let header = header.as_ref().map(|h| h.text.as_str());
            ids::sha256(embed_input(header, text).as_bytes())
        })
        .collect();
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
    let place = |value: fn(&Provenance) -> Option<u32>| -> Vec<Option<i32>> {
        provenance
            .iter()
            .map(|p| value(p).map(|n| n as i32))
            .collect()
    };
    let (page_starts, page_ends) = (place(|p| p.page_start), place(|p| p.page_end));
    let (row_starts, row_ends) = (place(|p| p.row_start), place(|p| p.row_end));
    let headings: Vec<serde_json::Value> = provenance
        .iter()
        .map(|p| serde_json::json!(p.headings))
        .collect();
    let header_texts: Vec<Option<&str>> = headers
        .iter()
        .map(|h| h.as_ref().map(|h| h.text.as_str()))
        .collect();
    let input_tokens: Vec<Option<i32>> = headers
        .iter()
        .map(|h| h.as_ref().map(|h| h.input_tokens as i32))
        .collect();
    tx.execute(
        "INSERT INTO upload_pipeline.document_chunk_buffer
             (job_id, chunk_index, chunk_id, text, text_sha256, token_count, char_start, char_end,
              page_start, page_end, headings, row_start, row_end, embed_header, embed_tokens)
         SELECT $1, * FROM unnest($2::int4[], $3::uuid[], $4::text[], $5::bytea[], $6::int4[],
                                  $7::int4[], $8::int4[], $9::int4[], $10::int4[], $11::jsonb[],
                                  $12::int4[], $13::int4[], $14::text[], $15::int4[])
         ON CONFLICT DO NOTHING",
        &[
            &job_id,
            &indexes,
            &chunk_ids,
            &texts,
            &hash_refs,
            &tokens,
            &starts,
            &ends,
            &page_starts,
            &page_ends,
            &headings,
            &row_starts,
            &row_ends,
            &header_texts,
            &input_tokens,
        ],
    )
    .await?;
    Ok(())
}

/// A chunk of the batch that is not embedded yet.
pub struct Pending {
    pub index: i32,
    /// What it is embedded as: its header, if any, and text.
    pub text: String,
    pub text_sha256: Vec<u8>,
    pub tokens: i32,
    /// Whether the cache holds its vector already.
    pub cached: bool,
}

/// The chunks `range` of the job not embedded yet, each with whether the
/// cache holds its vector of `slot`'s model and size, in `scope`.
pub async fn pending(
    client: &impl GenericClient,
    job_id: Uuid,
    range: Range<i32>,
    slot: &VectorSlot,
    scope: &str,
) -> Result<Vec<Pending>> {
    Ok(client
        .query(
            "SELECT b.chunk_index, b.text, b.text_sha256, coalesce(b.embed_tokens, b.token_count),
                    EXISTS (SELECT 1 FROM upload_pipeline.embedding_cache c
                             WHERE c.text_sha256 = b.text_sha256 AND c.model = $4 AND c.dims = $5
                               AND c.scope = $6),
                    b.embed_header
               FROM upload_pipeline.document_chunk_buffer b
              WHERE b.job_id = $1 AND b.chunk_index >= $2 AND b.chunk_index < $3
                AND NOT EXISTS (SELECT 1 FROM upload_pipeline.document_vector_buffer v
                                 WHERE v.job_id = b.job_id AND v.chunk_index = b.chunk_index)
              ORDER BY b.chunk_index",
            &[
                &job_id,
                &range.start,
                &range.end,
                &slot.model,
                &slot.dims,
                &scope,
            ],
        )
        .await?
        .into_iter()
        .map(|row| Pending {
            index: row.get(0),
            text: embedded_text(&row, 5, 1),
            text_sha256: row.get(2),
            tokens: row.get(3),
            cached: row.get(4),
        })
        .collect())
}

/// Marks the chunks `indexes` of the job embedded by `models` (one each);
/// returns how many were not marked before.
pub async fn record_vectors(
    tx: &impl GenericClient,
    job_id: Uuid,
    indexes: &[i32],
    models: &[&str],
) -> Result<u64> {
    Ok(tx
        .execute(
            "INSERT INTO upload_pipeline.document_vector_buffer (job_id, chunk_index, model)
             SELECT $1, i, m FROM unnest($2::int4[], $3::text[]) AS t(i, m)
             ON CONFLICT DO NOTHING",
            &[&job_id, &indexes, &models],
        )
        .await?)
}

/// Keeps each new vector (of `model`, `dims` values) in the cache under its
/// text's hash, in its scope.
pub async fn cache_vectors(
    client: &impl GenericClient,
    hashes: &[&[u8]],
    scopes: &[&str],
    model: &str,
    dims: i32,
    vectors: &[Vector],
) -> Result<()> {
    client
        .execute(
            "INSERT INTO upload_pipeline.embedding_cache (text_sha256, scope, model, dims, embedding)
             SELECT h, s, $3, $4, e FROM unnest($1::bytea[], $2::text[], $5::vector[]) AS t(h, s, e)
             ON CONFLICT DO NOTHING",
            &[&hashes, &scopes, &model, &dims, &vectors],
        )
        .await?;
    Ok(())
}

/// What a row's chunk is embedded as: the header in column `header` (if
/// any) and the text in column `text`.
fn embedded_text(row: &tokio_postgres::Row, header: usize, text: usize) -> String {
    let header: Option<&str> = row.get(header);
    embed_input(header, row.get(text)).into_owned()
}

/// A searchable chunk, as the sweeper re-embeds it.
pub struct LiveChunk {
    pub chunk_id: Uuid,
    pub tenant: String,
    pub job_id: Uuid,
    /// What it is embedded as: its header, if any, and text.
    pub text: String,
    pub text_sha256: Vec<u8>,
    pub tokens: i32,
}

impl LiveChunk {
    /// The columns [`LiveChunk::from_row`] reads, of `document_chunks` as `c`.
    pub(crate) const COLUMNS: &'static str = "c.chunk_id, c.tenant, c.job_id, c.text, \
         c.text_sha256, coalesce(c.embed_tokens, c.token_count), c.embed_header";

    /// From a row of [`LiveChunk::COLUMNS`].
    pub(crate) fn from_row(row: &tokio_postgres::Row) -> LiveChunk {
        LiveChunk {
            chunk_id: row.get(0),
            tenant: row.get(1),
            job_id: row.get(2),
            text: embedded_text(row, 6, 3),
            text_sha256: row.get(4),
            tokens: row.get(5),
        }
    }
}

/// Up to `limit` searchable chunks whose vectors `model` made.
pub async fn of_model(
    client: &impl GenericClient,
    model: &str,
    limit: u32,
) -> Result<Vec<LiveChunk>> {
    Ok(client
        .query(
            &format!(
                "SELECT {} FROM upload_pipeline.document_chunks c WHERE c.model = $1 LIMIT $2",
                LiveChunk::COLUMNS
            ),
            &[&model, &i64::from(limit)],
        )
        .await?
        .iter()
        .map(LiveChunk::from_row)
        .collect())
}

/// Gives the chunks `ids` (still made by `old_model`) `vectors` of `slot`'s
/// model, in its column (theirs: the models make vectors of one size);
/// returns how many changed.
pub async fn replace_vectors(
    tx: &impl GenericClient,
    ids: &[Uuid],
    vectors: &[Vector],
    slot: &VectorSlot,
    old_model: &str,
) -> Result<u64> {
    let VectorSlot { model, column, .. } = slot;
    Ok(tx
        .execute(
            &format!(
                "UPDATE upload_pipeline.document_chunks c SET {column} = t.e, model = $3
                   FROM unnest($1::uuid[], $2::vector[]) AS t(id, e)
                  WHERE c.chunk_id = t.id AND c.model = $4"
            ),
            &[&ids, &vectors, &model, &old_model],
        )
        .await?)
}

/// Makes the job's buffered chunks the document's searchable ones, each with
/// its vector from the cache (of `slot`'s size, in `scope`) in `slot`'s
/// column and the document's metadata; returns how many went live.
pub async fn go_live(
    tx: &impl GenericClient,
    job: &Job,
    slot: &VectorSlot,
    scope: &str,
) -> Result<u64> {
    let VectorSlot { dims, column, .. } = slot;
    let content_type = Format::from_key(&job.source_key)
        .ok()
        .map(Format::media_type);
    tx.execute(
        "DELETE FROM upload_pipeline.document_chunks WHERE document_id = $1",
        &[&job.document_id],
    )
    .await?;
    Ok(tx
        .execute(
            &format!(
                "INSERT INTO upload_pipeline.document_chunks
                 (chunk_id, document_id, job_id, tenant, source_key, chunk_index, text,
                  token_count, char_start, char_end, page_start, page_end, headings,
                  row_start, row_end, model, {column}, content_type, metadata,
                  text_sha256, embed_header, embed_tokens)
             SELECT b.chunk_id, $2, b.job_id, $3, $4, b.chunk_index, b.text,
                    b.token_count, b.char_start, b.char_end, b.page_start, b.page_end,
                    b.headings, b.row_start, b.row_end, v.model, c.embedding, $7, d.metadata,
                    b.text_sha256, b.embed_header, b.embed_tokens
               FROM upload_pipeline.document_chunk_buffer b
               JOIN upload_pipeline.documents d ON d.id = $2
               JOIN upload_pipeline.document_vector_buffer v USING (job_id, chunk_index)
               -- One primary-key lookup per chunk (LIMIT keeps the planner from
               -- hashing the whole cache, which grows with every document).
               CROSS JOIN LATERAL (
                   SELECT embedding FROM upload_pipeline.embedding_cache
                    WHERE text_sha256 = b.text_sha256 AND model = v.model AND dims = $5
                      AND scope = $6
                    LIMIT 1) c
              WHERE b.job_id = $1"
            ),
            &[
                &job.id,
                &job.document_id,
                &job.tenant,
                &job.source_key,
                &dims,
                &scope,
                &content_type,
            ],
        )
        .await?)
}
