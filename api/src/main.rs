//! `docpipe-api`: the HTTP API and the operations dashboard as a local
//! server over the deployed pipeline's settings (the local stack's
//! `.local/aws.env`), with `API_KEYS=key:tenant,…` naming who may call it,
//! listening on `API_LISTEN` (default 127.0.0.1:3000).

use docpipe_api::server::{ServerTimeouts, serve};
use docpipe_api::{Api, Auth, parse_api_keys, router};
use docpipe_shared::config::{AwsConfig, Config};
use docpipe_shared::lambda::Deployment;
use docpipe_shared::{aws, telemetry};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    telemetry::init("info");
    let api_keys = parse_api_keys(&std::env::var("API_KEYS").unwrap_or_default())?;
    if api_keys.is_empty() {
        return Err("API_KEYS is not set: give at least one key:tenant pair".into());
    }
    let listen = std::env::var("API_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let sdk = aws::sdk_config().await;
    let deployment = Deployment::new(&Config::from_env()?, AwsConfig::from_env()?, &sdk).await?;
    let api = Api::new(Arc::new(deployment), Auth::ApiKeys(api_keys), |name| {
        std::env::var(name).ok()
    })?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(%listen, "docpipe-api listening");
    serve(listener, router(Arc::new(api)), ServerTimeouts::default()).await?;
    Ok(())
}
