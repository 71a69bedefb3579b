//! Embed: vectors for one batch of a job's chunks, reusing cached vectors.
//! The batch that completes the job finalizes it, exactly once.

use super::{Embedding, Pipeline, finalize};
use crate::adapters::queue::{Stage, StageMessage};
use crate::cost;
use crate::domain::state::JobState;
use crate::embedding::EmbedInput;
use crate::error::{Error, Result};
use crate::ops::metrics::{self, Metric};
use crate::store::chunks::{self, Pending};
use crate::store::documents;
use crate::store::jobs;
use pgvector::Vector;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

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
        ..
    } = pipeline.embedding()?;
    let model = embedder.model();
    let dims = embedder.dims() as i32;
    let scope = cache_scope.of(&job.tenant);
    let end = first_chunk.saturating_add(chunk_count).min(i32::MAX as u32) as i32;
    let pending = chunks::pending(
        &pipeline.db.get().await?,
        job_id,
        first_chunk as i32..end,
        (model, dims, scope),
    )
    .await?;

    // Pay once per distinct uncached text, outside any transaction.
    let mut seen = HashSet::new();
    let to_embed: Vec<&Pending> = pending
        .iter()
        .filter(|c| !c.cached && seen.insert(c.text_sha256.as_slice()))
        .collect();
    let inputs: Vec<EmbedInput> = to_embed
        .iter()
        .map(|c| EmbedInput::stored(&c.text, c.tokens))
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
    let latest_job_id = documents::lock(&tx, job.document_id)
        .await?
        .ok_or_else(|| Error::Transient(format!("document {} vanished", job.document_id)))?;
    match jobs::lock(&tx, job_id).await? {
        Some(locked) if locked.state == JobState::Chunked => {}
        _ => return Ok(None),
    }
    // New vectors are written once, to the cache; finalize reads them there.
    if let Some((_, vectors)) = &fresh {
        let hashes: Vec<&[u8]> = to_embed.iter().map(|c| c.text_sha256.as_slice()).collect();
        let scopes = vec![scope; hashes.len()];
        chunks::cache_vectors(&tx, &hashes, &scopes, fresh_model, dims, vectors).await?;
    }
    let inserted = chunks::record_vectors(&tx, job_id, &indexes, &models).await?;
    let (embedded, total) = jobs::add_embedded(&tx, job_id, inserted).await?;
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
        ..
    } = pipeline.embedding()?;
    let Some(fallback) = embedder.fallback_model() else {
        return Ok(0);
    };
    let rows = chunks::of_model(&pipeline.db.get().await?, fallback, limit).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let inputs: Vec<EmbedInput> = rows
        .iter()
        .map(|row| EmbedInput::stored(&row.text, row.tokens))
        .collect();
    if embedder.billable() {
        // Several tenants' chunks at once: the deployment's limits.
        cost::check_allowance(&pipeline.db.get().await?, &pipeline.cost, None).await?;
    }
    let mut embeddings = embedder.embed(&inputs).await?;
    if embeddings.model != embedder.model() {
        return Ok(0); // The provider is still down.
    }
    let ids: Vec<Uuid> = rows.iter().map(|row| row.chunk_id).collect();
    let vectors: Vec<Vector> = std::mem::take(&mut embeddings.vectors)
        .into_iter()
        .map(Vector::from)
        .collect();
    let hashes: Vec<[u8; 32]> = rows
        .iter()
        .map(|row| crate::domain::ids::sha256(row.text.as_bytes()))
        .collect();
    let hashes: Vec<&[u8]> = hashes.iter().map(|h| h.as_slice()).collect();
    let scopes: Vec<&str> = rows.iter().map(|row| cache_scope.of(&row.tenant)).collect();
    let model = embedder.model();
    let mut client = pipeline.db.get().await?;
    let tx = client.transaction().await?;
    let replaced = chunks::replace_vectors(&tx, &ids, &vectors, model, fallback).await?;
    let dims = embedder.dims() as i32;
    chunks::cache_vectors(&tx, &hashes, &scopes, model, dims, &vectors).await?;
    // The bill, shared among the jobs by their chunks' tokens.
    let mut per_job: HashMap<(&str, Uuid), i64> = HashMap::new();
    for row in &rows {
        *per_job.entry((&row.tenant, row.job_id)).or_default() += i64::from(row.tokens);
    }
    let total_tokens: i64 = per_job.values().sum::<i64>().max(1);
    for (n, ((tenant, job_id), tokens)) in per_job.iter().enumerate() {
        let spend = cost::embedding_spend(&pipeline.cost, tenant, Some(*job_id), &embeddings);
        let share = *tokens as f64 / total_tokens as f64;
        // The requests once, with the first share.
        cost::record(&tx, &spend.share(share, n == 0)).await?;
    }
    tx.commit().await?;
    tracing::info!(replaced, "fallback vectors replaced with the provider's");
    Ok(replaced)
}
