//! Serves the mock LlamaParse API.
//! Env: MOCK_LLAMAPARSE_LISTEN (127.0.0.1:8091), MOCK_LLAMAPARSE_API_KEY
//! (optional: if set, only this key is accepted), MOCK_LLAMAPARSE_DELAY_MS
//! (processing time of each job, default 1000), MOCK_FAULT_* (see `faults.rs`).

use docpipe_mocks::faults::FaultKnobs;
use docpipe_mocks::llamaparse::{MockLlamaParse, MockLlamaParseConfig};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    docpipe_core::ops::telemetry::init("info");
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let listen = var("MOCK_LLAMAPARSE_LISTEN").unwrap_or_else(|| "127.0.0.1:8091".into());
    let delay_ms: u64 = match var("MOCK_LLAMAPARSE_DELAY_MS") {
        Some(ms) => ms
            .parse()
            .map_err(|e| format!("MOCK_LLAMAPARSE_DELAY_MS={ms:?}: {e}"))?,
        None => 1000,
    };
    let config = MockLlamaParseConfig {
        api_key: var("MOCK_LLAMAPARSE_API_KEY"),
        processing_delay: Duration::from_millis(delay_ms),
        faults: FaultKnobs::from_env()?,
    };
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(address = %listener.local_addr()?, delay_ms, faults = ?config.faults, "mock-llamaparse listening");
    axum::serve(listener, MockLlamaParse::new(config).router()).await?;
    Ok(())
}
