//! docpipe's write path: documents in S3 become searchable vectors in
//! Postgres.
//!
//! On `docpipe-core` (domain, settings, the database, cost, outside-call
//! machinery) and `docpipe-aws` (the blob store and queue ports, S3, SQS,
//! LlamaParse), by the flow (docs/develop/architecture.md): `pipeline` (the
//! stages and the sweeper over the `BlobStore`, `Queue` and `Embedder`
//! traits), the steps' own machinery (`parsing`, `chunking`, `embedding`:
//! the clients), `store` (the pipeline's own tables) and `drivers` (what
//! delivers work: Lambda, the local runner, the CLI's in-process pipeline).
//! It never depends on `docpipe-search`, the read path.

pub mod chunking;
pub mod drivers;
pub mod embedding;
pub mod parsing;
pub mod pipeline;
pub mod store;
pub mod sync;
