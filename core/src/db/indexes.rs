//! The search indexes: their kind (`EMBEDDING_INDEX`, matched on migrate),
//! and bulk loads: the HNSW search index is dropped while a large load runs and
//! built once after it. Building the graph once is several times faster than
//! inserting each vector into it (docs/benchmarks); meanwhile searches
//! are exact scans, and the build blocks writes to `document_chunks`.

use crate::error::{ConfigError, Result};
use crate::settings::{DatabaseSettings, VectorIndex};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// The search index over the first vector column, `embedding` (migrations/V1).
pub const SEARCH_INDEX: &str = "document_chunks_embedding_idx";

/// The search index over vector column `column` (`embedding`: [`SEARCH_INDEX`]).
pub(super) fn search_index_name(column: &str) -> String {
    format!("document_chunks_{column}_idx")
}

/// Rebuilds each vector column's search index that is not of the kind
/// `EMBEDDING_INDEX` names; one a bulk load deferred has its kept
/// definition rewritten instead. Returns what it changed.
pub(super) async fn match_index_kind(
    client: &mut Client,
    config: &DatabaseSettings,
    column_of: impl Fn(usize) -> String,
) -> std::result::Result<Vec<String>, ConfigError> {
    let mut changed = Vec::new();
    for size in config.vector_sizes() {
        let column = column_of(size.dims);
        let name = search_index_name(&column);
        let wanted = config
            .vector_index
            .definition(&name, &column, size.dims, size.storage);
        let tx = client.transaction().await?;
        // Postgres's text of the index as it is, or as a bulk load kept it.
        let current: Option<String> = tx
            .query_one(
                "SELECT coalesce(pg_get_indexdef(to_regclass('upload_pipeline.' || $1)),
                                 (SELECT definition FROM upload_pipeline.deferred_indexes
                                   WHERE name = $1))",
                &[&name],
            )
            .await?
            .get(0);
        let Some(current) =
            current.filter(|d| VectorIndex::of_definition(d) != config.vector_index)
        else {
            continue;
        };
        let rewritten = tx
            .execute(
                "UPDATE upload_pipeline.deferred_indexes SET definition = $2 WHERE name = $1",
                &[&name, &wanted],
            )
            .await?;
        if rewritten == 0 {
            give_index_build_its_settings(&tx, config).await?;
            // `name` and `wanted` are plain names and SQL made here.
            tx.batch_execute(&format!("DROP INDEX upload_pipeline.{name}; {wanted}"))
                .await?;
        }
        tx.commit().await?;
        tracing::info!(index = %name, was = %current, "search index rebuilt as EMBEDDING_INDEX names");
        changed.push(format!("index {name} ({})", config.vector_index));
    }
    Ok(changed)
}

/// Drops the search index for a bulk load, keeping its definition in
/// `deferred_indexes` in the same transaction. Returns whether an index was
/// dropped (not when it is already deferred, e.g. by a concurrent load).
pub async fn defer_search_index(client: &mut Client) -> Result<bool> {
    let tx = client.transaction().await?;
    let kept = tx
        .execute(
            "INSERT INTO upload_pipeline.deferred_indexes (name, definition)
             SELECT indexname, indexdef FROM pg_indexes
              WHERE schemaname = 'upload_pipeline' AND indexname = $1
             ON CONFLICT DO NOTHING",
            &[&SEARCH_INDEX],
        )
        .await?;
    if kept == 1 {
        // A constant identifier: DDL takes no parameters.
        tx.batch_execute(&format!("DROP INDEX upload_pipeline.{SEARCH_INDEX}"))
            .await?;
    }
    tx.commit().await?;
    Ok(kept == 1)
}

/// Gives the index builds of transaction `tx` the memory and parallel
/// workers `settings` name (`DB_INDEX_BUILD_*`), whatever the server's
/// defaults.
pub async fn give_index_build_its_settings(
    tx: &tokio_postgres::Transaction<'_>,
    settings: &DatabaseSettings,
) -> std::result::Result<(), tokio_postgres::Error> {
    tx.execute(
        "SELECT set_config('maintenance_work_mem', $1, true),
                set_config('max_parallel_maintenance_workers', $2, true)",
        &[
            &settings.db_index_build_memory,
            &settings.db_index_build_workers.to_string(),
        ],
    )
    .await?;
    Ok(())
}

/// Whether `document_chunks` holds no row of any tenant.
pub async fn no_chunks_yet(client: &Client) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM upload_pipeline.document_chunks)",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// An index built again, and how long its build took.
#[derive(Debug)]
pub struct Rebuilt {
    pub name: String,
    pub took: Duration,
}

/// Builds every deferred index, each in its own transaction with the removal
/// of its `deferred_indexes` row; a concurrent caller waits on that row and
/// then finds nothing left to do. The build has the memory and parallel
/// workers `settings` give it (`DB_INDEX_BUILD_*`), whatever the server's
/// defaults.
pub async fn rebuild_deferred_indexes(
    client: &mut Client,
    settings: &DatabaseSettings,
) -> Result<Vec<Rebuilt>> {
    let names: Vec<String> = client
        .query(
            "SELECT name FROM upload_pipeline.deferred_indexes ORDER BY name",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut rebuilt = Vec::new();
    for name in names {
        let started = Instant::now();
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT definition FROM upload_pipeline.deferred_indexes WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?
        else {
            continue;
        };
        // Postgres's own text (pg_get_indexdef), saved when the index was dropped.
        let definition: String = row.get(0);
        give_index_build_its_settings(&tx, settings).await?;
        tx.batch_execute(&definition).await?;
        tx.execute(
            "DELETE FROM upload_pipeline.deferred_indexes WHERE name = $1",
            &[&name],
        )
        .await?;
        tx.commit().await?;
        let took = started.elapsed();
        tracing::info!(index = %name, took_ms = took.as_millis() as u64, "deferred index built");
        rebuilt.push(Rebuilt { name, took });
    }
    Ok(rebuilt)
}
