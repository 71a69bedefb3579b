//! `docpipe-api`: the HTTP API as a local server over the configured
//! database (`DATABASE_URL`), with `API_KEYS=key:tenant,…` naming who may
//! call it, listening on `API_LISTEN` (default 127.0.0.1:8080).

use docpipe_api::{Api, parse_api_keys, router};
use docpipe_shared::config::Config;
use docpipe_shared::local::LocalPipeline;
use docpipe_shared::{db, telemetry};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    telemetry::init("info");
    let config = Config::from_env()?;
    let api_keys = parse_api_keys(&std::env::var("API_KEYS").unwrap_or_default())?;
    if api_keys.is_empty() {
        return Err("API_KEYS is not set: give at least one key:tenant pair".into());
    }
    let listen = std::env::var("API_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let pool = db::connect(&config).await?;
    let pipeline = LocalPipeline::new(&config, pool)?.pipeline().clone();
    let api = Arc::new(Api { pipeline, api_keys });
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(%listen, "docpipe-api listening");
    axum::serve(listener, router(api)).await?;
    Ok(())
}
