//! Tenant-scoped similarity search over `document_chunks`, narrowed by a
//! key prefix, document ids and metadata filters (`filter`).

pub mod context;
pub mod eval;
pub mod filter;
pub mod fusion;
mod query;
pub mod rankers;
pub mod rerank;

use crate::rerank::Reranker;
use context::{ContextRequest, HitContext};
use deadpool_postgres::Pool;
use docpipe_core::cost::{self, Allowance, Bill};
use docpipe_core::domain::keys::Tenant;
use docpipe_core::domain::metadata::Attributes;
use docpipe_core::embedding::models::Models;
use docpipe_core::error::{ConfigError, Result};
use docpipe_core::external::ExternalService;
use docpipe_core::settings::{CostPolicy, KeywordMatch, PipelineSettings, VectorIndex, invalid};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SearchHit {
    pub document_id: Uuid,
    pub source_key: String,
    pub chunk_index: i32,
    /// How well it matches, 0 to 1, higher is better, the same scale for
    /// every query (a threshold means the same whatever was asked): the
    /// cosine similarity of the chunk's vector to the query's (below 0 as
    /// 0), or the keyword score (half for holding every word, half the
    /// full-text rank), whichever ranker found it and scored it higher;
    /// when a reranker reorders the hits, its relevance score.
    pub score: f64,
    /// In `hybrid` mode, the reciprocal rank fusion's score the hits are
    /// ordered by ([`fusion`]): it compares hits of one query only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fused_score: Option<f64>,
    pub char_start: i32,
    pub char_end: i32,
    /// The pages (slides, sheets) the chunk is on, if the document has pages.
    pub page_start: Option<i32>,
    pub page_end: Option<i32>,
    /// The titles of the headings above the chunk, outermost first.
    pub headings: Vec<String>,
    /// The table rows the chunk holds, for spreadsheets and CSV.
    pub row_start: Option<i32>,
    pub row_end: Option<i32>,
    /// The document's metadata attributes (its sidecar's, its object's).
    pub metadata: Attributes,
    pub text: String,
    /// The text around the hit, when the search asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<HitContext>,
}

/// Narrows a search to some of the tenant's documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Only keys starting with this (a folder, say).
    pub key_prefix: Option<String>,
    /// Only these documents.
    pub document_ids: Option<Vec<Uuid>>,
    /// Only chunks whose attributes pass this.
    pub metadata: Option<filter::Condition>,
    /// Where the chunks' objects are, for Bedrock's attributes of them.
    pub location: Option<Location>,
}

/// Where a tenant's objects are, as Bedrock's results and filters name
/// them (`x-amz-bedrock-kb-source-uri`, `x-amz-bedrock-kb-data-source-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// `s3://bucket/`: a chunk's source URI is this and its key.
    pub source_uri_prefix: String,
    /// The knowledge base's data source the chunks are read from.
    pub data_source_id: String,
}

impl SearchFilter {
    /// Whether it passes fewer than all of the tenant's chunks.
    pub fn narrows(&self) -> bool {
        self.key_prefix.is_some() || self.document_ids.is_some() || self.metadata.is_some()
    }
}

/// Most document ids one search may name.
pub const MAX_FILTER_IDS: usize = 100;

/// A search request's `filter` as a caller gives it (the API's body, the
/// CLI's `--filter`): `key_prefix`, `document_ids`, and at most one operator
/// of the metadata grammar beside them, all applying together.
#[derive(Debug, Default, Deserialize)]
pub struct FilterRequest {
    /// A folder or name prefix under the caller's folder (`reports/2026/`).
    key_prefix: Option<String>,
    document_ids: Option<Vec<Uuid>>,
    /// The rest: a metadata filter's operator.
    #[serde(flatten)]
    condition: serde_json::Map<String, serde_json::Value>,
}

impl FilterRequest {
    /// The filter inside `tenant`'s folder: a prefix can never reach another
    /// tenant's keys. Its problem, named, if it breaks a rule.
    pub fn scoped(self, tenant: &Tenant) -> std::result::Result<SearchFilter, String> {
        if let Some(ids) = &self.document_ids
            && !(1..=MAX_FILTER_IDS).contains(&ids.len())
        {
            return Err(format!(
                "filter.document_ids must name 1 to {MAX_FILTER_IDS} documents"
            ));
        }
        if let Some(prefix) = &self.key_prefix
            && prefix.chars().any(char::is_control)
        {
            return Err(
                "filter.key_prefix must not contain control characters (NUL, newlines…)".into(),
            );
        }
        Ok(SearchFilter {
            key_prefix: self.key_prefix.map(|prefix| tenant.upload_path(&prefix)),
            document_ids: self.document_ids,
            metadata: filter::Condition::from_members(&self.condition, "filter")?,
            location: None,
        })
    }
}

/// How hits are ranked.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::Display,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum SearchMode {
    /// Both rankings, fused by reciprocal rank ([`fusion`]).
    #[default]
    Hybrid,
    /// Nearest by meaning: the query's embedding against the chunks'.
    Vector,
    /// Postgres full-text search: chunks holding every word of the query
    /// (`websearch_to_tsquery`: `"quoted phrases"`, `or`, `-excluded`).
    Keyword,
}

/// A search: its text, how many hits, how they are ranked and narrowed.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub text: &'a str,
    pub top_k: u32,
    pub mode: SearchMode,
    pub filter: &'a SearchFilter,
    /// Text around each hit to return with it.
    pub context: Option<ContextRequest>,
    /// Whether the reranker, if one is configured, reorders the hits (a
    /// caller may save its cost).
    pub rerank: bool,
}

impl Query<'_> {
    /// The chunk rows the search reads and answers with at most: each hit
    /// and the context around it. What it costs the database and the wire.
    pub fn rows(&self) -> u64 {
        let per_hit = self
            .context
            .map_or(1, |context| 1 + 2 * context.reach().max(0) as u64);
        u64::from(self.top_k) * per_hit
    }
}

/// Each ranker of a hybrid search offers this many candidates (or `top_k`,
/// if more) to the fusion. 10, 20 and 40 rank the quality bench's queries
/// alike at `top_k` 10 (MRR@10 within 0.001); 20 keeps a chunk that one
/// ranker places 11th–20th in the fusion, and a filtered search's HNSW scan
/// finds half as many passing rows as with 40 (docs/benchmarks/search-speed.md).
const HYBRID_CANDIDATES: u32 = 20;

/// What a search uses: the models that embed the query, the reranker if one
/// is configured, and how the rankers scan.
#[derive(Clone)]
pub struct SearchParts {
    /// The deployment's model, during a model change the next one too, and
    /// the prices and budgets their paid calls count against.
    pub models: Models,
    pub reranker: Option<Arc<Reranker>>,
    /// `SEARCH_EF_SEARCH`, `SEARCH_EXACT_MAX_CHUNKS`: how the vector ranker scans.
    pub scan: rankers::Scan,
    /// `SEARCH_KEYWORD_MATCH`: the keyword ranker's chunks.
    pub keyword_match: KeywordMatch,
    /// `EMBEDDING_INDEX`: the kind of index the vector ranker reads through.
    pub vector_index: VectorIndex,
}

impl SearchParts {
    /// Search with `models`, and the reranker and scan `settings` name; a
    /// reranker that cannot be built names its setting.
    pub fn new(
        settings: &PipelineSettings,
        models: Models,
    ) -> std::result::Result<SearchParts, ConfigError> {
        let reranker = match &settings.rerank {
            Some(rerank) => crate::rerank::from_settings(rerank, &settings.external)
                .map_err(|e| invalid("RERANK_PROVIDER", rerank.provider, &e.to_string()))?,
            None => None,
        };
        let search = settings.search.clone().unwrap_or_default();
        Ok(SearchParts {
            models,
            reranker,
            scan: rankers::Scan {
                ef_search: search.search_ef_search,
                exact_max_chunks: search.search_exact_max_chunks.into(),
            },
            keyword_match: search.search_keyword_match,
            vector_index: settings.database.vector_index,
        })
    }

    /// The external services search and embedding call: the embedders', the
    /// reranker's.
    pub fn services(&self) -> Vec<&ExternalService> {
        let mut services = self.models.services();
        services.extend(self.reranker.iter().map(|reranker| &reranker.service));
        services
    }
}

/// The `top_k` chunks of `tenant` that best match `query` and pass its
/// filter, reranked when a reranker is configured. Vector ranking reads
/// vectors of the embedder's model only; the query's embedding and the
/// reranking are paid calls like any other: refused (`Error::Waiting`) while
/// the tenant's or the deployment's spending is stopped, and recorded in the
/// ledger. Keyword search embeds nothing.
pub async fn search(
    db: &Pool,
    parts: &SearchParts,
    tenant: &str,
    query: &Query<'_>,
) -> Result<Vec<SearchHit>> {
    let mut limit = match query.mode {
        SearchMode::Hybrid => query.top_k.max(HYBRID_CANDIDATES),
        _ => query.top_k,
    };
    let reranker = parts.reranker.as_ref().filter(|_| query.rerank);
    if let Some(reranker) = reranker {
        limit = limit.max(reranker.candidates);
    }
    let policy = &parts.models.cost;
    let mut asked = 0;
    let mut candidates = loop {
        asked += 1;
        // No connection is held across the query's embedding, which takes
        // connections of its own: searches holding one each and waiting for
        // another would stall every search once they were as many as the pool.
        let serving = parts.models.serving(&db.get().await?, tenant).await?;
        let query_vector = match query.mode {
            SearchMode::Keyword => None,
            SearchMode::Vector | SearchMode::Hybrid => Some(
                query::embed_query(db, serving.embedder, serving.cost, tenant, query.text).await?,
            ),
        };
        let mut client = db.get().await?;
        let slot = parts.models.slot(&client, serving.embedder).await?;
        let rankers = rankers::Rankers {
            vector: query_vector.as_ref().map(|query| rankers::VectorRanker {
                slot: &slot,
                index: parts.vector_index,
                query,
            }),
            keywords: query::ranked_by_keywords(query.mode, query.text)
                .then_some((query::keyword_text(query.text), parts.keyword_match)),
        };
        let found = rankers::candidates(
            (db, &mut client),
            (tenant, parts.scan),
            &rankers,
            limit,
            query.filter,
        )
        .await?;
        // A model change may have switched the tenant's vectors meanwhile:
        // then the vector ranking read none; ask again with the new model.
        let switched = query_vector.is_some()
            && parts.models.next.is_some()
            && asked == 1
            && parts
                .models
                .serving(&client, tenant)
                .await?
                .embedder
                .model()
                != serving.embedder.model();
        if !switched {
            break found;
        }
    };
    let ranked: Vec<fusion::Ranked> = candidates.iter().map(|c| c.placed.clone()).collect();
    let hybrid = query.mode == SearchMode::Hybrid;
    let mut hits: Vec<SearchHit> = fusion::fuse(&ranked, limit as usize)
        .into_iter()
        .map(|fused| SearchHit {
            score: fused.relevance,
            fused_score: hybrid.then_some(fused.order),
            // Each chunk's first candidate is taken once.
            ..std::mem::take(&mut candidates[fused.index].hit)
        })
        .collect();
    if let Some(reranker) = reranker
        && !hits.is_empty()
    {
        hits.truncate(reranker.candidates.max(query.top_k) as usize);
        hits = rerank(db, reranker, policy, tenant, query.text, hits).await?;
    }
    hits.truncate(query.top_k as usize);
    if let Some(request) = query.context {
        context::add(db, tenant, &mut hits, request).await?;
    }
    Ok(hits)
}

/// `hits` in the reranker's order, each scored with its relevance; the call
/// checked against the tenant's allowance and recorded in the ledger.
async fn rerank(
    db: &Pool,
    reranker: &Reranker,
    policy: &CostPolicy,
    tenant: &str,
    text: &str,
    hits: Vec<SearchHit>,
) -> Result<Vec<SearchHit>> {
    let documents: Vec<&str> = hits.iter().map(|hit| hit.text.as_str()).collect();
    let estimate = cost::Spend {
        tenant,
        job_id: None,
        service: reranker.service.name,
        model: &reranker.model,
        units: 1,
        unit: "search_units",
        usd: reranker.usd_per_search_unit,
        requests: 1,
    };
    let reranking = reranker.rerank(text, &documents);
    let allowance = Allowance::Tenant(tenant);
    let reranked = cost::pay(db, policy, allowance, &[estimate], reranking, |r| Bill {
        service: reranker.service.name,
        model: reranker.model.clone(),
        units: r.search_units as i64,
        usd: r.search_units as f64 * reranker.usd_per_search_unit,
        requests: r.requests,
    })
    .await?;
    let mut hits: Vec<Option<SearchHit>> = hits.into_iter().map(Some).collect();
    Ok(reranked
        .order
        .into_iter()
        .filter_map(|(index, relevance)| {
            let mut hit = hits[index].take()?;
            hit.score = if relevance.is_finite() {
                relevance.clamp(0.0, 1.0)
            } else {
                0.0
            };
            Some(hit)
        })
        .collect())
}
