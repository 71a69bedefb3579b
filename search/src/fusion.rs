//! Reciprocal rank fusion: a hybrid search's two rankings (by meaning, by
//! keywords) become one. Each ranking a chunk appears in adds
//! `weight / (RRF_K + rank)`, so a chunk near the top of both beats one at
//! the top of either alone, and neither ranker's raw scores (cosine,
//! `ts_rank`), which do not compare, need scaling. A single ranking keeps
//! its order and its own scores.
//!
//! The weights depend on the query: a chunk the keyword ranker found holding
//! every word of it (a copied phrase, a code, a name) counts its keyword
//! rank [`EXACT_KEYWORD_WEIGHT`] times; other ranks count alike. Measured on
//! the quality bench (docs/benchmarks/search-quality.md): plain fusion let
//! the vector ranking push exact sentences down; this keeps them first. A
//! question is not fused: it is ranked by meaning alone
//! (`query::ranked_by_keywords`).

use uuid::Uuid;

/// The constant of Cormack et al.'s reciprocal rank fusion: it damps how
/// much the very first ranks count against the rest.
pub const RRF_K: f64 = 60.0;

/// The weight of a keyword rank whose chunk holds every word of the query
/// (every other rank's is 1): the best of 1, 1.5, 2, 3 and 5 on the quality
/// bench, with the mock embedder and with all-MiniLM-L6-v2.
pub const EXACT_KEYWORD_WEIGHT: f64 = 5.0;

/// The ranker that placed a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ranker {
    /// By meaning: the query's vector against the chunks'.
    Vector,
    /// By keywords: Postgres full-text search.
    Keyword,
}

/// One chunk as one ranker placed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub chunk_id: Uuid,
    pub ranker: Ranker,
    /// 1 for the ranker's best.
    pub rank: i64,
    /// The ranker's own score, which orders its candidates.
    pub score: f64,
    /// How well the chunk matches, the same for every query: the cosine
    /// similarity (vector ranker), the share of the query's words the
    /// chunk holds (keyword ranker).
    pub relevance: f64,
    /// Whether the chunk holds every word of the query (keyword ranker).
    pub all_words: bool,
}

/// A chunk as the fusion placed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fused {
    /// Its first entry in the candidates.
    pub index: usize,
    /// What it is ordered by: the ranker's own score when there is one
    /// ranker, else the reciprocal rank fusion's.
    pub order: f64,
    /// How well it matches, 0 to 1 whatever the query, so that a threshold
    /// means the same for every query: the best of its rankers' relevances
    /// (cosine similarity, below 0 taken as 0; the share of the query's
    /// words it holds).
    pub relevance: f64,
}

/// A candidate's relevance, 0 to 1.
fn relevance(candidate: &Ranked) -> f64 {
    if candidate.relevance.is_finite() {
        candidate.relevance.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The best `top_k` chunks of `ranked` (one or two rankers' candidates),
/// best first.
pub fn fuse(ranked: &[Ranked], top_k: usize) -> Vec<Fused> {
    let mut rankers: Vec<Ranker> = ranked.iter().map(|r| r.ranker).collect();
    rankers.sort_unstable();
    rankers.dedup();
    let weight = |candidate: &Ranked| {
        if candidate.ranker == Ranker::Keyword && candidate.all_words {
            EXACT_KEYWORD_WEIGHT
        } else {
            1.0
        }
    };
    let mut scored: Vec<Fused> = Vec::new();
    let mut seen: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    for (index, candidate) in ranked.iter().enumerate() {
        let order = if rankers.len() > 1 {
            weight(candidate) / (RRF_K + candidate.rank as f64)
        } else {
            candidate.score
        };
        match seen.get(&candidate.chunk_id) {
            Some(&at) => {
                scored[at].order += order;
                scored[at].relevance = scored[at].relevance.max(relevance(candidate));
            }
            None => {
                seen.insert(candidate.chunk_id, scored.len());
                scored.push(Fused {
                    index,
                    order,
                    relevance: relevance(candidate),
                });
            }
        }
    }
    // Ties (equal fused scores) keep the order the candidates came in.
    scored.sort_by(|a, b| b.order.total_cmp(&a.order));
    scored.truncate(top_k);
    scored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(ranker: Ranker, ids: &[u128]) -> Vec<Ranked> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Ranked {
                chunk_id: Uuid::from_u128(*id),
                ranker,
                rank: i as i64 + 1,
                score: 1.0 - i as f64 / 10.0,
                relevance: 1.0 - i as f64 / 10.0,
                all_words: false,
            })
            .collect()
    }

    fn order(fused: &[Fused], all: &[Ranked]) -> Vec<u128> {
        fused
            .iter()
            .map(|f| all[f.index].chunk_id.as_u128())
            .collect()
    }

    #[test]
    fn a_chunk_high_in_both_rankings_beats_one_first_in_either() {
        // Vector: A B C; keyword: C A. A = 1/61 + 1/62 > C = 1/63 + 1/61 > B = 1/62.
        let mut all = ranked(Ranker::Vector, &[0xA, 0xB, 0xC]);
        all.extend(ranked(Ranker::Keyword, &[0xC, 0xA]));
        let fused = fuse(&all, 10);
        assert_eq!(order(&fused, &all), [0xA, 0xC, 0xB]);
        let a = 1.0 / 61.0 + 1.0 / 62.0;
        assert!((fused[0].order - a).abs() < 1e-12);
        // A's relevance is the better of its rankers' own scores: 1.0 (vector, first).
        assert_eq!(fused[0].relevance, 1.0);
        // C: vector 0.8 (third), keyword 1.0 (first).
        assert_eq!(fused[1].relevance, 1.0);
        assert!((fused[2].relevance - 0.9).abs() < 1e-12);
        assert_eq!(order(&fuse(&all, 2), &all), [0xA, 0xC]);
    }

    #[test]
    fn a_chunk_holding_every_word_counts_its_keyword_rank_more() {
        // Vector: A B C; keyword: C (every word) A. C = 5/61 + 1/63 > A = 1/61 + 5/62.
        let mut all = ranked(Ranker::Vector, &[0xA, 0xB, 0xC]);
        let mut keyword = ranked(Ranker::Keyword, &[0xC, 0xA]);
        keyword[0].all_words = true;
        all.extend(keyword);
        let fused = fuse(&all, 10);
        assert_eq!(order(&fused, &all), [0xC, 0xA, 0xB]);
        assert!((fused[0].order - (5.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-12);
    }

    #[test]
    fn one_ranking_keeps_its_order_and_scores() {
        let all = ranked(Ranker::Keyword, &[3, 1, 2]);
        let fused = fuse(&all, 2);
        assert_eq!(order(&fused, &all), [3, 1]);
        assert_eq!(fused[1].order, 0.9);
        assert_eq!(fuse(&[], 5), []);
        // A score outside 0 to 1 (a cosine below 0) is clamped as a relevance.
        let mut below = ranked(Ranker::Vector, &[1]);
        below[0].relevance = -0.3;
        assert_eq!(fuse(&below, 1)[0].relevance, 0.0);
    }
}
