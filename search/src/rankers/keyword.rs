//! The keyword ranker: Postgres full-text search over the chunks.

use super::{HIT_COLUMNS, Within};
use docpipe_core::error::Result;
use docpipe_core::settings::KeywordMatch;

/// The keyword ranker's rows (see [`candidates`]): chunks holding every
/// word first; the score is half for that and half the rank (0–1 both), so
/// it falls with the order. The relevance is the share of the query's
/// words (lexemes) the chunk holds: 1 for a chunk holding them all, the
/// same for every query, where the rank's scale depends on the query's
/// length.
pub(super) async fn keyword_ranking(
    client: &deadpool_postgres::Client,
    (text, matching): (&str, KeywordMatch),
    within: &Within<'_>,
) -> Result<Vec<tokio_postgres::Row>> {
    let mut params = within.params.clone();
    params.push(&text);
    let (words, rank) = keyword_query(text, matching, params.len());
    let (within, n) = (&within.sql, params.len());
    let sql = format!(
        "SELECT row_number() OVER (ORDER BY all_words DESC, text_rank DESC, chunk_id) AS rank,
                (all_words::int + text_rank) / 2 AS score, all_words,
                cardinality(ARRAY(SELECT unnest(tsvector_to_array(text_search))
                                  INTERSECT SELECT unnest(query_words)))::float8
                  / greatest(cardinality(query_words), 1) AS relevance,
                {HIT_COLUMNS}
           FROM (SELECT {HIT_COLUMNS}, text_search,
                        {rank}(text_search, words, 32)::float8 AS text_rank,
                        text_search @@ websearch_to_tsquery({TEXT_CONFIG}, ${n}) AS all_words
                   FROM upload_pipeline.document_chunks, (SELECT {words} AS words) query
                  WHERE {within} AND text_search @@ words
                  ORDER BY all_words DESC, text_rank DESC, chunk_id LIMIT $2) matching,
                (SELECT tsvector_to_array(to_tsvector({TEXT_CONFIG}, ${n})) AS query_words) asked
          ORDER BY rank"
    );
    Ok(client.query(&sql, &params).await?)
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
