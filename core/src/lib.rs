//! docpipe's core: what both the write path (`docpipe-ingest`) and the read
//! path (`docpipe-search`) stand on. `domain` (keys, ids, job states,
//! formats, metadata), `error`, `settings` (one struct per concern),
//! `tokens` (cl100k), `db` (the pool, migrations, the schema's vector
//! columns), `store` (the tables both paths read), `embedding` (what an embedder is, which model serves a
//! tenant), `cost` (prices, budgets, the ledger and its reservations),
//! `external` (breakers, rate limits, retries around every outside call) and `ops`
//! (metrics, logs, secrets, TLS).

pub mod cost;
pub mod db;
pub mod domain;
pub mod embedding;
pub mod error;
pub mod external;
pub mod ops;
pub mod settings;
pub mod store;
pub mod tokens;

pub use domain::state::JobState;
pub use error::{ConfigError, Error, Rejection, Result};
