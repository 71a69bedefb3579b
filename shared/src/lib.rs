//! docpipe: documents in S3 become searchable vectors in Postgres.
//!
//! The folders follow the flow (docs/develop/architecture.md): `domain` (keys, ids, job
//! states), `settings` (one struct per concern), `tokens` (cl100k, both
//! paths count by it), `pipeline` (the stages and
//! the sweeper over the [`adapters::blob::BlobStore`],
//! [`adapters::queue::Queue`] and [`embedding::Embedder`] traits), the steps'
//! own machinery (`parsing`, `chunking`, `embedding`, `external`, `cost`,
//! `search`, `rerank`), `store` (Postgres), `adapters` (S3, SQS, LlamaParse, local
//! stand-ins), `drivers` (what delivers work: Lambda, the local runner, the
//! CLI's in-process pipeline) and `ops` (metrics, logs, secrets, TLS).

pub mod adapters;
pub mod chunking;
pub mod cost;
pub mod domain;
pub mod drivers;
pub mod embedding;
pub mod error;
pub mod external;
pub mod ops;
pub mod parsing;
pub mod pipeline;
pub mod rerank;
pub mod search;
pub mod settings;
pub mod store;
pub mod tokens;

pub use domain::state::JobState;
pub use error::{ConfigError, Error, Rejection, Result};
