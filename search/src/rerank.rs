//! Reranking a search's best candidates with a cross-encoder service:
//! through Cohere's `POST /v2/rerank` contract (which Jina, Voyage and TEI
//! also serve), or Amazon Bedrock's `Rerank` signed with the process's role.
//! Its calls go through an [`ExternalService`] (breaker, limiter, retries)
//! and the cost ledger, like the embedder's; its answer is checked before it
//! reorders anything.

use docpipe_core::error::{Error, Rejection, Result};
use docpipe_core::external::rate_limit::RateLimiter;
use docpipe_core::external::{self, ExternalService, Failure};
use docpipe_core::settings::{
    ExposeSecret, ExternalPolicy, RerankProvider, RerankSettings, Secret,
};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The candidates' new order: each as `(its index in the input, relevance)`,
/// most relevant first, every input once; and what the call was billed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reranked {
    pub order: Vec<(usize, f64)>,
    pub search_units: u64,
    pub requests: u32,
}

/// How the reranker is reached.
enum Transport {
    /// Cohere's `POST /v2/rerank`.
    Cohere {
        http: reqwest::Client,
        url: String,
        api_key: Option<Secret>,
    },
    /// Bedrock Agent Runtime's `Rerank`; the client is built on the first
    /// call (the SDK's configuration loads asynchronously).
    Bedrock {
        client: OnceCell<(aws_sdk_bedrockagentruntime::Client, String)>,
    },
}

/// Bedrock bills a rerank by query, each of up to this many documents.
const BEDROCK_DOCUMENTS_PER_QUERY: usize = 100;

pub struct Reranker {
    transport: Transport,
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
    let transport = match settings.provider {
        RerankProvider::None => return Ok(None),
        RerankProvider::Cohere => Transport::Cohere {
            http: external::http_client(settings.timeout)?,
            url: format!("{}/v2/rerank", settings.base_url),
            api_key: settings.api_key.clone(),
        },
        RerankProvider::Bedrock => Transport::Bedrock {
            client: OnceCell::new(),
        },
    };
    Ok(Some(Arc::new(Reranker {
        transport,
        model: settings.model().to_string(),
        candidates: settings.candidates,
        usd_per_search_unit: settings.usd_per_thousand_searches / 1000.0,
        service: ExternalService::new(
            "rerank",
            policy,
            RateLimiter::new(None, NonZeroU32::MIN, None),
        ),
    })))
}

impl Reranker {
    /// `documents` reordered by their relevance to `query`.
    pub async fn rerank(&self, query: &str, documents: &[&str]) -> Result<Reranked> {
        let mut requests = 0;
        let (order, search_units) = self
            .service
            .call(0, || {
                requests += 1;
                self.attempt(query, documents)
            })
            .await?;
        Ok(Reranked {
            order,
            search_units,
            requests,
        })
    }

    /// One call: the order and the search units billed.
    async fn attempt(
        &self,
        query: &str,
        documents: &[&str],
    ) -> std::result::Result<(Vec<(usize, f64)>, u64), Failure> {
        let (http, url, api_key) = match &self.transport {
            Transport::Cohere { http, url, api_key } => (http, url, api_key),
            Transport::Bedrock { client } => return self.bedrock(client, query, documents).await,
        };
        let body = RerankRequest {
            model: &self.model,
            query,
            documents,
        };
        let mut request = http.post(url).json(&body);
        if let Some(key) = api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let (status, headers, bytes) = external::send(request, "rerank request").await?;
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
        checked(&bytes, documents.len()).map_err(|e| Failure::Unavailable(Error::Transient(e)))
    }

    async fn bedrock(
        &self,
        client: &OnceCell<(aws_sdk_bedrockagentruntime::Client, String)>,
        query: &str,
        documents: &[&str],
    ) -> std::result::Result<(Vec<(usize, f64)>, u64), Failure> {
        use aws_sdk_bedrockagentruntime::types::{
            BedrockRerankingConfiguration, BedrockRerankingModelConfiguration, RerankDocument,
            RerankDocumentType, RerankQuery, RerankQueryContentType, RerankSource,
            RerankSourceType, RerankTextDocument, RerankingConfiguration,
            RerankingConfigurationType,
        };
        let (client, model_arn) = client
            .get_or_init(|| async {
                let sdk = docpipe_aws::sdk::sdk_config_without_retries().await;
                // An id names a foundation model of the client's region.
                let model_arn = if self.model.starts_with("arn:") {
                    self.model.clone()
                } else {
                    let region = sdk.region().map_or("us-east-1", |r| r.as_ref());
                    docpipe_aws::sdk::foundation_model_arn(region, &self.model)
                };
                (aws_sdk_bedrockagentruntime::Client::new(&sdk), model_arn)
            })
            .await;
        let built = |e: aws_sdk_bedrockagentruntime::error::BuildError| {
            Failure::Rejected(
                Rejection::RerankRejected {
                    detail: e.to_string(),
                }
                .into(),
            )
        };
        let text = |text: &str| RerankTextDocument::builder().text(text).build();
        let mut request = client
            .rerank()
            .queries(
                RerankQuery::builder()
                    .r#type(RerankQueryContentType::Text)
                    .text_query(text(query))
                    .build()
                    .map_err(built)?,
            )
            .reranking_configuration(
                RerankingConfiguration::builder()
                    .r#type(RerankingConfigurationType::BedrockRerankingModel)
                    .bedrock_reranking_configuration(
                        BedrockRerankingConfiguration::builder()
                            .number_of_results(documents.len() as i32)
                            .model_configuration(
                                BedrockRerankingModelConfiguration::builder()
                                    .model_arn(model_arn)
                                    .build()
                                    .map_err(built)?,
                            )
                            .build(),
                    )
                    .build()
                    .map_err(built)?,
            );
        for document in documents {
            let source = RerankDocument::builder()
                .r#type(RerankDocumentType::Text)
                .text_document(text(document))
                .build()
                .map_err(built)?;
            request = request.sources(
                RerankSource::builder()
                    .r#type(RerankSourceType::Inline)
                    .inline_document_source(source)
                    .build()
                    .map_err(built)?,
            );
        }
        let output = request.send().await.map_err(|e| {
            docpipe_aws::sdk::bedrock_failure(&e.into_service_error(), |detail| {
                Rejection::RerankRejected { detail }.into()
            })
        })?;
        let results = output
            .results()
            .iter()
            .map(|r| (i64::from(r.index()), f64::from(r.relevance_score())));
        let order = ordered(results, documents.len())
            .map_err(|e| Failure::Unavailable(Error::Transient(e)))?;
        let units = documents.len().div_ceil(BEDROCK_DOCUMENTS_PER_QUERY).max(1);
        Ok((order, units as u64))
    }
}

/// The answer's order, if it keeps the contract: every index one of the
/// documents and at most once, every score a number. Documents it leaves out
/// follow, in their own order.
fn checked(body: &[u8], documents: usize) -> std::result::Result<(Vec<(usize, f64)>, u64), String> {
    let answer: RerankResponse =
        serde_json::from_slice(body).map_err(|e| format!("rerank answer off contract: {e}"))?;
    let results = answer
        .results
        .iter()
        .map(|r| (r.index as i64, r.relevance_score));
    let order = ordered(results, documents)?;
    let units = answer
        .meta
        .and_then(|m| m.billed_units)
        .and_then(|b| b.search_units)
        .map_or(1, |units| units.max(0.0).ceil() as u64);
    Ok((order, units))
}

/// `(index, score)` pairs as an order, if every index is one of the
/// documents and appears once, and every score is a number; documents left
/// out follow, in their own order.
fn ordered(
    results: impl Iterator<Item = (i64, f64)>,
    documents: usize,
) -> std::result::Result<Vec<(usize, f64)>, String> {
    let mut seen = vec![false; documents];
    let mut order = Vec::with_capacity(documents);
    for (index, score) in results {
        let slot = usize::try_from(index).ok().filter(|&i| i < documents);
        match slot {
            Some(i) if !seen[i] && score.is_finite() => {
                seen[i] = true;
                order.push((i, score));
            }
            _ => {
                return Err(format!(
                    "rerank answer off contract: index {index} score {score} for {documents} documents"
                ));
            }
        }
    }
    order.extend(
        (0..documents)
            .filter(|&i| !seen[i])
            .map(|i| (i, f64::NEG_INFINITY)),
    );
    Ok(order)
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
