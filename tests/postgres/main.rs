//! The Postgres tier: behaviour against a real Postgres with pgvector, the
//! mock services over real HTTP and the real local model; no LocalStack.
//! One test binary, so the suite links once per tier.

mod bedrock;
mod external;
mod filters;
mod formats;
mod ingest;
mod local_model;
mod model_change;
mod repository;
mod schema;
mod search;
mod stages;
mod state_machine;
mod sync_listing;
