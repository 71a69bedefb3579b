//! Serves the mock OpenAI embeddings API.
//! Env: MOCK_OPENAI_LISTEN (127.0.0.1:8090), MOCK_OPENAI_DIMS (1536),
//! MOCK_OPENAI_API_KEY (optional: if set, only this key is accepted).

use docpipe_mocks::openai::{MockOpenAiConfig, router};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    docpipe_shared::telemetry::init("info");
    let listen = std::env::var("MOCK_OPENAI_LISTEN").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let default_dims = match std::env::var("MOCK_OPENAI_DIMS") {
        Ok(dims) => dims
            .parse()
            .map_err(|e| format!("MOCK_OPENAI_DIMS={dims:?}: {e}"))?,
        Err(_) => docpipe_shared::config::DEFAULT_EMBEDDING_DIMS,
    };
    let api_key = std::env::var("MOCK_OPENAI_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(address = %listener.local_addr()?, default_dims, "mock-openai listening");
    axum::serve(
        listener,
        router(MockOpenAiConfig {
            default_dims,
            api_key,
        }),
    )
    .await?;
    Ok(())
}
