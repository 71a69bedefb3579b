//! `docpipe eval`: retrieval quality on labeled queries, per mode.

use crate::searcher::Searcher;
use docpipe_search::{SearchMode, eval};
use std::collections::HashSet;

/// The quality of `mode` on `labeled`: each query searched once.
pub async fn evaluate(
    searcher: &Searcher,
    labeled: &[eval::LabeledQuery],
    mode: SearchMode,
    top_k: u32,
) -> anyhow::Result<eval::Quality> {
    let mut rankings = Vec::new();
    for query in labeled {
        let hits = searcher
            .search(&query.query, (top_k, mode), (None, true), None)
            .await?;
        let keys: Vec<String> = hits
            .iter()
            .map(|hit| eval::document_name(&hit.source_key).to_string())
            .collect();
        let relevant: HashSet<String> = query
            .relevant
            .iter()
            .map(|key| eval::document_name(key).to_string())
            .collect();
        rankings.push((keys, relevant));
    }
    let borrowed: Vec<(Vec<&str>, HashSet<&str>)> = rankings
        .iter()
        .map(|(keys, relevant)| {
            let ranked = eval::documents_ranked(keys.iter().map(String::as_str));
            (ranked, relevant.iter().map(String::as_str).collect())
        })
        .collect();
    Ok(eval::quality(&borrowed))
}

pub fn print_quality(
    report: &[(SearchMode, eval::Quality)],
    queries: usize,
    top_k: u32,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let modes: serde_json::Map<String, serde_json::Value> = report
            .iter()
            .map(|(mode, quality)| Ok((mode.to_string(), serde_json::to_value(quality)?)))
            .collect::<anyhow::Result<_>>()?;
        say!("{}", serde_json::to_string_pretty(&modes)?);
        return Ok(());
    }
    say!("{queries} queries; documents ranked by their best hit among {top_k} chunks");
    say!("mode     recall@1  recall@5  recall@10  MRR@10  (95 % interval)");
    for (mode, q) in report {
        let [low, high] = q.mrr_at_10_interval;
        say!(
            "{:<8} {:>8.3}  {:>8.3}  {:>9.3}  {:>6.3}  ({low:.3}–{high:.3})",
            mode.to_string(),
            q.recall_at_1,
            q.recall_at_5,
            q.recall_at_10,
            q.mrr_at_10
        );
    }
    say!(
        "intervals: a bootstrap over the queries; modes whose intervals overlap much are not told apart by this set"
    );
    Ok(())
}
