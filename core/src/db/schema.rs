//! The schema: versioned migrations (refinery), the vector columns they
//! make (`VectorLayout`), and the startup check that the configured model
//! fits them.

use super::{indexes, not_connected, pool};
use crate::error::ConfigError;
use crate::settings::{DatabaseSettings, VectorStorage};
use tokio_postgres::GenericClient;

/// Versioned migrations, applied in order by refinery. Add new files here.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "V1__schema",
        include_str!("../../../migrations/V1__schema.sql"),
    ),
    (
        "V2__correlation_and_sweeps",
        include_str!("../../../migrations/V2__correlation_and_sweeps.sql"),
    ),
    (
        "V3__external_services",
        include_str!("../../../migrations/V3__external_services.sql"),
    ),
    (
        "V4__service_breakers",
        include_str!("../../../migrations/V4__service_breakers.sql"),
    ),
    (
        "V5__deferred_indexes",
        include_str!("../../../migrations/V5__deferred_indexes.sql"),
    ),
    (
        "V6__vectors_written_once",
        include_str!("../../../migrations/V6__vectors_written_once.sql"),
    ),
    (
        "V7__tenant_scoped_cache_and_limits",
        include_str!("../../../migrations/V7__tenant_scoped_cache_and_limits.sql"),
    ),
    (
        "V8__chunk_provenance",
        include_str!("../../../migrations/V8__chunk_provenance.sql"),
    ),
    (
        "V9__document_metadata",
        include_str!("../../../migrations/V9__document_metadata.sql"),
    ),
    (
        "V10__keyword_search",
        include_str!("../../../migrations/V10__keyword_search.sql"),
    ),
    (
        "V11__model_change",
        include_str!("../../../migrations/V11__model_change.sql"),
    ),
    (
        "V12__chunk_headers",
        include_str!("../../../migrations/V12__chunk_headers.sql"),
    ),
    (
        "V13__spend_reservations",
        include_str!("../../../migrations/V13__spend_reservations.sql"),
    ),
    (
        "V14__operator_error_detail",
        include_str!("../../../migrations/V14__operator_error_detail.sql"),
    ),
    (
        "V15__pending_sidecars",
        include_str!("../../../migrations/V15__pending_sidecars.sql"),
    ),
    (
        "V16__stage_work",
        include_str!("../../../migrations/V16__stage_work.sql"),
    ),
    (
        "V17__jobs_by_state_and_tenant",
        include_str!("../../../migrations/V17__jobs_by_state_and_tenant.sql"),
    ),
    (
        "V18__metadata_for_embedding",
        include_str!("../../../migrations/V18__metadata_for_embedding.sql"),
    ),
    (
        "V19__object_versions",
        include_str!("../../../migrations/V19__object_versions.sql"),
    ),
    (
        "V20__syncs",
        include_str!("../../../migrations/V20__syncs.sql"),
    ),
    (
        "V21__ingestion_jobs",
        include_str!("../../../migrations/V21__ingestion_jobs.sql"),
    ),
    (
        "V22__sync_waits",
        include_str!("../../../migrations/V22__sync_waits.sql"),
    ),
    (
        "V23__sync_inventory",
        include_str!("../../../migrations/V23__sync_inventory.sql"),
    ),
    (
        "V24__sync_inventory_file_count",
        include_str!("../../../migrations/V24__sync_inventory_file_count.sql"),
    ),
];

/// The placeholder in migrations that stands for the configured vector size.
const DIMS_PLACEHOLDER: &str = "{embedding_dims}";
/// The placeholders for the vector columns' type and its HNSW operator class
/// (`EMBEDDING_STORAGE`). With `vector`, V1 reads as it did before they were
/// added, so its checksum in deployed schemas still matches.
const TYPE_PLACEHOLDER: &str = "{vector_type}";
const OPS_PLACEHOLDER: &str = "{vector_ops}";
/// The placeholder that stands for the configured text-search configuration.
const TEXT_CONFIG_PLACEHOLDER: &str = "{text_search_config}";

/// The schema's vector columns: V1's `embedding`, of the size and storage
/// the schema was first migrated with, and `embedding_<dims>` for each other
/// size a model change moved to (`migrate` adds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorLayout {
    pub base_dims: usize,
    pub base_storage: VectorStorage,
}

impl VectorLayout {
    /// The column that holds vectors of `dims` dimensions (a plain name).
    pub fn column(&self, dims: usize) -> String {
        if dims == self.base_dims {
            "embedding".into()
        } else {
            format!("embedding_{dims}")
        }
    }

    /// The schema's layout, or `None` before its first migration.
    pub async fn read(client: &impl GenericClient) -> Result<Option<VectorLayout>, ConfigError> {
        Ok(vector_column(client, "embedding")
            .await?
            .map(|(base_dims, base_storage)| VectorLayout {
                base_dims,
                base_storage,
            }))
    }
}

/// The size and storage of `column` of `document_chunks`, if it exists.
async fn vector_column(
    client: &impl GenericClient,
    column: &str,
) -> Result<Option<(usize, VectorStorage)>, ConfigError> {
    let Some(row) = client
        .query_opt(
            "SELECT atttypmod, atttypid::regtype::text FROM pg_attribute \
             WHERE attrelid = to_regclass('upload_pipeline.document_chunks') AND attname = $1 \
               AND NOT attisdropped",
            &[&column],
        )
        .await?
    else {
        return Ok(None);
    };
    let (dims, storage): (i32, String) = (row.get(0), row.get(1));
    let storage = storage
        .parse()
        .map_err(|_| ConfigError::Database(format!("{column} is of type {storage}")))?;
    Ok(Some((dims.max(0) as usize, storage)))
}

/// Whether `document_chunks` has the vector column `column`.
pub async fn has_vector_column(
    client: &tokio_postgres::Client,
    column: &str,
) -> Result<bool, crate::error::Error> {
    Ok(vector_column(client, column)
        .await
        .map_err(|e| crate::error::Error::Transient(e.to_string()))?
        .is_some())
}

/// The schema's layout (`None` if it does not exist yet), checked against
/// the configured sizes and storage: the deployment's must have its column.
/// A model change's next size may lack its own until `migrate` adds it (no
/// tenant can switch to it before), so functions deployed with the change
/// start before the deploy step migrates.
pub(super) async fn check_vectors(
    client: &tokio_postgres::Client,
    config: &DatabaseSettings,
) -> Result<Option<VectorLayout>, ConfigError> {
    let Some(layout) = VectorLayout::read(client).await? else {
        return Ok(None);
    };
    for size in config.vector_sizes() {
        let (dims, configured) = (size.dims, size.storage);
        match vector_column(client, &layout.column(dims)).await? {
            Some((_, storage)) if storage != configured => {
                let name = size.setting("EMBEDDING_STORAGE");
                return Err(ConfigError::Invalid {
                    name: name.clone(),
                    value: configured.to_string(),
                    reason: format!(
                        "the schema stores {dims}-dimension vectors as {storage}; it is fixed \
                         at migration (set {name}={storage} or migrate a fresh database)"
                    ),
                });
            }
            Some(_) => {}
            None if size.is_current() => {
                return Err(ConfigError::DimensionMismatch {
                    configured: dims,
                    in_table: layout.base_dims,
                });
            }
            None => {}
        }
    }
    Ok(Some(layout))
}

/// Adds the column (and its search index) of a model change's next size.
/// Returns what it added. The column is empty, so the index builds at once.
async fn add_next_size(
    client: &tokio_postgres::Client,
    config: &DatabaseSettings,
    layout: &VectorLayout,
) -> Result<Vec<String>, ConfigError> {
    let mut added = Vec::new();
    for size in config.vector_sizes() {
        let (dims, storage) = (size.dims, size.storage);
        let column = layout.column(dims);
        if vector_column(client, &column).await?.is_some() {
            continue;
        }
        // `column`, the type and the operator class are plain names made here.
        let index = config.vector_index.definition(
            &indexes::search_index_name(&column),
            &column,
            dims,
            storage,
        );
        client
            .batch_execute(&format!(
                "ALTER TABLE upload_pipeline.document_chunks ADD COLUMN {column} {}({dims});
                 {index};",
                storage.sql_type(),
            ))
            .await?;
        added.push(format!("column {column}"));
    }
    Ok(added)
}

/// The text-search configuration keyword search was migrated with, if it was.
async fn schema_text_config(
    client: &tokio_postgres::Client,
) -> Result<Option<String>, ConfigError> {
    let function = "upload_pipeline.text_search_config()";
    let exists: bool = client
        .query_one("SELECT to_regprocedure($1) IS NOT NULL", &[&function])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one("SELECT upload_pipeline.text_search_config()::text", &[])
        .await?;
    Ok(Some(row.get(0)))
}

/// A migration's SQL with the schema's first vector size and storage and
/// the text-search configuration in place of its placeholders.
fn migration_sql(sql: &str, layout: &VectorLayout, text_config: &str) -> String {
    let storage = layout.base_storage;
    sql.replace(DIMS_PLACEHOLDER, &layout.base_dims.to_string())
        .replace(TYPE_PLACEHOLDER, storage.sql_type())
        .replace(OPS_PLACEHOLDER, storage.cosine_ops())
        .replace(TEXT_CONFIG_PLACEHOLDER, text_config)
}

/// What `migrate` did.
#[derive(Debug, serde::Serialize)]
pub struct MigrationReport {
    pub applied: Vec<String>,
}

/// Applies pending migrations with refinery. The vector size is fixed when the
/// schema is first created; migrating with another size is refused.
pub async fn migrate(config: &DatabaseSettings) -> Result<MigrationReport, ConfigError> {
    // One connection, over TLS when the URL asks for it, as the pool's are.
    let pool = pool(config)?;
    let mut pooled = pool.get().await.map_err(not_connected)?;
    let client: &mut tokio_postgres::Client = &mut pooled;

    // An existing schema keeps the size it was created with (a model change
    // adds a column): its migrations read as they were applied.
    let layout = check_vectors(client, config)
        .await?
        .unwrap_or(VectorLayout {
            base_dims: config.vector_dims,
            base_storage: config.vector_storage(),
        });
    let text_config = &config.search_text_config;
    if let Some(in_schema) = schema_text_config(client).await?
        && &in_schema != text_config
    {
        return Err(ConfigError::Invalid {
            name: "SEARCH_TEXT_CONFIG".into(),
            value: text_config.clone(),
            reason: format!("the schema was migrated with {in_schema:?}; it is fixed at migration"),
        });
    }
    let migrations = MIGRATIONS
        .iter()
        .map(|(name, sql)| {
            refinery::Migration::unapplied(name, &migration_sql(sql, &layout, text_config))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::Database(format!("bad migration file: {e}")))?;
    let report = refinery::Runner::new(&migrations)
        .set_abort_divergent(true)
        .run_async(client)
        .await
        .map_err(|e| ConfigError::Database(format!("migration failed: {e}")))?;
    let mut applied: Vec<String> = report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect();
    applied.extend(add_next_size(client, config, &layout).await?);
    applied.extend(indexes::match_index_kind(client, config, |dims| layout.column(dims)).await?);
    Ok(MigrationReport { applied })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Deployed schemas keep V1's checksum only if, with `vector` storage,
    /// `migrate` applies V1 exactly as it did before its type placeholders
    /// were added: the SHA-256 of commit 64b070c's V1 at 1536 dimensions.
    #[test]
    fn v1_with_vector_storage_reads_as_deployed() {
        let (name, sql) = MIGRATIONS[0];
        assert_eq!(name, "V1__schema");
        let config = DatabaseSettings::default();
        let layout = VectorLayout {
            base_dims: config.vector_dims,
            base_storage: config.vector_storage(),
        };
        assert_eq!(
            (layout.base_dims, layout.base_storage),
            (1536, VectorStorage::Vector)
        );
        let sql = migration_sql(sql, &layout, &config.search_text_config);
        assert_eq!(
            hex::encode(Sha256::digest(sql.as_bytes())),
            "e45c844515b50d89d7867169be38b48d5b30d84fab51a975a1a2ea810e88cddf"
        );
    }
}
