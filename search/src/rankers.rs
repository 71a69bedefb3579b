//! The rankers' SQL: each ranker's best chunks of a tenant within a
//! search's filter (by meaning: vectors of one model nearest the query's;
//! by keywords: full-text search), and the chunks around a hit.

use crate::SearchFilter;
use crate::context::Nearby;
use crate::filter::SqlCondition;
use deadpool_postgres::GenericClient;
use docpipe_core::error::{Error, Result};
use docpipe_core::settings::{KeywordMatch, VectorIndex};
use pgvector::Vector;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// The rankers of a search: by meaning (vectors of one model, nearest to
/// the query's), by keywords (the query's words, full-text search), or both.
pub struct Rankers<'a> {
    pub vector: Option<VectorRanker<'a>>,
    pub keywords: Option<(&'a str, KeywordMatch)>,
}

/// The query's vector, and the model, column (of `dims` values) and index
/// of the vectors it is near.
pub struct VectorRanker<'a> {
    pub model: &'a str,
    pub column: &'a str,
    pub dims: usize,
    pub index: VectorIndex,
    pub query: &'a Vector,
}

/// With a binary index, how many times `limit` chunks the bits' nearest
/// hold for re-ranking by the vectors: recall@10 0.973 on real vectors
/// (docs/benchmarks/halfvec.md).
const BINARY_OVERSAMPLING: i64 = 10;

/// How the vector ranker scans.
#[derive(Debug, Clone, Copy)]
pub struct Scan {
    /// `hnsw.ef_search`: the HNSW scan's candidate list.
    pub ef_search: u32,
    /// A tenant of at most this many chunks, or a filter passing at most
    /// this many and few of all chunks ([`FILTERED_EXACT_MAX_SHARE`]), is
    /// searched exactly, through the tenant index (~9 ms for 9 000 chunks of
    /// 384 dims) or the filter's; for a larger one the planner chooses (HNSW
    /// with its filters, as a rule). Alone, it picked HNSW for a 10 000-chunk
    /// tenant of a 1 M-row table: recall 0.31 in 88 ms
    /// (docs/benchmarks/search-speed.md).
    pub exact_max_chunks: i64,
}

/// What a hit shows of its chunk.
const HIT_COLUMNS: &str = "chunk_id, document_id, source_key, chunk_index, char_start, char_end, \
                           page_start, page_end, headings, row_start, row_end, metadata, text";

/// Each ranker's best `limit` chunks of `tenant` that pass `filter`, each row
/// with its `ranker` (`vector`, `keyword`), its `rank` (1 = best), the
/// ranker's `score` (cosine similarity; full-text rank, 0 to 1) and whether
/// the chunk holds every word of the query (`all_words`, keyword rows);
/// vector rows first. The two rankers run at once, the keyword ranker on a
/// second connection if the pool has one free now (it never waits for one:
/// a search holding a connection and waiting for another could wait on
/// searches doing the same), else one after the other on `client`.
pub async fn candidates(
    (db, client): (&deadpool_postgres::Pool, &mut deadpool_postgres::Client),
    (tenant, scan): (&str, Scan),
    rankers: &Rankers<'_>,
    limit: u32,
    filter: &SearchFilter,
) -> Result<Vec<tokio_postgres::Row>> {
    let limit = i64::from(limit);
    let attributes = Within::attributes(filter);
    // Both rankers see the same chunks: the tenant's, within the filter.
    let within = Within::new(&tenant, &limit, filter, &attributes);
    let vector = async |client: &mut deadpool_postgres::Client| match &rankers.vector {
        Some(ranker) => vector_ranking(client, (tenant, scan), ranker, filter, &within).await,
        None => Ok(Vec::new()),
    };
    let keyword = async |client: &deadpool_postgres::Client| match &rankers.keywords {
        Some(keywords) => keyword_ranking(client, *keywords, &within).await,
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
    let (mut rows, keyword_rows) = match &second {
        Some(other) => tokio::try_join!(vector(client), keyword(other))?,
        None => (vector(client).await?, keyword(client).await?),
    };
    rows.extend(keyword_rows);
    Ok(rows)
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
            .map(|condition| SqlCondition::new(condition, 5))
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
/// as the vector ranker reads it ([`FILTERED_EXACT_MAX_SHARE`]).
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

/// The vector ranker's rows (see [`candidates`]).
async fn vector_ranking(
    client: &mut deadpool_postgres::Client,
    (tenant, scan): (&str, Scan),
    ranker: &VectorRanker<'_>,
    filter: &SearchFilter,
    within: &Within<'_>,
) -> Result<Vec<tokio_postgres::Row>> {
    let VectorRanker {
        model,
        column,
        dims,
        index,
        query,
    } = ranker;
    let small = few_to_search(client, (tenant, scan), filter, within).await?;
    let mut params = within.params.clone();
    params.push(model);
    let model = params.len();
    params.push(*query);
    let vector = params.len();
    let within = &within.sql;
    // ORDER BY the indexed distance itself and LIMIT: the shape the HNSW
    // index serves. The query is a `vector`; on `halfvec` storage it is
    // cast (implicitly, once) to the column's type, so the index serves
    // that too. A binary index's nearest are re-ranked by the vectors.
    // A small tenant's distance is written so that no index serves it
    // (`+ 0`): its rows come through the tenant index, all of them.
    let exact = if small { " + 0" } else { "" };
    let nearest = if *index == VectorIndex::Binary && !small {
        format!(
            "SELECT {HIT_COLUMNS}, {column} <=> ${vector}::vector AS distance
               FROM (SELECT {HIT_COLUMNS}, {column} FROM upload_pipeline.document_chunks
                      WHERE {within} AND model = ${model}
                      ORDER BY binary_quantize({column})::bit({dims})
                               <~> binary_quantize(${vector}::vector)::bit({dims})
                      LIMIT $2::int8 * {BINARY_OVERSAMPLING}) by_bits
              ORDER BY distance LIMIT $2"
        )
    } else {
        format!(
            "SELECT {HIT_COLUMNS}, {column} <=> ${vector}::vector AS distance
               FROM upload_pipeline.document_chunks
              WHERE {within} AND model = ${model}
              ORDER BY ({column} <=> ${vector}::vector){exact} LIMIT $2"
        )
    };
    let sql = format!(
        "SELECT 'vector' AS ranker, row_number() OVER (ORDER BY distance) AS rank,
                1 - distance AS score, false AS all_words, {HIT_COLUMNS}
           FROM ({nearest}) nearest
          ORDER BY rank"
    );
    let tx = client.transaction().await?;
    // The filters run inside the HNSW scan; iterative scans keep going until
    // enough of this tenant's rows that pass them are found.
    tx.execute(
        "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
                set_config('hnsw.ef_search', $1, true)",
        &[&scan.ef_search.to_string()],
    )
    .await?;
    let rows = tx.query(&sql, &params).await?;
    tx.commit().await?;
    Ok(rows)
}

/// The keyword ranker's rows (see [`candidates`]): chunks holding every
/// word first; the score is half for that and half the rank (0–1 both), so
/// it falls with the order.
async fn keyword_ranking(
    client: &deadpool_postgres::Client,
    (text, matching): (&str, KeywordMatch),
    within: &Within<'_>,
) -> Result<Vec<tokio_postgres::Row>> {
    let mut params = within.params.clone();
    params.push(&text);
    let (words, rank) = keyword_query(text, matching, params.len());
    let (within, n) = (&within.sql, params.len());
    let sql = format!(
        "SELECT 'keyword' AS ranker,
                row_number() OVER (ORDER BY all_words DESC, text_rank DESC, chunk_id) AS rank,
                (all_words::int + text_rank) / 2 AS score, all_words, {HIT_COLUMNS}
           FROM (SELECT {HIT_COLUMNS}, {rank}(text_search, words, 32)::float8 AS text_rank,
                        text_search @@ websearch_to_tsquery({TEXT_CONFIG}, ${n}) AS all_words
                   FROM upload_pipeline.document_chunks, (SELECT {words} AS words) query
                  WHERE {within} AND text_search @@ words
                  ORDER BY all_words DESC, text_rank DESC, chunk_id LIMIT $2) matching
          ORDER BY rank"
    );
    Ok(client.query(&sql, &params).await?)
}

/// A filter the planner estimates to pass at most this share of all chunks
/// (and at most `SEARCH_EXACT_MAX_CHUNKS`) is answered exactly. HNSW's
/// iterative scan visits ~candidates ÷ share rows, so its cost grows as the
/// share falls, while an exact answer reads the passing rows. Measured
/// (docs/benchmarks/search-speed.md): 1 250 of 100 000 (1.25 %) exact 12 ms against
/// HNSW's 38–44 at recall 0.51–0.58; 7 500 of 100 000 (7.5 %) exact 65 ms
/// against HNSW's 13–29; 12 500 of 1 M (1.25 %) HNSW 77 ms at recall 0.23.
const FILTERED_EXACT_MAX_SHARE: f64 = 0.02;

/// Whether the chunks a vector ranking reads are few enough to read them
/// all (an exact answer): the tenant holds at most `scan.exact_max_chunks`
/// (counted, bounded), or its filter passes few of all chunks
/// ([`FILTERED_EXACT_MAX_SHARE`], the planner's estimate from the
/// statistics: counting what a filter passes could read the whole tenant).
/// Alone, the planner walked the graph for 200 of a tenant's 20 000 chunks
/// that a folder, a document list or an attribute passed, and missed some of
/// the 10 nearest (`tests/filters.rs`).
async fn few_to_search(
    client: &deadpool_postgres::Client,
    (tenant, scan): (&str, Scan),
    filter: &SearchFilter,
    within: &Within<'_>,
) -> Result<bool> {
    let count_params: [&(dyn ToSql + Sync); 2] = [&tenant, &scan.exact_max_chunks];
    let count = client.query_one(
        "SELECT count(*) <= $2::int8 FROM (SELECT FROM upload_pipeline.document_chunks
                                             WHERE tenant = $1 LIMIT $2::int8 + 1) tenant",
        &count_params,
    );
    if !filter.narrows() {
        return Ok(count.await?.get(0));
    }
    let all = client.query_one(
        "SELECT reltuples::float8 FROM pg_class
          WHERE oid = 'upload_pipeline.document_chunks'::regclass",
        &[],
    );
    // In one round trip: the client pipelines requests polled together.
    let (count, passing, all) = tokio::try_join!(
        async { Ok::<_, Error>(count.await?) },
        within.estimated(client),
        async { Ok(all.await?) }
    )?;
    // `reltuples` is -1 before the table's first analysis: then never.
    let few = passing <= scan.exact_max_chunks as f64
        && passing <= all.get::<_, f64>(0) * FILTERED_EXACT_MAX_SHARE;
    Ok(count.get::<_, bool>(0) || few)
}

/// The keyword ranker's query of `text` (parameter `$n`), and its ranking
/// function (both normalized to 0–1 by `32`). Any word: the query's words
/// joined by `|` (its `&`s made `|`s; lexemes never hold spaces), ranked by
/// how much of the query a chunk holds; every word, as `websearch_to_tsquery`
/// reads it, ranked by how close together a chunk holds them.
fn keyword_query(text: &str, matching: KeywordMatch, n: usize) -> (String, &'static str) {
    match matching {
        KeywordMatch::Any if !uses_operators(text) => (
            format!("replace(plainto_tsquery({TEXT_CONFIG}, ${n})::text, ' & ', ' | ')::tsquery"),
            "ts_rank",
        ),
        _ => (
            format!("websearch_to_tsquery({TEXT_CONFIG}, ${n})"),
            "ts_rank_cd",
        ),
    }
}

/// The text-search configuration chunks were indexed with.
const TEXT_CONFIG: &str = "upload_pipeline.text_search_config()";

/// Whether `text` uses `websearch_to_tsquery`'s operators: a quoted phrase,
/// an excluded `-word`, `or`. Its writer wants them read.
fn uses_operators(text: &str) -> bool {
    text.contains('"')
        || text
            .split_whitespace()
            .any(|word| word.starts_with('-') || word.eq_ignore_ascii_case("or"))
}

/// The chunks of `tenant` in each window `(document, first index, last
/// index)`, as a hit's context is made of.
pub async fn nearby(
    client: &impl GenericClient,
    tenant: &str,
    windows: &[(Uuid, i32, i32)],
) -> Result<Vec<(Uuid, Nearby)>> {
    let documents: Vec<Uuid> = windows.iter().map(|w| w.0).collect();
    let firsts: Vec<i32> = windows.iter().map(|w| w.1).collect();
    let lasts: Vec<i32> = windows.iter().map(|w| w.2).collect();
    Ok(client
        .query(
            "SELECT DISTINCT c.document_id, c.chunk_index, c.text, c.char_start, c.char_end,
                    c.token_count, c.headings
               FROM upload_pipeline.document_chunks c
               JOIN unnest($2::uuid[], $3::int4[], $4::int4[]) AS w(document_id, first, last)
                 ON c.document_id = w.document_id AND c.chunk_index BETWEEN w.first AND w.last
              WHERE c.tenant = $1",
            &[&tenant, &documents, &firsts, &lasts],
        )
        .await?
        .iter()
        .map(|row| {
            let chunk = Nearby {
                chunk_index: row.get(1),
                text: row.get(2),
                char_start: row.get(3),
                char_end: row.get(4),
                tokens: row.get(5),
                headings: serde_json::from_value(row.get(6)).unwrap_or_default(),
            };
            (row.get(0), chunk)
        })
        .collect())
}
