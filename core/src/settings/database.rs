//! Postgres: where it is and how many connections a process keeps.

use super::{NEXT, Secret, Settings, VectorIndex, VectorStorage, embedding, invalid};
use crate::error::ConfigError;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `DATABASE_URL` (required; in Lambda built from `DATABASE_SECRET_ID`).
    pub database_url: Option<Secret>,
    /// `DATABASE_CA_FILE`: extra root certificates (PEM) for TLS to Postgres
    /// (`sslmode=require`).
    pub database_ca_file: Option<PathBuf>,
    /// `DB_POOL_SIZE` (8): connections a process keeps.
    pub db_pool_size: usize,
    /// `EMBEDDING_DIMS` (1536): the size of the schema's vector columns,
    /// checked against the database at connect.
    #[serde(rename = "embedding_dims")]
    pub vector_dims: usize,
    /// `EMBEDDING_STORAGE`: `vector`, or `halfvec` (half the memory; by
    /// default over 2000 dimensions), fixed at migration.
    #[serde(rename = "embedding_storage")]
    pub storage: Option<VectorStorage>,
    /// `EMBEDDING_INDEX`: `hnsw` (default), or `binary` (HNSW over the
    /// vectors' bits, re-ranked by the vectors: a sixth of the index memory);
    /// `docpipe migrate` rebuilds the index when it changes.
    #[serde(rename = "embedding_index")]
    pub vector_index: VectorIndex,
    /// `NEXT_EMBEDDING_DIMS`, `NEXT_EMBEDDING_STORAGE`: during a model change
    /// to another size, the next model's column (`docpipe migrate` adds it).
    #[serde(rename = "next_embedding_dims")]
    pub next_vector_dims: Option<usize>,
    #[serde(rename = "next_embedding_storage")]
    pub next_storage: Option<VectorStorage>,
    /// `SEARCH_TEXT_CONFIG` (`simple`): the Postgres text-search configuration
    /// keyword search reads chunks with, fixed at migration. `simple` (words
    /// as written, no stemming, no stop words) suits mixed languages; a
    /// language's (`english`, `german`…) stems its words.
    pub search_text_config: String,
    /// `DB_INDEX_BUILD_MEMORY` (`512MB`): `maintenance_work_mem` while a
    /// deferred HNSW index is built; a graph larger than this builds several
    /// times slower, and a stock RDS instance gives 64 MB or so.
    pub db_index_build_memory: String,
    /// `DB_INDEX_BUILD_WORKERS` (2): `max_parallel_maintenance_workers` for
    /// that build (the server's `max_parallel_workers` still caps it).
    pub db_index_build_workers: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            database_url: None,
            database_ca_file: None,
            db_pool_size: 8,
            vector_dims: embedding::DEFAULT_EMBEDDING_DIMS,
            storage: None,
            vector_index: VectorIndex::Hnsw,
            next_vector_dims: None,
            next_storage: None,
            search_text_config: "simple".into(),
            db_index_build_memory: "512MB".into(),
            db_index_build_workers: 2,
        }
    }
}

impl DatabaseSettings {
    /// How the schema stores vectors.
    pub fn vector_storage(&self) -> VectorStorage {
        VectorStorage::for_dims(self.storage, self.vector_dims)
    }

    /// The vector sizes the configured models make, each with its storage:
    /// the deployment's, and a model change's next one if it differs.
    pub fn vector_sizes(&self) -> Vec<VectorSize> {
        let mut sizes = vec![VectorSize {
            dims: self.vector_dims,
            storage: self.vector_storage(),
            settings: "",
        }];
        if let Some(next) = self.next_vector_dims
            && next != self.vector_dims
        {
            sizes.push(VectorSize {
                dims: next,
                storage: VectorStorage::for_dims(self.next_storage, next),
                settings: NEXT,
            });
        }
        sizes
    }
}

/// A size of vectors a configured model makes, and how they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorSize {
    pub dims: usize,
    pub storage: VectorStorage,
    /// The prefix of the settings that name it: `""` for the deployment's
    /// model (`EMBEDDING_DIMS`), `NEXT_` for a model change's next one.
    pub settings: &'static str,
}

impl VectorSize {
    /// Whether it is the deployment's model's size (not a change's next).
    pub fn is_current(&self) -> bool {
        self.settings.is_empty()
    }

    /// The name of its setting `name` (`EMBEDDING_DIMS`, `EMBEDDING_STORAGE`).
    pub fn setting(&self, name: &str) -> String {
        format!("{}{name}", self.settings)
    }
}

impl Settings for DatabaseSettings {
    fn check(self) -> Result<Self, ConfigError> {
        if self.database_url.is_none() {
            return Err(ConfigError::Missing {
                name: "DATABASE_URL".into(),
            });
        }
        for size in self.vector_sizes() {
            embedding::check_dims(&size.setting("EMBEDDING_DIMS"), size.dims, size.storage)?;
        }
        // It is written into the migration's SQL: a plain name only.
        let name = &self.search_text_config;
        if !(1..=63).contains(&name.len())
            || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(invalid(
                "SEARCH_TEXT_CONFIG",
                name,
                "must name a text-search configuration: 1-63 of a-z and '_' (simple, english…)",
            ));
        }
        let memory = &self.db_index_build_memory;
        let digits = memory.trim_end_matches(['k', 'M', 'G', 'B']);
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !["kB", "MB", "GB"].contains(&&memory[digits.len()..])
        {
            return Err(invalid(
                "DB_INDEX_BUILD_MEMORY",
                memory,
                "must be a whole number of kB, MB or GB (512MB, 2GB)",
            ));
        }
        if self.db_index_build_workers > 64 {
            return Err(invalid(
                "DB_INDEX_BUILD_WORKERS",
                self.db_index_build_workers,
                "must be 0 to 64",
            ));
        }
        Ok(self)
    }
}

impl DatabaseSettings {
    /// The connection string (present: [`Settings::check`] refuses its absence).
    pub fn url(&self) -> &str {
        use secrecy::ExposeSecret;
        self.database_url
            .as_ref()
            .map(|url| url.expose_secret())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Env;

    fn load(pairs: &[(&str, &str)]) -> Result<DatabaseSettings, ConfigError> {
        let mut vars = vec![("DATABASE_URL", "postgres://x")];
        vars.extend_from_slice(pairs);
        Env::from_pairs(vars).load()
    }

    #[test]
    fn index_build_settings_take_plain_sizes_and_counts_only() {
        for good in ["64kB", "512MB", "2GB"] {
            let settings = load(&[("DB_INDEX_BUILD_MEMORY", good)]).unwrap();
            assert_eq!(settings.db_index_build_memory, good);
        }
        for bad in [
            "MB",
            "512",
            "512 MB",
            "1TB",
            "5MB'; DROP TABLE x; --",
            "-1MB",
        ] {
            let err = load(&[("DB_INDEX_BUILD_MEMORY", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("DB_INDEX_BUILD_MEMORY"),
                "{bad}: {err}"
            );
        }
        let err = load(&[("DB_INDEX_BUILD_WORKERS", "65")]).unwrap_err();
        assert!(err.to_string().contains("DB_INDEX_BUILD_WORKERS"), "{err}");
        assert_eq!(load(&[]).unwrap().db_index_build_workers, 2);
    }
}
