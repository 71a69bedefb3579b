//! Serves the mock of Cohere's rerank API (`POST /v2/rerank`).
//! Env: MOCK_RERANK_LISTEN (127.0.0.1:8092), MOCK_RERANK_API_KEY (optional:
//! if set, only this key is accepted), MOCK_FAULT_* (fault knobs, see `faults.rs`).

use docpipe_mocks::faults::FaultKnobs;
use docpipe_mocks::rerank::MockRerank;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    docpipe_core::ops::telemetry::init("info");
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let listen = var("MOCK_RERANK_LISTEN").unwrap_or_else(|| "127.0.0.1:8092".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let faults = FaultKnobs::from_env()?;
    tracing::info!(address = %listener.local_addr()?, ?faults, "mock-rerank listening");
    axum::serve(
        listener,
        MockRerank::new(var("MOCK_RERANK_API_KEY"), faults).router(),
    )
    .await?;
    Ok(())
}
