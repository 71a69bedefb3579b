//! The vector ranker: the chunks nearest the query's vector, through the
//! HNSW index, or exactly when the chunks to read are few.

use super::{HIT_COLUMNS, Within};
use crate::SearchFilter;
use docpipe_core::embedding::models::VectorSlot;
use docpipe_core::error::{Error, Result};
use docpipe_core::settings::VectorIndex;
use pgvector::Vector;
use tokio_postgres::types::ToSql;

/// The query's vector, where the vectors it is near are kept, and their index.
pub struct VectorRanker<'a> {
    pub slot: &'a VectorSlot,
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

/// The vector ranker's rows (see [`candidates`]).
pub(super) async fn vector_ranking(
    client: &mut deadpool_postgres::Client,
    (tenant, scan): (&str, Scan),
    ranker: &VectorRanker<'_>,
    filter: &SearchFilter,
    within: &Within<'_>,
) -> Result<Vec<tokio_postgres::Row>> {
    let VectorRanker { slot, index, query } = ranker;
    let VectorSlot {
        model,
        column,
        dims,
    } = slot;
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
        "SELECT row_number() OVER (ORDER BY distance) AS rank,
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
/// the 10 nearest (`tests/postgres/filters.rs`).
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
