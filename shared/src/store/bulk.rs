//! Bulk loads: the HNSW search index is dropped while a large load runs and
//! built once after it. Building the graph once is several times faster than
//! inserting each vector into it (docs/benchmarks); meanwhile searches
//! are exact scans, and the build blocks writes to `document_chunks`.

use crate::error::Result;
use crate::settings::DatabaseSettings;
use crate::store::db::SEARCH_INDEX;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

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
