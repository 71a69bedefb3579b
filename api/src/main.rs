//! `docpipe-api`: the HTTP API and the operations dashboard as a local
//! server over the deployed pipeline's settings (the local stack's
//! `.local/aws.env`), with `API_KEYS=key:tenant,…` naming who may call it,
//! listening on `API_LISTEN` (default 127.0.0.1:3000).

use docpipe_api::server::{ServerLimits, serve};
use docpipe_api::{Api, ApiSettings, Auth, parse_api_keys, router};
use docpipe_core::ops::telemetry;
use docpipe_core::settings::{Env, ExposeSecret, Parts, PipelineSettings};
use docpipe_ingest::drivers::Deployment;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    telemetry::init("info");
    let env = Env::from_process();
    let settings: ApiSettings = env.load()?;
    let api_keys = parse_api_keys(
        settings
            .api_keys
            .as_ref()
            .map_or("", |keys| keys.expose_secret()),
    )?;
    if api_keys.is_empty() {
        return Err("API_KEYS is not set: give at least one key:tenant pair".into());
    }
    let sdk = docpipe_aws::sdk::sdk_config().await;
    let pipeline = PipelineSettings::load(&env, Parts::EMBED)?;
    let deployment = Deployment::new(&pipeline, env.load()?, &sdk).await?;
    let api = Api::new(deployment, Auth::ApiKeys(api_keys), &settings)?;
    let listen = &settings.api_listen;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "docpipe-api listening");
    let limits = ServerLimits::new(settings.api_max_connections);
    serve(listener, router(Arc::new(api)), limits).await;
    Ok(())
}
