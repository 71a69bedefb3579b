//! The LocalStack tier: the deployed shape (S3, SQS, Secrets Manager on
//! LocalStack) with Postgres and the mock services: the API, the
//! AWS-shaped stack, hostile input through it, metadata sidecars, secrets.
//! Its tests provision stacks of their own in the one LocalStack, so they
//! run at most two at a time (`.config/nextest.toml`, group `localstack`).

mod api;
mod aws;
mod bad_input;
mod hostile_input;
mod inventory;
mod knowledge_bases;
mod metadata;
mod secrets;
mod sync;
