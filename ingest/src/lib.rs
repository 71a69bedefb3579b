//! docpipe: documents in S3 become searchable vectors in Postgres.
//!
//! The folders follow the flow (docs/develop/architecture.md), on
//! `docpipe-core` (domain, settings, the shared tables, cost, outside-call
//! machinery): `pipeline` (the stages and the sweeper over the
//! [`adapters::blob::BlobStore`], [`adapters::queue::Queue`] and
//! [`docpipe_core::embedding::Embedder`] traits), the steps' own machinery
//! (`parsing`, `chunking`, `embedding`, `search`, `rerank`), `store` (the
//! pipeline's own tables), `adapters` (S3, SQS, LlamaParse, local stand-ins)
//! and `drivers` (what delivers work: Lambda, the local runner, the CLI's
//! in-process pipeline).

pub mod chunking;
pub mod drivers;
pub mod embedding;
pub mod parsing;
pub mod pipeline;
pub mod store;
