//! The sweeper's re-embedding of searchable chunks: fallback vectors
//! replaced with the provider's once it answers again, and model changes
//! moved on, tenant by tenant.
//!
//! A model change (`NEXT_EMBEDDING_*`): each sweep embeds a batch of the
//! chunks whose text has no next-model vector in the cache yet, then
//! switches every tenant none of whose chunks lacks one: its chunks take the
//! next model's vectors and its searches the next model, in one transaction.
//! Until then its searches read the current model, so they answer
//! throughout and never mix models. Once every tenant is switched, the
//! next model becomes the deployment's (`EMBEDDING_*`) and the `NEXT_*`
//! variables go.

use super::{Embedding, Pipeline};
use crate::store::chunks::{self, LiveChunk};
use crate::store::model_change::{self, ModelChange, TenantProgress};
use docpipe_core::cost::{self, Allowance, Spend, reservation::SETTLE_PATIENCE};
use docpipe_core::db;
use docpipe_core::embedding::models::NextModel;
use docpipe_core::embedding::{EmbedInput, Embedder};
use docpipe_core::error::{Error, Result};
use docpipe_core::settings::{CacheScope, CostPolicy};
use pgvector::Vector;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Replaces up to `limit` searchable vectors made by the fallback model (hybrid
/// mode, provider down) with the provider's, once the provider answers again.
/// Returns how many were replaced.
pub async fn replace_fallback_vectors(pipeline: &Pipeline, limit: u32) -> Result<u64> {
    let Embedding {
        cache_scope,
        models,
    } = pipeline.embedding()?;
    let embedder = models.current.as_ref();
    let Some(fallback) = embedder.fallback_model() else {
        return Ok(0);
    };
    let rows = chunks::of_model(&pipeline.db.get().await?, fallback, limit).await?;
    let Some(vectors) = reembed(pipeline, embedder, &models.cost, *cache_scope, &rows).await?
    else {
        return Ok(0); // The provider is still down.
    };
    let ids: Vec<Uuid> = rows.iter().map(|row| row.chunk_id).collect();
    let client = pipeline.db.get().await?;
    let slot = models.slot(&client, embedder).await?;
    let replaced = chunks::replace_vectors(&client, &ids, &vectors, &slot, fallback).await?;
    tracing::info!(replaced, "fallback vectors replaced with the provider's");
    Ok(replaced)
}

/// What one sweep did for a model change.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelChangeReport {
    /// Chunks given the next model's vector (in the cache).
    pub embedded: u64,
    /// Tenants switched to the next model, with the chunks that moved.
    pub switched: Vec<(String, u64)>,
}

/// Moves a model change on, if one is under way: up to `limit` chunks
/// embedded by the next model, then every tenant that has them all switched.
pub async fn advance_model_change(pipeline: &Pipeline, limit: u32) -> Result<ModelChangeReport> {
    let mut report = ModelChangeReport::default();
    let Embedding { models, .. } = pipeline.embedding()?;
    let (Some(change), Some(next)) = (model_change(pipeline)?, &models.next) else {
        return Ok(report);
    };
    let mut client = pipeline.db.get().await?;
    let current = models.slot(&client, models.current.as_ref()).await?;
    let next_slot = models.slot(&client, next.embedder.as_ref()).await?;
    if !db::schema::has_vector_column(&client, &next_slot.column).await? {
        return Err(Error::Transient(format!(
            "the next model's vectors need column document_chunks.{}: run `docpipe migrate` \
             with NEXT_EMBEDDING_DIMS set",
            next_slot.column
        )));
    }
    let rows = model_change::lacking(&client, &change, limit).await?;
    report.embedded = build_next_vectors(pipeline, next, change.cache_scope, &rows).await?;
    for tenant in model_change::tenants_on_current(&client, change.current).await? {
        let moved =
            model_change::switch(&mut client, &change, &current, &next_slot, &tenant).await?;
        if let Some(moved) = moved {
            tracing::info!(
                tenant,
                moved,
                model = change.next,
                "tenant switched to the next model"
            );
            report.switched.push((tenant, moved));
        }
    }
    Ok(report)
}

/// Embeds `rows` with the next model and keeps the vectors; returns how
/// many it kept. A chunk the model refuses (over its window, say) fails the
/// call for all: then each is embedded alone, and the refused ones are
/// named in the log and left out. They hold back their own tenant's switch
/// only, until their documents are re-ingested in chunks that fit.
async fn build_next_vectors(
    pipeline: &Pipeline,
    next: &NextModel,
    scope: CacheScope,
    rows: &[LiveChunk],
) -> Result<u64> {
    let singles = match build(pipeline, next, scope, rows).await {
        Err(Error::Rejected(_)) if rows.len() > 1 => rows.chunks(1),
        built => return built,
    };
    let mut built = 0;
    for single in singles {
        match build(pipeline, next, scope, single).await {
            Err(Error::Rejected(reason)) => tracing::warn!(
                chunk_id = %single[0].chunk_id, tenant = single[0].tenant, %reason,
                "the next model refuses this chunk; its tenant cannot switch until its \
                 document is ingested again in chunks that fit"
            ),
            result => built += result?,
        }
    }
    Ok(built)
}

/// `rows` embedded by the next model and kept, in one call.
async fn build(
    pipeline: &Pipeline,
    next: &NextModel,
    scope: CacheScope,
    rows: &[LiveChunk],
) -> Result<u64> {
    let embedder = next.embedder.as_ref();
    match reembed(pipeline, embedder, &next.cost, scope, rows).await? {
        Some(_) => Ok(rows.len() as u64),
        None => Ok(0),
    }
}

/// The model change under way, if any.
pub fn model_change(pipeline: &Pipeline) -> Result<Option<ModelChange<'_>>> {
    let Embedding {
        cache_scope,
        models,
    } = pipeline.embedding()?;
    Ok(models.next.as_ref().map(|next| ModelChange {
        current: models.current.model(),
        next: next.embedder.model(),
        dims: next.embedder.dims() as i32,
        cache_scope: *cache_scope,
    }))
}

/// Each tenant's progress through the model change under way (none without one).
pub async fn model_change_progress(pipeline: &Pipeline) -> Result<Vec<TenantProgress>> {
    match model_change(pipeline)? {
        Some(change) => model_change::progress(&pipeline.db.get().await?, &change).await,
        None => Ok(Vec::new()),
    }
}

/// `rows` embedded by `embedder` and kept in the cache, in each chunk's
/// tenant's scope, at once: paid for, they are never paid for again, even
/// if a later step fails. Within the deployment's allowance (several
/// tenants' chunks at once), the bill shared among the chunks' jobs by their
/// tokens. `None` if there are none, or if the embedder answered with its
/// fallback model (the provider is down).
async fn reembed(
    pipeline: &Pipeline,
    embedder: &dyn Embedder,
    prices: &CostPolicy,
    scope: CacheScope,
    rows: &[LiveChunk],
) -> Result<Option<Vec<Vector>>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let inputs: Vec<EmbedInput> = rows
        .iter()
        .map(|row| EmbedInput::stored(&row.text, row.tokens))
        .collect();
    let mut per_job: BTreeMap<(&str, Uuid), i64> = BTreeMap::new();
    for row in rows {
        *per_job.entry((&row.tenant, row.job_id)).or_default() += i64::from(row.tokens);
    }
    let estimate: Vec<Spend> = per_job
        .iter()
        .map(|(&(tenant, job_id), &tokens)| {
            cost::embedding_estimate(prices, embedder, tenant, Some(job_id), tokens)
        })
        .collect();
    // Re-embedding is the deployment's choice, not a tenant's: its budget pays.
    let payer = Allowance::Deployment;
    let embedded = embedder.embed(&inputs);
    let embeddings =
        cost::pay_embeddings(&pipeline.db, prices, embedder, payer, &estimate, embedded).await?;
    if embeddings.model != embedder.model() {
        return Ok(None);
    }
    let vectors: Vec<Vector> = embeddings.vectors.into_iter().map(Vector::from).collect();
    let hashes: &[&[u8]] = &rows
        .iter()
        .map(|row| row.text_sha256.as_slice())
        .collect::<Vec<_>>();
    let scopes: &[&str] = &rows
        .iter()
        .map(|row| scope.of(&row.tenant))
        .collect::<Vec<_>>();
    let (model, dims, kept) = (embedder.model(), embedder.dims() as i32, &vectors);
    db::outlast_outage(SETTLE_PATIENCE, || async move {
        let client = pipeline.db.get().await?;
        chunks::cache_vectors(&client, hashes, scopes, model, dims, kept).await
    })
    .await?;
    Ok(Some(vectors))
}
