//! Serves the mock of Amazon Bedrock Runtime's InvokeModel for embedding
//! models (`POST /model/{modelId}/invoke`); point the SDK at it with
//! AWS_ENDPOINT_URL_BEDROCK_RUNTIME. Env: MOCK_BEDROCK_LISTEN (127.0.0.1:8093),
//! MOCK_FAULT_* (fault knobs, see `faults.rs`).

use docpipe_mocks::bedrock::MockBedrock;
use docpipe_mocks::faults::FaultKnobs;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    docpipe_core::ops::telemetry::init("info");
    let listen = std::env::var("MOCK_BEDROCK_LISTEN")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "127.0.0.1:8093".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let faults = FaultKnobs::from_env()?;
    tracing::info!(address = %listener.local_addr()?, ?faults, "mock-bedrock listening");
    axum::serve(listener, MockBedrock::new(faults).router()).await?;
    Ok(())
}
