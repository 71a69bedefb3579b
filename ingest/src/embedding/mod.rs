//! Turning chunk text into vectors.

pub mod bedrock;
pub mod local;
pub mod mock;
pub mod openai;
pub mod router;

use docpipe_core::embedding::Embedder;
use docpipe_core::embedding::models::Models;
use docpipe_core::error::ConfigError;
use docpipe_core::settings::{
    EmbeddingProvider, EmbeddingSettings, PipelineSettings, ServiceMode, invalid,
};
use std::sync::Arc;

/// Texts the local model embeds in one forward pass: as fast as 32 on two
/// cores, at under half the peak memory (`docpipe-local-embed-bench`).
const LOCAL_BATCH: usize = 8;

/// The embedder the settings name, routed by `SERVICE_MODE` (settings
/// loaded with [`Parts::EMBED`](docpipe_core::settings::Parts)); one that cannot
/// be built names its setting.
pub fn from_settings(
    settings: &PipelineSettings,
) -> std::result::Result<Arc<dyn Embedder>, ConfigError> {
    routed(settings.embedding(), settings)
}

/// The models the settings name: the deployment's and, during a model
/// change, the next one.
pub fn models(settings: &PipelineSettings) -> std::result::Result<Models, ConfigError> {
    Ok(Models::new(
        from_settings(settings)?,
        next_from_settings(settings)?,
        settings,
    ))
}

/// During a model change (`NEXT_EMBEDDING_*`), the next model's embedder,
/// routed the same way; `None` when there is no change, or with
/// `SERVICE_MODE=mock`, where both models are the mock.
pub fn next_from_settings(
    settings: &PipelineSettings,
) -> std::result::Result<Option<Arc<dyn Embedder>>, ConfigError> {
    match &settings.next_embedding {
        Some(next) if settings.services.mode != ServiceMode::Mock => routed(next, settings)
            .map(Some)
            .map_err(docpipe_core::settings::of_next_model),
        _ => Ok(None),
    }
}

fn routed(
    embedding: &EmbeddingSettings,
    settings: &PipelineSettings,
) -> std::result::Result<Arc<dyn Embedder>, ConfigError> {
    let services = &settings.services;
    let stand_in = || Arc::new(mock::MockEmbedder::new(mock::MODEL, embedding.dims));
    let configured: Arc<dyn Embedder> = match embedding.provider {
        EmbeddingProvider::Mock => {
            Arc::new(mock::MockEmbedder::new(embedding.model(), embedding.dims))
        }
        EmbeddingProvider::OpenAi | EmbeddingProvider::Azure => Arc::new(
            openai::OpenAiEmbedder::new(embedding, &settings.external)
                .map_err(|e| invalid("EMBEDDING_PROVIDER", embedding.provider, &e.to_string()))?,
        ),
        EmbeddingProvider::Local => Arc::new(local_embedder(embedding)?),
        EmbeddingProvider::Bedrock => Arc::new(
            bedrock::BedrockEmbedder::new(embedding, &settings.external)
                .map_err(|reason| invalid("EMBEDDING_MODEL", embedding.model(), &reason))?,
        ),
    };
    Ok(match services.mode {
        ServiceMode::Mock => stand_in(),
        ServiceMode::Real => configured,
        ServiceMode::Hybrid if services.production() || !configured.billable() => {
            if services.production() {
                tracing::warn!("SERVICE_MODE=hybrid never falls back to mocks in production");
            }
            configured
        }
        ServiceMode::Hybrid => Arc::new(router::FallbackEmbedder::new(configured, stand_in())),
    })
}

/// The local model `EMBEDDING_MODEL_DIR` holds, which must make vectors of
/// `EMBEDDING_DIMS`.
fn local_embedder(
    embedding: &EmbeddingSettings,
) -> std::result::Result<local::LocalEmbedder, ConfigError> {
    let dir = embedding.model_dir().ok_or_else(|| ConfigError::Missing {
        name: "EMBEDDING_MODEL_DIR".into(),
    })?;
    let embedder =
        local::LocalEmbedder::load(embedding.model(), dir, embedding.threads(), LOCAL_BATCH)
            .map_err(|e| invalid("EMBEDDING_MODEL_DIR", dir.display(), &e.reason))?;
    if embedder.dims() != embedding.dims {
        return Err(invalid(
            "EMBEDDING_DIMS",
            embedding.dims,
            &format!(
                "the model in {} makes {}-dimension vectors",
                dir.display(),
                embedder.dims()
            ),
        ));
    }
    Ok(embedder)
}
