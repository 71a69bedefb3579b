//! What a query costs and what of it each ranker reads: its tokens as the
//! providers bill them, the start the keyword ranker reads, its embedding
//! (paid for and recorded).

use deadpool_postgres::Pool;
use docpipe_core::cost::{self, Allowance};
use docpipe_core::embedding::{EmbedInput, Embedder};
use docpipe_core::error::Result;
use docpipe_core::settings::CostPolicy;
use docpipe_core::tokens::tokenizer;
use pgvector::Vector;

/// Queries up to this long are not tokenized: their length in bytes is
/// within any embedding model's input limit, and the tokenizer's build
/// (~60 ms) would be most of a cold api's first search.
const UNTOKENIZED_QUERY_BYTES: usize = 2048;

/// The query's tokens as the embedder's limits count them: for a short query
/// its byte length, an upper bound (every cl100k token is at least one
/// byte), which reserves a little more of the rate limit than it uses.
fn query_tokens(query: &str) -> u32 {
    if query.len() <= UNTOKENIZED_QUERY_BYTES {
        query.len() as u32
    } else {
        tokenizer().encode_ordinary(query).len() as u32
    }
}

/// The most of a query the keyword ranker reads. Past it, more words cost
/// every matching chunk's test and rank more (a Bedrock query may hold
/// 20 000 characters) and find nothing a copied phrase's start does not.
const KEYWORD_QUERY_BYTES: usize = 2048;

/// The start of `text` the keyword ranker reads: whole words, within
/// [`KEYWORD_QUERY_BYTES`].
pub(crate) fn keyword_text(text: &str) -> &str {
    if text.len() <= KEYWORD_QUERY_BYTES {
        return text;
    }
    let cut = &text[..text.floor_char_boundary(KEYWORD_QUERY_BYTES)];
    cut.rfind(char::is_whitespace)
        .map_or(cut, |end| &cut[..end])
}

/// The query's vector, its call checked against and recorded in the ledger.
pub(crate) async fn embed_query(
    db: &Pool,
    embedder: &dyn Embedder,
    policy: &CostPolicy,
    tenant: &str,
    text: &str,
) -> Result<Vector> {
    let text = embedder.query_window(text);
    let tokens = query_tokens(text);
    let estimate = cost::embedding_estimate(policy, embedder, tenant, None, i64::from(tokens));
    let embedding = embedder.embed_query(EmbedInput { text, tokens });
    let payer = Allowance::Tenant(tenant);
    let embedded =
        cost::pay_embeddings(db, policy, embedder, payer, &[estimate], embedding).await?;
    Ok(Vector::from(
        embedded.vectors.into_iter().next().unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyword_ranker_reads_a_long_query_s_first_whole_words() {
        let long = "fog signal ".repeat(1_000);
        let read = keyword_text(&long);
        assert!(read.len() <= KEYWORD_QUERY_BYTES && long.starts_with(read));
        assert!(read.ends_with("signal") || read.ends_with("fog"), "{read}");
        assert_eq!(keyword_text("fog signal"), "fog signal");
    }

    #[test]
    fn a_query_s_tokens_never_count_fewer_than_the_tokenizer_s() {
        let short = "Où est la bibliothèque? 図書館はどこですか 🦀🦀";
        let long = short.repeat(60);
        assert!(long.len() > UNTOKENIZED_QUERY_BYTES);
        for query in [short, long.as_str()] {
            let exact = tokenizer().encode_ordinary(query).len() as u32;
            assert!(query_tokens(query) >= exact, "{query}");
        }
        assert_eq!(query_tokens(short), short.len() as u32);
        assert_eq!(
            query_tokens(&long),
            tokenizer().encode_ordinary(&long).len() as u32
        );
    }
}
