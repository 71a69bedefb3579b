//! A model change's moves: the searchable chunks still lacking the next
//! model's vector, each tenant's switch (`tenant_models`), the progress.

use crate::store::chunks::LiveChunk;
use deadpool_postgres::GenericClient;
use docpipe_core::embedding::models::VectorSlot;
use docpipe_core::error::Result;
use docpipe_core::settings::{CacheScope, PipelineSettings};
use serde::Serialize;

/// A model change: from the model tenants search now to the next one, whose
/// vectors (of `dims`, the next model's size) wait in the cache, in each
/// tenant's scope.
#[derive(Debug, Clone, Copy)]
pub struct ModelChange<'a> {
    pub current: &'a str,
    pub next: &'a str,
    pub dims: i32,
    pub cache_scope: CacheScope,
}

impl<'a> ModelChange<'a> {
    /// The change `settings` (loaded with the embedder) configure, if any.
    pub fn configured(settings: &'a PipelineSettings) -> Option<ModelChange<'a>> {
        let (current, next) = (
            settings.embedding.as_ref()?,
            settings.next_embedding.as_ref()?,
        );
        Some(ModelChange {
            current: current.model(),
            next: next.model(),
            dims: next.dims as i32,
            cache_scope: current.cache_scope,
        })
    }

    fn shared_cache(&self) -> bool {
        self.cache_scope == CacheScope::Shared
    }
}

/// Whether the cache holds the next model's vector of what chunk `c` is embedded as, in
/// `c`'s tenant's scope ($2 next model, $3 dims, $4 shared cache).
const NEXT_CACHED: &str = "EXISTS (SELECT 1 FROM upload_pipeline.embedding_cache e
     WHERE e.text_sha256 = c.text_sha256 AND e.model = $2 AND e.dims = $3
       AND e.scope = CASE WHEN $4 THEN '' ELSE c.tenant END)";

/// Up to `limit` searchable chunks with the current model's vectors whose
/// text has no next-model vector in the cache yet.
pub async fn lacking(
    client: &impl GenericClient,
    change: &ModelChange<'_>,
    limit: u32,
) -> Result<Vec<LiveChunk>> {
    Ok(client
        .query(
            &format!(
                "SELECT {} FROM upload_pipeline.document_chunks c
                  WHERE c.model = $1 AND NOT {NEXT_CACHED}
                  LIMIT $5",
                LiveChunk::COLUMNS
            ),
            &[
                &change.current,
                &change.next,
                &change.dims,
                &change.shared_cache(),
                &i64::from(limit),
            ],
        )
        .await?
        .iter()
        .map(LiveChunk::from_row)
        .collect())
}

/// The tenants holding searchable chunks of the current model.
pub async fn tenants_on_current(client: &impl GenericClient, current: &str) -> Result<Vec<String>> {
    Ok(client
        .query(
            "SELECT DISTINCT tenant FROM upload_pipeline.document_chunks WHERE model = $1",
            &[&current],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Switches `tenant` to the next model if every one of its chunks has the
/// next model's vector: in one transaction, its chunks take those vectors
/// and its row names the next model, so its searches read one model or the
/// other, never both. Returns how many chunks moved, or `None` if some
/// still lack their vector. (A chunk that goes live after the switch with
/// the current model's vector is moved by a later call.)
pub async fn switch(
    client: &mut deadpool_postgres::Client,
    change: &ModelChange<'_>,
    // Where the current model's vectors are kept, and the next's.
    current: &VectorSlot,
    next: &VectorSlot,
    tenant: &str,
) -> Result<Option<u64>> {
    let tx = client.transaction().await?;
    let shared = change.shared_cache();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &change.current,
        &change.next,
        &change.dims,
        &shared,
        &tenant,
    ];
    let lacking: i64 = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM upload_pipeline.document_chunks c
                  WHERE c.tenant = $5 AND c.model = $1 AND NOT {NEXT_CACHED}"
            ),
            &params,
        )
        .await?
        .get(0);
    if lacking > 0 {
        return Ok(None);
    }
    // Another size: the current model's vectors leave their column's index.
    let (current_column, next_column) = (&current.column, &next.column);
    let clear_current = if current_column == next_column {
        String::new()
    } else {
        format!(", {current_column} = NULL")
    };
    let moved = tx
        .execute(
            &format!(
                "UPDATE upload_pipeline.document_chunks c
                SET {next_column} = v.embedding, model = $2 {clear_current}
               FROM (SELECT c.chunk_id, e.embedding
                       FROM upload_pipeline.document_chunks c
                       -- One primary-key lookup per chunk, as when chunks go live.
                       CROSS JOIN LATERAL (
                           SELECT embedding FROM upload_pipeline.embedding_cache
                            WHERE text_sha256 = c.text_sha256
                              AND model = $2 AND dims = $3
                              AND scope = CASE WHEN $4 THEN '' ELSE c.tenant END
                            LIMIT 1) e
                      WHERE c.tenant = $5 AND c.model = $1) v
              WHERE c.chunk_id = v.chunk_id AND c.model = $1"
            ),
            &params,
        )
        .await?;
    tx.execute(
        "INSERT INTO upload_pipeline.tenant_models (tenant, model) VALUES ($1, $2)
         ON CONFLICT (tenant) DO UPDATE SET model = excluded.model, switched_at = now()
          WHERE tenant_models.model <> excluded.model",
        &[&tenant, &change.next],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(moved))
}

/// A tenant's progress through a model change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Its searchable chunks (of either model).
    pub chunks: i64,
    /// Of those, the ones with the next model's vector: in the cache, or
    /// already in place.
    pub ready: i64,
    /// Whether its searches read the next model.
    pub switched: bool,
}

/// A tenant, named, and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantProgress {
    pub tenant: String,
    #[serde(flatten)]
    pub progress: Progress,
}

/// Each tenant's progress (`tenant`'s only, if named), in name order.
async fn progress_of(
    client: &impl GenericClient,
    change: &ModelChange<'_>,
    tenant: Option<&str>,
) -> Result<Vec<TenantProgress>> {
    Ok(client
        .query(
            &format!(
                "SELECT c.tenant, count(*),
                        count(*) FILTER (WHERE c.model = $2 OR {NEXT_CACHED}),
                        coalesce(bool_and(m.model = $2), false)
                   FROM upload_pipeline.document_chunks c
                   LEFT JOIN upload_pipeline.tenant_models m USING (tenant)
                  WHERE c.model IN ($1, $2) AND ($5::text IS NULL OR c.tenant = $5)
                  GROUP BY c.tenant ORDER BY c.tenant"
            ),
            &[
                &change.current,
                &change.next,
                &change.dims,
                &change.shared_cache(),
                &tenant,
            ],
        )
        .await?
        .iter()
        .map(|row| TenantProgress {
            tenant: row.get(0),
            progress: Progress {
                chunks: row.get(1),
                ready: row.get(2),
                switched: row.get(3),
            },
        })
        .collect())
}

/// Each tenant's progress, in name order.
pub async fn progress(
    client: &impl GenericClient,
    change: &ModelChange<'_>,
) -> Result<Vec<TenantProgress>> {
    progress_of(client, change, None).await
}

/// `tenant`'s progress (nothing to move, for a tenant without chunks).
pub async fn tenant_progress(
    client: &impl GenericClient,
    change: &ModelChange<'_>,
    tenant: &str,
) -> Result<Progress> {
    Ok(progress_of(client, change, Some(tenant))
        .await?
        .pop()
        .map(|row| row.progress)
        .unwrap_or_default())
}
