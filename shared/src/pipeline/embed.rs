//! Embed: vectors for one batch of a job's chunks, reusing cached vectors.
//! The batch that completes the job finalizes it, exactly once.

use super::{Embedding, Pipeline, finalize};
use crate::adapters::queue::{Stage, StageMessage};
use crate::cost::{self, Spend};
use crate::domain::state::JobState;
use crate::embedding::EmbedInput;
use crate::error::{Error, Result};
use crate::ops::metrics::{self, Metric};
use crate::store::jobs;
use pgvector::Vector;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// A chunk of the batch that is not embedded yet.
struct Pending {
    index: i32,
    text: String,
    text_sha256: Vec<u8>,
    tokens: i32,
    /// Whether the cache holds its vector already.
    cached: bool,
}

/// Embeds the batch of chunks `message` names; the batch that completes
/// the job finalizes it.
pub async fn embed(pipeline: &Pipeline, message: &StageMessage) -> Result<Option<JobState>> {
    let Stage::Embed {
        first_chunk,
        chunk_count,
    } = message.stage
    else {
        return Err(Error::Transient(format!(
            "not an embed message: {:?}",
            message.stage
        )));
    };
    let job_id = message.job_id;
    let Some(job) = super::job_in_state(pipeline, job_id, JobState::Chunked, "embed").await? else {
        return Ok(None);
    };
    let Embedding {
        embedder,
        cache_scope,
    } = pipeline.embedding()?;
    let model = embedder.model();
    let dims = embedder.dims() as i32;
    let scope = cache_scope.of(&job.tenant);
    let end = first_chunk.saturating_add(chunk_count).min(i32::MAX as u32) as i32;
    let pending: Vec<Pending> = pipeline
        .db
        .get()
        .await?
        .query(
            "SELECT b.chunk_index, b.text, b.text_sha256, b.token_count,
                    EXISTS (SELECT 1 FROM upload_pipeline.embedding_cache c
                             WHERE c.text_sha256 = b.text_sha256 AND c.model = $4 AND c.dims = $5
                               AND c.scope = $6)
               FROM upload_pipeline.document_chunk_buffer b
              WHERE b.job_id = $1 AND b.chunk_index >= $2 AND b.chunk_index < $3
                AND NOT EXISTS (SELECT 1 FROM upload_pipeline.document_vector_buffer v
                                 WHERE v.job_id = b.job_id AND v.chunk_index = b.chunk_index)
              ORDER BY b.chunk_index",
            &[&job_id, &(first_chunk as i32), &end, &model, &dims, &scope],
        )
        .await?
        .into_iter()
        .map(|row| Pending {
            index: row.get(0),
            text: row.get(1),
            text_sha256: row.get(2),
            tokens: row.get(3),
            cached: row.get(4),
        })
        .collect();

    // Pay once per distinct uncached text, outside any transaction.
    let mut seen = HashSet::new();
    let to_embed: Vec<&Pending> = pending
        .iter()
        .filter(|c| !c.cached && seen.insert(c.text_sha256.as_slice()))
        .collect();
    let inputs: Vec<EmbedInput> = to_embed
        .iter()
        .map(|c| EmbedInput {
            text: &c.text,
            tokens: c.tokens as u32,
        })
        .collect();
    let embeddings = if inputs.is_empty() {
        None
    } else {
        if embedder.billable() {
            let db = pipeline.db.get().await?;
            cost::check_allowance(&db, &pipeline.cost, Some(&job.tenant)).await?;
        }
        Some(embedder.embed(&inputs).await?)
    };
    if let Some(embeddings) = &embeddings {
        // Recorded now, in its own statement: the provider has billed these
        // tokens even if this batch's vectors are never stored (a concurrent
        // duplicate stored them first, or this instance dies).
        let spend = cost::embedding_spend(&pipeline.cost, &job.tenant, Some(job_id), embeddings);
        cost::record(&pipeline.db.get().await?, &spend).await?;
    }
    let indexes: Vec<i32> = pending.iter().map(|c| c.index).collect();
    let hits = pending.iter().filter(|c| c.cached).count();
    metrics::add(Metric::CacheHits, hits as f64);
    // Fresh vectors may come from a fallback model (hybrid mode); cached ones are the provider's.
    let fresh = embeddings.map(|e| {
        let vectors: Vec<Vector> = e.vectors.into_iter().map(Vector::from).collect();
        (e.model, vectors)
    });
    let fresh_model = fresh.as_ref().map_or(model, |(m, _)| m.as_str());
    let models: Vec<&str> = pending
        .iter()
        .map(|c| if c.cached { model } else { fresh_model })
        .collect();

    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    // Lock order everywhere: document, then job. Batches of one job take turns here.
    let latest_job_id: Option<Uuid> = tx
        .query_one(
            "SELECT latest_job_id FROM upload_pipeline.documents WHERE id = $1 FOR UPDATE",
            &[&job.document_id],
        )
        .await?
        .get(0);
    match jobs::lock(&tx, job_id).await? {
        Some(locked) if locked.state == JobState::Chunked => {}
        _ => return Ok(None),
    }
    // New vectors are written once, to the cache; finalize reads them there.
    if let Some((_, vectors)) = &fresh {
        let hashes: Vec<&[u8]> = to_embed.iter().map(|c| c.text_sha256.as_slice()).collect();
        let scopes = vec![scope; hashes.len()];
        cache_vectors(&tx, &hashes, &scopes, fresh_model, dims, vectors).await?;
    }
    let inserted = tx
        .execute(
            "INSERT INTO upload_pipeline.document_vector_buffer (job_id, chunk_index, model)
             SELECT $1, i, m FROM unnest($2::int4[], $3::text[]) AS t(i, m)
             ON CONFLICT DO NOTHING",
            &[&job_id, &indexes, &models],
        )
        .await?;
    let progress = tx
        .query_one(
            "UPDATE upload_pipeline.upload_jobs
                SET embedded_chunks = embedded_chunks + $2, updated_at = now(),
                    sweep_count = CASE WHEN $2 > 0 THEN 0 ELSE sweep_count END
              WHERE id = $1
          RETURNING embedded_chunks, chunk_count",
            &[&job_id, &(inserted as i32)],
        )
        .await?;
    let (embedded, total): (i32, Option<i32>) = (progress.get(0), progress.get(1));
    let total = total
        .ok_or_else(|| Error::Transient(format!("chunked job {job_id} has no chunk_count")))?;
    let finalized = if embedded >= total {
        Some(finalize::finalize(&tx, &job, latest_job_id, dims, scope).await?)
    } else {
        None
    };
    tx.commit().await?;
    let Some(finalized) = finalized else {
        return Ok(None);
    };
    for key in &finalized.stale_texts {
        // Committed already: a text left behind costs storage, not correctness.
        if let Err(error) = pipeline.blobs.delete(key).await {
            tracing::warn!(key, %error, "could not delete an older version's parsed text");
        }
    }
    Ok(Some(finalized.state))
}

/// Replaces up to `limit` searchable vectors made by the fallback model (hybrid
/// mode, provider down) with the provider's, once the provider answers again.
/// Returns how many were replaced.
pub async fn replace_fallback_vectors(pipeline: &Pipeline, limit: u32) -> Result<u64> {
    let Embedding {
        embedder,
        cache_scope,
    } = pipeline.embedding()?;
    let Some(fallback) = embedder.fallback_model() else {
        return Ok(0);
    };
    let rows = pipeline
        .db
        .get()
        .await?
        .query(
            "SELECT chunk_id, tenant, job_id, text, token_count
               FROM upload_pipeline.document_chunks WHERE model = $1 LIMIT $2",
            &[&fallback, &i64::from(limit)],
        )
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let texts: Vec<(String, i32)> = rows.iter().map(|r| (r.get(3), r.get(4))).collect();
    let inputs: Vec<EmbedInput> = texts
        .iter()
        .map(|(text, tokens)| EmbedInput {
            text,
            tokens: *tokens as u32,
        })
        .collect();
    if embedder.billable() {
        // Several tenants' chunks at once: the deployment's limits.
        cost::check_allowance(&pipeline.db.get().await?, &pipeline.cost, None).await?;
    }
    let embeddings = embedder.embed(&inputs).await?;
    if embeddings.model != embedder.model() {
        return Ok(0); // The provider is still down.
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let vectors: Vec<Vector> = embeddings.vectors.into_iter().map(Vector::from).collect();
    let hashes: Vec<Vec<u8>> = texts
        .iter()
        .map(|(text, _)| crate::domain::ids::sha256(text.as_bytes()).to_vec())
        .collect();
    let hashes: Vec<&[u8]> = hashes.iter().map(Vec::as_slice).collect();
    let scopes: Vec<&str> = rows.iter().map(|row| cache_scope.of(row.get(1))).collect();
    let model = embedder.model();
    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    let replaced = tx
        .execute(
            "UPDATE upload_pipeline.document_chunks c SET embedding = t.e, model = $3
               FROM unnest($1::uuid[], $2::vector[]) AS t(id, e)
              WHERE c.chunk_id = t.id AND c.model = $4",
            &[&ids, &vectors, &model, &fallback],
        )
        .await?;
    let dims = embedder.dims() as i32;
    cache_vectors(&tx, &hashes, &scopes, model, dims, &vectors).await?;
    // The bill, shared among the jobs by their chunks' tokens.
    let mut per_job: HashMap<(String, Uuid), i64> = HashMap::new();
    for row in &rows {
        *per_job.entry((row.get(1), row.get(2))).or_default() += i64::from(row.get::<_, i32>(4));
    }
    let total_tokens: i64 = per_job.values().sum::<i64>().max(1);
    for (n, ((tenant, job_id), tokens)) in per_job.iter().enumerate() {
        let share = *tokens as f64 / total_tokens as f64;
        let billed = embeddings.billed_tokens as f64 * share;
        let spend = Spend {
            tenant,
            job_id: Some(*job_id),
            service: embeddings.service,
            model,
            units: billed.round() as i64,
            unit: "tokens",
            usd: billed * pipeline.cost.embedding_usd_per_million_tokens / 1e6,
            requests: if n == 0 { embeddings.requests } else { 0 },
        };
        cost::record(&tx, &spend).await?;
    }
    tx.commit().await?;
    tracing::info!(replaced, "fallback vectors replaced with the provider's");
    Ok(replaced)
}

/// Keeps each new vector in the cache under its text's hash, in its scope.
async fn cache_vectors(
    client: &impl deadpool_postgres::GenericClient,
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
