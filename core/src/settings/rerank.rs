//! Reranking search candidates (optional): which service, its model, how
//! many candidates it sees, its price.

use super::{Secret, Settings, choice, invalid, secs};
use crate::error::ConfigError;
use serde::Deserialize;
use std::time::Duration;

choice! {
    pub enum RerankProvider from "RERANK_PROVIDER" {
        /// Hits as the search ranks them (the default).
        #[default]
        None,
        /// Any server of Cohere's `POST /v2/rerank` (Cohere, Jina, Voyage, TEI).
        Cohere,
        /// Amazon Bedrock's `Rerank` (Agent Runtime), signed with the process's role.
        Bedrock,
    }
}

/// Most candidates a search sends to the reranker.
pub const MAX_RERANK_CANDIDATES: u32 = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RerankSettings {
    /// `RERANK_PROVIDER`: none (default) or cohere.
    #[serde(rename = "rerank_provider")]
    pub provider: RerankProvider,
    /// `RERANK_BASE_URL` (https://api.cohere.com): the server, before `/v2/rerank`.
    #[serde(rename = "rerank_base_url")]
    pub base_url: String,
    /// `RERANK_API_KEY`: sent as a bearer token (a self-hosted server may need none).
    #[serde(rename = "rerank_api_key")]
    pub api_key: Option<Secret>,
    /// `RERANK_MODEL`: rerank-v3.5 for cohere; for bedrock a model id
    /// (amazon.rerank-v1:0, cohere.rerank-v3-5:0) or its ARN.
    #[serde(rename = "rerank_model")]
    model: Option<String>,
    /// `RERANK_CANDIDATES` (40, at most 100): how many of a search's best
    /// candidates are reranked (or `top_k`, if more).
    #[serde(rename = "rerank_candidates")]
    pub candidates: u32,
    /// `RERANK_TIMEOUT_SECS` (10) of each request.
    #[serde(rename = "rerank_timeout_secs", deserialize_with = "secs")]
    pub timeout: Duration,
    /// `RERANK_USD_PER_1K_SEARCHES` (2.0, Cohere's list price): the price of a
    /// thousand search units (a query with up to 100 documents).
    #[serde(rename = "rerank_usd_per_1k_searches")]
    pub usd_per_thousand_searches: f64,
}

impl Default for RerankSettings {
    fn default() -> Self {
        RerankSettings {
            provider: RerankProvider::None,
            base_url: "https://api.cohere.com".into(),
            api_key: None,
            model: None,
            candidates: 40,
            timeout: Duration::from_secs(10),
            usd_per_thousand_searches: 2.0,
        }
    }
}

impl RerankSettings {
    pub fn model(&self) -> &str {
        self.model.as_deref().unwrap_or(match self.provider {
            RerankProvider::Bedrock => "amazon.rerank-v1:0",
            RerankProvider::None | RerankProvider::Cohere => "rerank-v3.5",
        })
    }
}

impl Settings for RerankSettings {
    fn check(mut self) -> Result<Self, ConfigError> {
        if !(1..=MAX_RERANK_CANDIDATES).contains(&self.candidates) {
            return Err(invalid(
                "RERANK_CANDIDATES",
                self.candidates,
                "must be 1 to 100",
            ));
        }
        if self.usd_per_thousand_searches < 0.0 {
            return Err(invalid(
                "RERANK_USD_PER_1K_SEARCHES",
                self.usd_per_thousand_searches,
                "must not be negative",
            ));
        }
        self.base_url = self.base_url.trim_end_matches('/').to_string();
        Ok(self)
    }
}
