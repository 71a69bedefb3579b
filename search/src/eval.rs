//! Retrieval quality at the document level, as `docpipe eval` reports it:
//! for labeled queries (`{"query": …, "relevant": [source keys]}`), where
//! the relevant documents come in each query's ranking of documents (its
//! hits' documents, each at its best hit's place).

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// One labeled query.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabeledQuery {
    pub query: String,
    /// The documents that answer it: full keys, or names under the tenant's folder.
    pub relevant: Vec<String>,
}

/// Reads a labeled-query file (JSON Lines; blank lines skipped), naming the
/// line of any problem.
pub fn read_queries(text: &str) -> Result<Vec<LabeledQuery>, String> {
    let mut queries = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() {
            continue;
        }
        let query: LabeledQuery =
            serde_json::from_str(line).map_err(|e| format!("line {number}: {e}"))?;
        if query.query.trim().is_empty() || query.relevant.is_empty() {
            return Err(format!(
                "line {number}: needs a query and at least one relevant document"
            ));
        }
        queries.push(query);
    }
    if queries.is_empty() {
        return Err("no queries".into());
    }
    Ok(queries)
}

/// A document's name under its tenant's folder (`reports/q3.pdf` for
/// `uploads/acme/reports/q3.pdf`): labels may give either.
pub fn document_name(key: &str) -> &str {
    key.strip_prefix(docpipe_core::domain::keys::UPLOAD_PREFIX)
        .and_then(|rest| rest.split_once('/'))
        .map_or(key, |(_, name)| name)
}

/// The distinct documents of a ranking of hits, in the order of their best hit.
pub fn documents_ranked<'a>(hit_keys: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    hit_keys
        .into_iter()
        .filter(|key| seen.insert(*key))
        .collect()
}

/// Recall at 1, 5 and 10 and MRR at 10, averaged over the queries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quality {
    pub queries: usize,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    pub mrr_at_10: f64,
    /// Where MRR@10 lies with 95 % confidence, had other queries of the
    /// same kind been asked: a bootstrap over the queries. Two modes whose
    /// intervals overlap much are not told apart by this set.
    pub mrr_at_10_interval: [f64; 2],
}

/// Bootstrap resamples of the queries.
const RESAMPLES: usize = 1000;

/// The 2.5th and 97.5th percentiles of the mean of `values` over
/// [`RESAMPLES`] resamples (with replacement), drawn from a fixed seed: the
/// same queries give the same interval.
fn bootstrap_interval(values: &[f64]) -> [f64; 2] {
    use rand::{Rng, SeedableRng};
    if values.is_empty() {
        return [0.0, 0.0];
    }
    let mut draws = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            (0..values.len())
                .map(|_| values[draws.random_range(0..values.len())])
                .sum::<f64>()
                / values.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    [
        means[RESAMPLES * 25 / 1000],
        means[RESAMPLES * 975 / 1000 - 1],
    ]
}

/// The quality of `rankings`: each query's documents, best first, with the
/// documents relevant to it.
pub fn quality(rankings: &[(Vec<&str>, HashSet<&str>)]) -> Quality {
    let recall = |k: usize| {
        rankings
            .iter()
            .map(|(ranked, relevant)| {
                let found = ranked
                    .iter()
                    .take(k)
                    .filter(|d| relevant.contains(*d))
                    .count();
                found as f64 / relevant.len() as f64
            })
            .sum::<f64>()
            / rankings.len().max(1) as f64
    };
    let reciprocal_ranks: Vec<f64> = rankings
        .iter()
        .map(|(ranked, relevant)| {
            ranked
                .iter()
                .take(10)
                .position(|d| relevant.contains(*d))
                .map_or(0.0, |at| 1.0 / (at + 1) as f64)
        })
        .collect();
    Quality {
        queries: rankings.len(),
        recall_at_1: recall(1),
        recall_at_5: recall(5),
        recall_at_10: recall(10),
        mrr_at_10: reciprocal_ranks.iter().sum::<f64>() / rankings.len().max(1) as f64,
        mrr_at_10_interval: bootstrap_interval(&reciprocal_ranks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_and_mrr_count_documents_not_chunks() {
        // a's two chunks count once: b is second, c third.
        let first = documents_ranked(["a", "a", "b", "c"]);
        assert_eq!(first, ["a", "b", "c"]);
        assert_eq!(
            document_name("uploads/acme/reports/q3.pdf"),
            "reports/q3.pdf"
        );
        assert_eq!(document_name("reports/q3.pdf"), "reports/q3.pdf");
        let rankings = vec![
            (first, HashSet::from(["b"])),
            (vec!["x", "y"], HashSet::from(["x", "z"])),
            (vec!["q"], HashSet::from(["r"])),
        ];
        let q = quality(&rankings);
        assert_eq!(q.queries, 3);
        assert!((q.recall_at_1 - (0.0 + 0.5 + 0.0) / 3.0).abs() < 1e-12);
        assert!((q.recall_at_5 - (1.0 + 0.5 + 0.0) / 3.0).abs() < 1e-12);
        assert!((q.mrr_at_10 - (0.5 + 1.0 + 0.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn the_mrr_interval_narrows_with_more_queries() {
        assert_eq!(bootstrap_interval(&[0.5; 20]), [0.5, 0.5]);
        let width = |queries: usize| {
            let values: Vec<f64> = (0..queries).map(|n| (n % 2) as f64).collect();
            let [low, high] = bootstrap_interval(&values);
            assert!(low < 0.5 && 0.5 < high, "{queries}: {low}..{high}");
            high - low
        };
        // 400 queries, half found first: 0.5 ± 1.96 × 0.025.
        assert!((0.08..0.12).contains(&width(400)), "{}", width(400));
        assert!(width(40) > 2.5 * width(400));
    }

    #[test]
    fn a_bad_line_is_named() {
        let text = "{\"query\": \"a\", \"relevant\": [\"x\"]}\n\n{\"query\": \"b\"}\n";
        assert!(read_queries(text).unwrap_err().starts_with("line 3:"));
        let empty = "{\"query\": \" \", \"relevant\": [\"x\"]}";
        assert!(
            read_queries(empty)
                .unwrap_err()
                .contains("line 1: needs a query")
        );
        assert_eq!(read_queries("\n").unwrap_err(), "no queries");
        assert_eq!(read_queries(text.lines().next().unwrap()).unwrap().len(), 1);
    }
}
