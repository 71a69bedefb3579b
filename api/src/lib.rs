//! docpipe's HTTP API as one axum router: served by the `api` Lambda function
//! behind API Gateway (HTTP API, payload v2) and locally by `docpipe-api`.
//! Every route acts for one tenant, the caller's: another tenant's ids are
//! 404, never 403, so ids reveal nothing.

pub mod auth;
pub mod bedrock;
mod error;
mod rate_limit;
mod routes;
pub mod server;
mod settings;
mod state;

pub use auth::{Auth, Tenant, parse_api_keys};
pub use error::ApiError;
pub use routes::{MAX_BODY_BYTES, MAX_PAGE, MAX_QUERY_BYTES, MAX_TOP_K, OPENAPI, router};
pub use settings::ApiSettings;
pub use state::{Api, ApiParts, Infrastructure, Presigner, WatchedQueue};

use docpipe_core::settings::{Parts, PipelineSettings};
use docpipe_ingest::drivers::Deployment;
use std::sync::Arc;

/// The `api` Lambda function: a cold start builds the clients once, then
/// API Gateway's requests go through the same router as locally. The tenant
/// is the authorizer's `TENANT_CLAIM` (default `tenant`).
pub async fn serve_lambda() -> Result<(), lambda_http::Error> {
    docpipe_core::ops::telemetry::init("info");
    let sdk = docpipe_aws::sdk::sdk_config().await;
    // The API's own secrets (SigV4 keys, the page tokens' key) with the rest.
    let env = docpipe_ingest::drivers::handlers::settings(&sdk).await?;
    // Search embeds queries: the API builds the embedder and no other part.
    let pipeline = PipelineSettings::load(&env, Parts::EMBED)?;
    let deployment = Deployment::new(&pipeline, env.load()?, &sdk)
        .await
        .inspect_err(|e| {
            tracing::error!(error = %e, "configuration error");
        })?;
    let settings: ApiSettings = env.load()?;
    let claim = settings.tenant_claim.clone();
    let api = Api::new(deployment, Auth::Authorizer { claim }, &settings)?;
    lambda_http::run(router(Arc::new(api))).await
}
