//! Context around each hit (small-to-big): chunks stay small so matching is
//! sharp, and a caller who asks gets the text around each hit to answer
//! from: its neighbouring chunks, or as much of its section (the chunks
//! under the same headings) as a token budget holds.

use crate::SearchHit;
use deadpool_postgres::{GenericClient, Pool};
use docpipe_core::error::Result;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most neighbours on each side a hit may ask for.
pub const MAX_NEIGHBORS: u32 = 10;
/// Largest token budget for a hit's context.
pub const MAX_CONTEXT_TOKENS: u32 = 8192;
/// How far from a hit (in chunks, each side) a budget may reach.
pub const MAX_SECTION_CHUNKS: i32 = 32;

/// What context a search asks for: `{"neighbors": N}` or `{"max_tokens": T}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", try_from = "ContextFields")]
pub enum ContextRequest {
    /// The hit with up to this many chunks before and after it.
    Neighbors(u32),
    /// The hit grown through its section, a chunk at a time on either side,
    /// while the chunks' tokens stay within this budget.
    MaxTokens(u32),
}

/// A context request as written, before it is one of its kinds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextFields {
    neighbors: Option<u32>,
    max_tokens: Option<u32>,
}

impl TryFrom<ContextFields> for ContextRequest {
    type Error = &'static str;
    fn try_from(fields: ContextFields) -> Result<Self, Self::Error> {
        match (fields.neighbors, fields.max_tokens) {
            (Some(n), None) => Ok(ContextRequest::Neighbors(n)),
            (None, Some(t)) => Ok(ContextRequest::MaxTokens(t)),
            _ => Err("give one of neighbors or max_tokens"),
        }
    }
}

impl ContextRequest {
    /// The request, or what is wrong with it.
    pub fn checked(self) -> Result<ContextRequest, String> {
        match self {
            ContextRequest::Neighbors(n) if !(1..=MAX_NEIGHBORS).contains(&n) => {
                Err(format!("context.neighbors must be 1 to {MAX_NEIGHBORS}"))
            }
            ContextRequest::MaxTokens(t) if !(1..=MAX_CONTEXT_TOKENS).contains(&t) => Err(format!(
                "context.max_tokens must be 1 to {MAX_CONTEXT_TOKENS}"
            )),
            ok => Ok(ok),
        }
    }

    /// How many chunks on each side of a hit the context may draw from.
    pub fn reach(self) -> i32 {
        match self {
            ContextRequest::Neighbors(n) => n as i32,
            ContextRequest::MaxTokens(_) => MAX_SECTION_CHUNKS,
        }
    }
}

/// A chunk near a hit, as the context is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Nearby {
    pub chunk_index: i32,
    pub text: String,
    pub char_start: i32,
    pub char_end: i32,
    pub tokens: i32,
    pub headings: Vec<String>,
}

/// A hit's context: the text of its chunks from `chunk_start` to
/// `chunk_end`, overlaps written once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitContext {
    pub chunk_start: i32,
    pub chunk_end: i32,
    pub char_start: i32,
    pub char_end: i32,
    pub text: String,
}

/// The context of the hit `at` (a chunk index) among `nearby` (its
/// document's chunks within reach, any order), as `request` asks.
pub fn around(at: i32, nearby: &[Nearby], request: ContextRequest) -> Option<HitContext> {
    let mut chunks: Vec<&Nearby> = nearby.iter().collect();
    chunks.sort_by_key(|c| c.chunk_index);
    let hit = chunks.iter().position(|c| c.chunk_index == at)?;
    let (first, last) = match request {
        ContextRequest::Neighbors(n) => {
            let n = n as i32;
            let first = chunks.iter().position(|c| c.chunk_index >= at - n)?;
            let last = chunks.iter().rposition(|c| c.chunk_index <= at + n)?;
            (first, last)
        }
        ContextRequest::MaxTokens(budget) => grow(&chunks, hit, budget as i64),
    };
    Some(join(&chunks[first..=last]))
}

/// The widest run of chunks around `hit` in its section (the same headings,
/// no gap in the indexes) whose tokens fit `budget`, grown a chunk at a time,
/// after then before. The hit alone if it does not fit by itself.
fn grow(chunks: &[&Nearby], hit: usize, budget: i64) -> (usize, usize) {
    let section = &chunks[hit].headings;
    let (mut first, mut last) = (hit, hit);
    let mut tokens = i64::from(chunks[hit].tokens);
    // Whether the chunk at `next`, beside the one at `edge`, joins the context.
    let take = |next: usize, edge: usize, tokens: &mut i64| {
        let (chunk, beside) = (chunks[next], chunks[edge]);
        let fits = *tokens + i64::from(chunk.tokens) <= budget;
        let joined = fits
            && (chunk.chunk_index - beside.chunk_index).abs() == 1
            && &chunk.headings == section;
        if joined {
            *tokens += i64::from(chunk.tokens);
        }
        joined
    };
    let (mut after, mut before) = (true, true);
    while after || before {
        after = after && last + 1 < chunks.len() && take(last + 1, last, &mut tokens);
        if after {
            last += 1;
        }
        before = before && first > 0 && take(first - 1, first, &mut tokens);
        if before {
            first -= 1;
        }
    }
    (first, last)
}

/// Consecutive chunks as one text: where one overlaps the one before (they
/// share their edges, `CHUNK_OVERLAP_TOKENS`), the shared part once; where
/// text lies between them (chunks end at paragraphs), a paragraph break.
fn join(chunks: &[&Nearby]) -> HitContext {
    let mut text = String::new();
    let mut end = chunks[0].char_start;
    for chunk in chunks {
        let overlap = (end - chunk.char_start).max(0) as usize;
        if chunk.char_start > end && !text.is_empty() {
            text.push_str("\n\n");
        }
        text.extend(chunk.text.chars().skip(overlap));
        end = end.max(chunk.char_end);
    }
    HitContext {
        chunk_start: chunks[0].chunk_index,
        chunk_end: chunks[chunks.len() - 1].chunk_index,
        char_start: chunks[0].char_start,
        char_end: end,
        text,
    }
}

/// Gives each hit its context, from one read of the chunks near them all.
pub async fn add(
    db: &Pool,
    tenant: &str,
    hits: &mut [SearchHit],
    request: ContextRequest,
) -> Result<()> {
    let reach = request.reach();
    let windows: Vec<(Uuid, i32, i32)> = hits
        .iter()
        .map(|hit| {
            (
                hit.document_id,
                hit.chunk_index - reach,
                hit.chunk_index + reach,
            )
        })
        .collect();
    let nearby = nearby(&db.get().await?, tenant, &windows).await?;
    for hit in hits.iter_mut() {
        let near_hit: Vec<Nearby> = nearby
            .iter()
            .filter(|(document, chunk)| {
                *document == hit.document_id && (chunk.chunk_index - hit.chunk_index).abs() <= reach
            })
            .map(|(_, chunk)| chunk.clone())
            .collect();
        hit.context = around(hit.chunk_index, &near_hit, request);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks of `document` at these char ranges, 10 tokens each, under `headings`.
    fn cut(document: &str, ranges: &[(i32, i32, &str)]) -> Vec<Nearby> {
        ranges
            .iter()
            .enumerate()
            .map(|(i, &(start, end, heading))| Nearby {
                chunk_index: i as i32,
                text: document
                    .chars()
                    .skip(start as usize)
                    .take((end - start) as usize)
                    .collect(),
                char_start: start,
                char_end: end,
                tokens: 10,
                headings: vec![heading.to_string()],
            })
            .collect()
    }

    const DOC: &str = "aaaa bbbb cccc dddd eeee";

    #[test]
    fn neighbours_are_joined_with_their_overlaps_once() {
        // Chunks overlap by one word: "aaaa bbbb", "bbbb cccc", "cccc dddd", "dddd eeee".
        let chunks = cut(
            DOC,
            &[(0, 9, "A"), (5, 14, "A"), (10, 19, "A"), (15, 24, "A")],
        );
        let context = around(2, &chunks, ContextRequest::Neighbors(1)).unwrap();
        assert_eq!(context.text, "bbbb cccc dddd eeee");
        assert_eq!((context.chunk_start, context.chunk_end), (1, 3));
        assert_eq!((context.char_start, context.char_end), (5, 24));
        let first = around(0, &chunks, ContextRequest::Neighbors(1)).unwrap();
        assert_eq!(first.text, "aaaa bbbb cccc");
        let all = around(0, &chunks, ContextRequest::Neighbors(10)).unwrap();
        assert_eq!(all.text, DOC);
        assert_eq!(around(7, &chunks, ContextRequest::Neighbors(1)), None);
    }

    #[test]
    fn a_budget_grows_the_hit_within_its_section_and_never_over() {
        let chunks = cut(
            DOC,
            &[
                (0, 4, "A"),
                (5, 9, "B"),
                (10, 14, "B"),
                (15, 19, "B"),
                (20, 24, "C"),
            ],
        );
        let within = |tokens| around(2, &chunks, ContextRequest::MaxTokens(tokens)).unwrap();
        assert_eq!(within(5).text, "cccc", "the hit alone when it does not fit");
        assert_eq!(within(20).text, "cccc\n\ndddd", "after, then before");
        assert_eq!(within(30).text, "bbbb\n\ncccc\n\ndddd");
        assert_eq!(within(1000).text, "bbbb\n\ncccc\n\ndddd", "section B only");
    }

    #[test]
    fn requests_are_bounded() {
        assert!(ContextRequest::Neighbors(0).checked().is_err());
        assert!(ContextRequest::Neighbors(11).checked().is_err());
        assert!(ContextRequest::MaxTokens(8193).checked().is_err());
        assert!(ContextRequest::MaxTokens(500).checked().is_ok());
        let parsed: Result<ContextRequest, _> =
            serde_json::from_str(r#"{"neighbors": 1, "max_tokens": 2}"#);
        assert!(parsed.is_err());
    }
}
