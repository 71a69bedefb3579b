//! The rankers' SQL: each ranker's best chunks of a tenant within a
//! search's filter (by meaning: vectors of one model nearest the query's;
//! by keywords: full-text search), and the chunks around a hit.

mod keyword;
mod vector;

pub use vector::{Scan, VectorRanker};

use crate::filter::SqlCondition;
use crate::fusion::{Ranked, Ranker};
use crate::{SearchFilter, SearchHit};
use deadpool_postgres::GenericClient;
use docpipe_core::domain::metadata::Attributes;
use docpipe_core::error::Result;
use docpipe_core::settings::KeywordMatch;
use tokio_postgres::types::ToSql;

/// The rankers of a search: by meaning (vectors of one model, nearest to
/// the query's), by keywords (the query's words, full-text search), or both.
pub struct Rankers<'a> {
    pub vector: Option<VectorRanker<'a>>,
    pub keywords: Option<(&'a str, KeywordMatch)>,
}

/// What a hit shows of its chunk ([`Candidate::from_row`] reads them).
const HIT_COLUMNS: &str = "chunk_id, document_id, source_key, chunk_index, char_start, char_end, \
                           page_start, page_end, headings, row_start, row_end, metadata, text";

/// One chunk as one ranker placed it, and what a hit shows of it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub placed: Ranked,
    /// The chunk as a hit; its score is set when the rankings are fused.
    pub hit: SearchHit,
}

impl Candidate {
    /// From a ranking's row: `rank`, `score`, `all_words`, (keyword ranker)
    /// `relevance`, then [`HIT_COLUMNS`].
    fn from_row(row: &tokio_postgres::Row, ranker: Ranker) -> Candidate {
        Candidate {
            placed: Ranked {
                chunk_id: row.get("chunk_id"),
                ranker,
                rank: row.get("rank"),
                score: row.get("score"),
                relevance: match ranker {
                    Ranker::Vector => row.get("score"),
                    Ranker::Keyword => row.get("relevance"),
                },
                all_words: row.get("all_words"),
            },
            hit: SearchHit {
                document_id: row.get("document_id"),
                source_key: row.get("source_key"),
                chunk_index: row.get("chunk_index"),
                char_start: row.get("char_start"),
                char_end: row.get("char_end"),
                page_start: row.get("page_start"),
                page_end: row.get("page_end"),
                headings: serde_json::from_value(row.get("headings")).unwrap_or_default(),
                row_start: row.get("row_start"),
                row_end: row.get("row_end"),
                metadata: match row.get("metadata") {
                    serde_json::Value::Object(attributes) => attributes,
                    _ => Attributes::new(),
                },
                text: row.get("text"),
                score: row.get("score"),
                fused_score: None,
                context: None,
            },
        }
    }
}

/// Each ranker's best `limit` chunks of `tenant` that pass `filter`, each
/// with its ranker, its rank (1 = best), the ranker's score (cosine
/// similarity; full-text rank, 0 to 1) and whether the chunk holds every
/// word of the query (keyword candidates); vector candidates first. The two rankers run at once, the keyword ranker on a
/// second connection if the pool has one free now (it never waits for one:
/// a search holding a connection and waiting for another could wait on
/// searches doing the same), else one after the other on `client`.
pub async fn candidates(
    (db, client): (&deadpool_postgres::Pool, &mut deadpool_postgres::Client),
    (tenant, scan): (&str, Scan),
    rankers: &Rankers<'_>,
    limit: u32,
    filter: &SearchFilter,
) -> Result<Vec<Candidate>> {
    let limit = i64::from(limit);
    let attributes = Within::attributes(filter);
    // Both rankers see the same chunks: the tenant's, within the filter.
    let within = Within::new(&tenant, &limit, filter, &attributes);
    let vector = async |client: &mut deadpool_postgres::Client| match &rankers.vector {
        Some(ranker) => {
            vector::vector_ranking(client, (tenant, scan), ranker, filter, &within).await
        }
        None => Ok(Vec::new()),
    };
    let keyword = async |client: &deadpool_postgres::Client| match &rankers.keywords {
        Some(keywords) => keyword::keyword_ranking(client, *keywords, &within).await,
        None => Ok(Vec::new()),
    };
    let second = match rankers {
        Rankers {
            vector: Some(_),
            keywords: Some(_),
        } => {
            let now = deadpool_postgres::Timeouts {
                wait: Some(std::time::Duration::ZERO),
                ..db.timeouts()
            };
            db.timeout_get(&now).await.ok()
        }
        _ => None,
    };
    let (vector_rows, keyword_rows) = match &second {
        Some(other) => tokio::try_join!(vector(client), keyword(other))?,
        None => (vector(client).await?, keyword(client).await?),
    };
    let placed = |ranker| move |row: &tokio_postgres::Row| Candidate::from_row(row, ranker);
    Ok(vector_rows
        .iter()
        .map(placed(Ranker::Vector))
        .chain(keyword_rows.iter().map(placed(Ranker::Keyword)))
        .collect())
}

/// The chunks a search reads: its SQL condition and the parameters it
/// names (`$1` the tenant, `$2` the ranking's limit, `$3` and `$4` the key
/// prefix and the documents, then the attribute condition's).
struct Within<'a> {
    sql: String,
    params: Vec<&'a (dyn ToSql + Sync)>,
}

impl<'a> Within<'a> {
    /// The attribute condition of `filter`, numbered after the others.
    fn attributes(filter: &SearchFilter) -> Option<SqlCondition> {
        filter
            .metadata
            .as_ref()
            .map(|condition| SqlCondition::new(condition, 5, filter.location.as_ref()))
    }

    fn new(
        tenant: &'a &'a str,
        limit: &'a i64,
        filter: &'a SearchFilter,
        attributes: &'a Option<SqlCondition>,
    ) -> Within<'a> {
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![tenant, limit, &filter.key_prefix, &filter.document_ids];
        if let Some(condition) = attributes {
            params.extend(
                condition
                    .params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync)),
            );
        }
        let sql = format!(
            "tenant = $1 AND ($3::text IS NULL OR starts_with(source_key, $3))
             AND ($4::uuid[] IS NULL OR document_id = ANY($4)) {}",
            attributes
                .as_ref()
                .map_or(String::new(), |c| format!("AND {}", c.sql))
        );
        Within { sql, params }
    }

    /// How many chunks the planner expects to pass, from the table's
    /// statistics: planning only (~0.2 ms), whatever the filter.
    async fn estimated(&self, client: &impl GenericClient) -> Result<f64> {
        // `$2`, the ranking's limit, is named so that every parameter has a type.
        let explain = format!(
            "EXPLAIN (FORMAT JSON) SELECT $2::int8 FROM upload_pipeline.document_chunks WHERE {}",
            self.sql
        );
        let plan: serde_json::Value = client.query_one(&explain, &self.params).await?.get(0);
        Ok(plan[0]["Plan"]["Plan Rows"]
            .as_f64()
            .unwrap_or(f64::INFINITY))
    }
}

/// How many of `tenant`'s chunks the planner expects `filter` to pass,
/// as the vector ranker reads it (`FILTERED_EXACT_MAX_SHARE`).
pub async fn estimated_passing(
    client: &impl GenericClient,
    tenant: &str,
    filter: &SearchFilter,
) -> Result<f64> {
    let attributes = Within::attributes(filter);
    Within::new(&tenant, &0, filter, &attributes)
        .estimated(client)
        .await
}
