//! The `lambda_runtime` glue of every docpipe function: logging, a cold start
//! that builds the clients once, then one handler call per event. The work
//! itself is in `docpipe_ingest::drivers::handlers`.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use docpipe_core::ops::telemetry;
use docpipe_core::settings::{DatabaseSettings, Parts, SweepPolicy};
use docpipe_ingest::drivers::{Deployment, handlers};
use docpipe_ingest::pipeline::Stages;
use lambda_runtime::{Error, LambdaEvent, service_fn};

/// The function's pipeline with `parts`: it reads their settings, and
/// their keys, and no other.
async fn cold_start(parts: Parts) -> Result<Deployment, Error> {
    telemetry::init("info");
    Deployment::from_env(parts).await.map_err(|e| {
        tracing::error!(error = %e, "configuration error");
        e.into()
    })
}

/// `ingest`: serves batches of S3 notifications, answering with the failed
/// records only.
pub async fn serve_uploads() -> Result<(), Error> {
    let deployment = &cold_start(Parts::NONE).await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(
            handlers::handle_upload_events(deployment, event.payload).await,
        )
    }))
    .await
}

/// `parse`, `chunk`, `embed`: serves batches of the stage `S`'s messages,
/// answering with the failed records only. Only `S`'s code is in the binary.
pub async fn serve_stage<S: Stages>() -> Result<(), Error> {
    let deployment = &cold_start(S::PARTS).await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(
            handlers::handle_stage_events::<S>(deployment, event.payload).await,
        )
    }))
    .await
}

/// Serves scheduled invocations (any payload): one sweep each. The embedder
/// replaces fallback vectors once the provider answers again.
pub async fn serve_schedule() -> Result<(), Error> {
    let deployment = &cold_start(Parts::EMBED).await?;
    let policy = &docpipe_core::settings::Env::from_process().load::<SweepPolicy>()?;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            Ok::<_, Error>(handlers::handle_schedule(deployment, policy).await?)
        },
    ))
    .await
}

/// Serves migration requests (any payload): applies what the database lacks
/// and answers with the migrations applied.
pub async fn serve_migrate() -> Result<(), Error> {
    telemetry::init("info");
    let sdk = docpipe_aws::sdk::sdk_config().await;
    let config = &handlers::settings(&sdk).await?.load::<DatabaseSettings>()?;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            Ok::<_, Error>(handlers::handle_migrate(config).await?)
        },
    ))
    .await
}
