//! What a query costs and what of it each ranker reads: its tokens as the
//! providers bill them, whether keywords rank it (not a hybrid search's
//! question), the start the keyword ranker reads, its embedding (paid for
//! and recorded).

use crate::SearchMode;
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

/// Words a question starts with: how, what, why…, and the verbs a yes/no
/// question opens with.
const QUESTION_WORDS: &[&str] = &[
    "how", "what", "why", "when", "where", "which", "who", "whom", "whose", "can", "could", "do",
    "does", "did", "is", "are", "was", "were", "should", "would", "will", "shall", "may", "might",
    "must", "has", "have", "had",
];

/// Whether a search in `mode` of `text` ranks by keywords: keyword and
/// hybrid searches do, but a hybrid search asked a question ranks by
/// meaning alone, unless the question quotes words (an error message, a
/// phrase). A question's words are weak evidence of a chunk's subject: its
/// content words ("return", "list", "file") often all occur in a chunk
/// about something else, or a chunk repeats the question to point
/// elsewhere, and such a chunk, high in both rankings, rose over the
/// answers (docs/benchmarks/search-quality.md, *Questions*). In a question
/// `-x` is an option and `or` a word, not operators.
pub(crate) fn ranked_by_keywords(mode: SearchMode, text: &str) -> bool {
    match mode {
        SearchMode::Vector => false,
        SearchMode::Keyword => true,
        SearchMode::Hybrid => text.contains('"') || !reads_as_question(text),
    }
}

/// The most words of a question typed without its `?`. A longer text
/// opening with such a word is more likely a copied sentence ("Where the
/// tools differ in their reading of the spec, this crate follows …").
const UNMARKED_QUESTION_WORDS: usize = 12;

/// Whether `text` reads as a question: it ends with `?`, or it is short and
/// its first word is one a question starts with.
fn reads_as_question(text: &str) -> bool {
    let text = text.trim();
    let mut words = text.split_whitespace();
    let opens_as_one = words.next().is_some_and(|first| {
        let first = first.trim_matches(|c: char| !c.is_alphanumeric());
        QUESTION_WORDS
            .iter()
            .any(|word| first.eq_ignore_ascii_case(word))
    });
    text.ends_with('?') || (opens_as_one && words.count() < UNMARKED_QUESTION_WORDS)
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
    fn a_hybrid_search_asked_a_question_ranks_by_meaning_alone() {
        let question = "How do I list the files a process holds open?";
        assert!(!ranked_by_keywords(SearchMode::Hybrid, question));
        assert!(ranked_by_keywords(SearchMode::Keyword, question));
        assert!(!ranked_by_keywords(
            SearchMode::Vector,
            "harbour pump E4711"
        ));
        assert!(ranked_by_keywords(SearchMode::Hybrid, "harbour pump E4711"));
        // Quoted words are to be read; an option or an `or` is a question's word.
        assert!(ranked_by_keywords(
            SearchMode::Hybrid,
            r#"Why "can't find" a file?"#
        ));
        assert!(!ranked_by_keywords(
            SearchMode::Hybrid,
            "Why is lsof -i slow or stuck?"
        ));
    }

    #[test]
    fn questions_are_told_from_phrases_and_codes() {
        for question in [
            "How do I list the files a process holds open?",
            "what does fault E4711 mean",
            "Does zlib handle dates",
            "  Where's the FAQ?  ",
            "lsof -- what is it?",
        ] {
            assert!(reads_as_question(question), "{question}");
        }
        for not_one in [
            "harbour pump E4711",
            "A library for parsing TOML files",
            "Showing the files a process holds open",
            "Where the tools differ in their reading of the spec, this crate follows the spec",
            "However the pump runs",
            "",
            "?!",
        ] {
            assert!(!reads_as_question(not_one), "{not_one}");
        }
    }

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
