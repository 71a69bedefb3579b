//! Serves the mock OpenAI embeddings API.
//! Env: MOCK_OPENAI_LISTEN (127.0.0.1:8090), MOCK_OPENAI_DIMS (1536),
//! MOCK_OPENAI_API_KEY (optional: if set, only this key is accepted),
//! MOCK_OPENAI_TPM (optional tokens-per-minute limit, enforced with 429s),
//! MOCK_FAULT_* (fault knobs, see `faults.rs`; e.g. MOCK_FAULT_ERROR_RATE=0.1).

use docpipe_mocks::faults::FaultKnobs;
use docpipe_mocks::openai::{MockOpenAi, MockOpenAiConfig};

fn var<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value
            .parse()
            .map(Some)
            .map_err(|e| format!("{name}={value:?}: {e}")),
        _ => Ok(None),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    docpipe_core::ops::telemetry::init("info");
    let listen = var("MOCK_OPENAI_LISTEN")?.unwrap_or_else(|| "127.0.0.1:8090".to_string());
    let config = MockOpenAiConfig {
        default_dims: var("MOCK_OPENAI_DIMS")?
            .unwrap_or(docpipe_core::settings::DEFAULT_EMBEDDING_DIMS),
        api_key: var("MOCK_OPENAI_API_KEY")?,
        tokens_per_window: var("MOCK_OPENAI_TPM")?,
        faults: FaultKnobs::from_env()?,
        ..MockOpenAiConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(address = %listener.local_addr()?, dims = config.default_dims,
        tpm = ?config.tokens_per_window, faults = ?config.faults, "mock-openai listening");
    axum::serve(listener, MockOpenAi::new(config).router()).await?;
    Ok(())
}
