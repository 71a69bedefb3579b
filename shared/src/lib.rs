//! docpipe: documents in S3 become searchable vectors in Postgres.
//!
//! Everything the Lambda functions and the CLI do lives here. Domain types know
//! nothing of AWS; stages run over the [`blob::BlobStore`], [`queue::Queue`]
//! and [`embedding::Embedder`] traits.

pub mod aws;
pub mod blob;
pub mod bulk;
pub mod chunking;
pub mod cost;
pub mod db;
pub mod delivery;
pub mod embedding;
pub mod error;
pub mod external;
pub mod ids;
pub mod jobs;
pub mod lambda;
pub mod llamaparse;
pub mod local;
pub mod metrics;
pub mod parsing;
pub mod queue;
pub mod s3_notification;
pub mod search;
pub mod secrets;
pub mod settings;
pub mod stages;
pub mod state;
pub mod status;
pub mod sweeper;
pub mod telemetry;
pub mod tls;

pub use error::{ConfigError, Error, Rejection, Result};
pub use state::JobState;
