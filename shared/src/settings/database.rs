//! Postgres: where it is and how many connections a process keeps.

use super::{Secret, Settings, VectorStorage, embedding, invalid};
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
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            database_url: None,
            database_ca_file: None,
            db_pool_size: 8,
            vector_dims: embedding::DEFAULT_EMBEDDING_DIMS,
            storage: None,
            next_vector_dims: None,
            next_storage: None,
            search_text_config: "simple".into(),
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
    pub fn vector_sizes(&self) -> Vec<(usize, VectorStorage)> {
        let mut sizes = vec![(self.vector_dims, self.vector_storage())];
        if let Some(next) = self.next_vector_dims
            && next != self.vector_dims
        {
            sizes.push((next, VectorStorage::for_dims(self.next_storage, next)));
        }
        sizes
    }
}

/// The settings of [`DatabaseSettings::vector_sizes`], in its order.
const SIZE_SETTINGS: [&str; 2] = ["EMBEDDING_DIMS", "NEXT_EMBEDDING_DIMS"];

impl Settings for DatabaseSettings {
    fn check(self) -> Result<Self, ConfigError> {
        if self.database_url.is_none() {
            return Err(ConfigError::Missing {
                name: "DATABASE_URL".into(),
            });
        }
        for ((dims, storage), name) in self.vector_sizes().into_iter().zip(SIZE_SETTINGS) {
            embedding::check_dims(name, dims, storage)?;
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
