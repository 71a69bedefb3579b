//! Reranking a search's best candidates with a cross-encoder service,
//! through Cohere's `POST /v2/rerank` contract (which Jina, Voyage and TEI
//! also serve). Its calls go through an [`ExternalService`] (breaker,
//! limiter, retries) and the cost ledger, like the embedder's; its answer is
//! checked before it reorders anything.

use crate::error::{Error, Rejection, Result};
use crate::external::rate_limit::RateLimiter;
use crate::external::{self, ExternalService, Failure};
use crate::settings::{ExposeSecret, ExternalPolicy, RerankProvider, RerankSettings, Secret};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::sync::Arc;

/// The candidates' new order: each as `(its index in the input, relevance)`,
/// most relevant first, every input once; and what the call was billed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reranked {
    pub order: Vec<(usize, f64)>,
    pub search_units: u64,
    pub requests: u32,
}

pub struct Reranker {
    http: reqwest::Client,
    url: String,
    api_key: Option<Secret>,
    pub model: String,
    /// How many of a search's best candidates it reranks.
    pub candidates: u32,
    pub usd_per_search_unit: f64,
    pub service: ExternalService,
}

#[derive(Serialize)]
struct RerankRequest<'a> {
    model: &'a str,
    query: &'a str,
    documents: &'a [&'a str],
}

#[derive(Deserialize)]
struct RerankResponse {
    results: Vec<RerankResult>,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct RerankResult {
    index: usize,
    relevance_score: f64,
}

#[derive(Deserialize)]
struct Meta {
    billed_units: Option<BilledUnits>,
}

#[derive(Deserialize)]
struct BilledUnits {
    search_units: Option<f64>,
}

/// The reranker the settings name, if any.
pub fn from_settings(
    settings: &RerankSettings,
    policy: &ExternalPolicy,
) -> Result<Option<Arc<Reranker>>> {
    Ok(match settings.provider {
        RerankProvider::None => None,
        RerankProvider::Cohere => Some(Arc::new(Reranker {
            http: external::http_client(settings.timeout)?,
            url: format!("{}/v2/rerank", settings.base_url),
            api_key: settings.api_key.clone(),
            model: settings.model.clone(),
            candidates: settings.candidates,
            usd_per_search_unit: settings.usd_per_thousand_searches / 1000.0,
            service: ExternalService::new(
                "rerank",
                policy,
                RateLimiter::new(None, NonZeroU32::MIN, None),
            ),
        })),
    })
}

impl Reranker {
    /// `documents` reordered by their relevance to `query`.
    pub async fn rerank(&self, query: &str, documents: &[&str]) -> Result<Reranked> {
        let mut requests = 0;
        let body = RerankRequest {
            model: &self.model,
            query,
            documents,
        };
        let (order, search_units) = self
            .service
            .call(0, || {
                requests += 1;
                let mut request = self.http.post(&self.url).json(&body);
                if let Some(key) = &self.api_key {
                    request = request.bearer_auth(key.expose_secret());
                }
                async move {
                    let (status, headers, bytes) =
                        external::send(request, "rerank request").await?;
                    if !status.is_success() {
                        let detail = String::from_utf8_lossy(&bytes).chars().take(300).collect();
                        return Err(external::status_failure(
                            status,
                            &headers,
                            detail,
                            false,
                            |m| Rejection::RerankRejected { detail: m }.into(),
                        ));
                    }
                    checked(&bytes, documents.len())
                        .map_err(|e| Failure::Unavailable(Error::Transient(e)))
                }
            })
            .await?;
        Ok(Reranked {
            order,
            search_units,
            requests,
        })
    }
}

/// The answer's order, if it keeps the contract: every index one of the
/// documents and at most once, every score a number. Documents it leaves out
/// follow, in their own order.
fn checked(body: &[u8], documents: usize) -> std::result::Result<(Vec<(usize, f64)>, u64), String> {
    let answer: RerankResponse =
        serde_json::from_slice(body).map_err(|e| format!("rerank answer off contract: {e}"))?;
    let mut seen = vec![false; documents];
    let mut order = Vec::with_capacity(documents);
    for result in &answer.results {
        if result.index >= documents || seen[result.index] || !result.relevance_score.is_finite() {
            return Err(format!(
                "rerank answer off contract: index {} score {} for {documents} documents",
                result.index, result.relevance_score
            ));
        }
        seen[result.index] = true;
        order.push((result.index, result.relevance_score));
    }
    order.extend(
        (0..documents)
            .filter(|&i| !seen[i])
            .map(|i| (i, f64::NEG_INFINITY)),
    );
    let units = answer
        .meta
        .and_then(|m| m.billed_units)
        .and_then(|b| b.search_units)
        .map_or(1, |units| units.max(0.0).ceil() as u64);
    Ok((order, units))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_checked_before_it_reorders_anything() {
        let good = br#"{"results": [{"index": 2, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}],
                        "meta": {"billed_units": {"search_units": 1}}}"#;
        let (order, units) = checked(good, 3).unwrap();
        assert_eq!(order[..2], [(2, 0.9), (0, 0.1)]);
        assert_eq!(order[2].0, 1, "a document left out follows");
        assert_eq!(units, 1);
        for bad in [
            r#"{"results": [{"index": 3, "relevance_score": 0.9}]}"#,
            r#"{"results": [{"index": 0, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.8}]}"#,
            r#"{"results": [{"index": 0}]}"#,
            r#"{"results": "#,
        ] {
            assert!(
                checked(bad.as_bytes(), 3)
                    .unwrap_err()
                    .contains("off contract"),
                "{bad}"
            );
        }
        let no_meta = br#"{"results": []}"#;
        assert_eq!(
            checked(no_meta, 1).unwrap().1,
            1,
            "a call is a search unit at least"
        );
    }
}
