//! Embed: vectors for one batch of a job's chunks, reusing cached vectors.
//! The batch that completes the job finalizes it, exactly once.

use super::{Embedding, Pipeline, finalize};
use crate::store::chunks::{self, Pending};
use docpipe_aws::queue::{Stage, StageMessage};
use docpipe_core::cost::{self, Allowance, reservation::SETTLE_PATIENCE};
use docpipe_core::db;
use docpipe_core::domain::state::JobState;
use docpipe_core::embedding::EmbedInput;
use docpipe_core::embedding::models::Serving;
use docpipe_core::error::{Error, Result};
use docpipe_core::ops::metrics::{self, Metric};
use docpipe_core::store::documents;
use docpipe_core::store::jobs;
use pgvector::Vector;
use std::collections::HashSet;

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
        cache_scope,
        models,
    } = pipeline.embedding()?;
    // The model the tenant's searches read (during a model change, the one
    // it switched to, if it did).
    let client = pipeline.db.get().await?;
    let Serving {
        embedder,
        cost: prices,
    } = models.serving(&client, &job.tenant).await?;
    let slot = models.slot(&client, embedder).await?;
    let model = slot.model.as_str();
    let scope = cache_scope.of(&job.tenant);
    let end = first_chunk.saturating_add(chunk_count).min(i32::MAX as u32) as i32;
    let pending = chunks::pending(&client, job_id, first_chunk as i32..end, &slot, scope).await?;
    // Not held across the paid call below.
    drop(client);

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
        let tokens = inputs.iter().map(|input| i64::from(input.tokens)).sum();
        let estimate =
            cost::embedding_estimate(prices, embedder, &job.tenant, Some(job_id), tokens);
        let payer = Allowance::Tenant(&job.tenant);
        let embedded = embedder.embed(&inputs);
        Some(
            cost::pay_embeddings(&pipeline.db, prices, embedder, payer, &[estimate], embedded)
                .await?,
        )
    };
    let indexes: Vec<i32> = pending.iter().map(|c| c.index).collect();
    let hits = pending.iter().filter(|c| c.cached).count();
    metrics::add(Metric::CacheHits, hits as f64);
    // Fresh vectors may come from a fallback model (hybrid mode); cached ones are the provider's.
    let fresh = embeddings.map(|e| {
        let vectors: Vec<Vector> = e.vectors.into_iter().map(Vector::from).collect();
        (e.model, vectors)
    });
    let fresh_model = fresh.as_ref().map_or(model, |(m, _)| m.as_str());
    if let Some((_, vectors)) = &fresh {
        // Paid for: cached at once, in a statement of its own that waits out
        // a database outage, so that a redelivery after any later failure
        // finds them and does not pay again. Finalize reads them there.
        let hashes: &[&[u8]] = &to_embed
            .iter()
            .map(|c| c.text_sha256.as_slice())
            .collect::<Vec<_>>();
        let scopes: &[&str] = &vec![scope; hashes.len()];
        let dims = slot.dims;
        db::outlast_outage(SETTLE_PATIENCE, || async move {
            let client = pipeline.db.get().await?;
            chunks::cache_vectors(&client, hashes, scopes, fresh_model, dims, vectors).await
        })
        .await?;
    }
    let made_by: Vec<&str> = pending
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
    let inserted = chunks::record_vectors(&tx, job_id, &indexes, &made_by).await?;
    let (embedded, total) = jobs::add_embedded(&tx, job_id, inserted).await?;
    let total = total
        .ok_or_else(|| Error::Transient(format!("chunked job {job_id} has no chunk_count")))?;
    let finalized = if embedded >= total {
        Some(finalize::finalize(&tx, &job, latest_job_id, &slot, scope).await?)
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
