//! `docpipe eval`: retrieval quality on labeled queries, per mode and
//! rerank setting.

use crate::searcher::Searcher;
use docpipe_search::{SearchMode, eval};
use std::collections::HashSet;

/// Whether an evaluation's searches are reranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rerank {
    /// By the configured reranker, if there is one.
    On,
    Off,
}

/// The quality of each mode at each rerank setting on `labeled`, labeled
/// by its mode, `MODE+rerank` when reranked beside a row that is not.
pub async fn evaluate_all(
    searcher: &Searcher,
    labeled: &[eval::LabeledQuery],
    (modes, rerank): (&[SearchMode], &[Rerank]),
    top_k: u32,
) -> anyhow::Result<Vec<(String, eval::Quality)>> {
    let mut report = Vec::new();
    for &mode in modes {
        for &setting in rerank {
            let label = match setting {
                Rerank::On if rerank.len() > 1 => format!("{mode}+rerank"),
                _ => mode.to_string(),
            };
            let search = (mode, setting == Rerank::On);
            report.push((label, evaluate(searcher, labeled, search, top_k).await?));
        }
    }
    Ok(report)
}

/// The quality of searches in `mode`, reranked or not, on `labeled`: each
/// query searched once.
async fn evaluate(
    searcher: &Searcher,
    labeled: &[eval::LabeledQuery],
    (mode, rerank): (SearchMode, bool),
    top_k: u32,
) -> anyhow::Result<eval::Quality> {
    let mut rankings = Vec::new();
    for query in labeled {
        let hits = searcher
            .search(&query.query, (top_k, mode), (None, rerank), None)
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

/// The report: each row's label (a mode, `+rerank` when reranked) and quality.
pub fn print_quality(
    report: &[(String, eval::Quality)],
    queries: usize,
    top_k: u32,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let modes: serde_json::Map<String, serde_json::Value> = report
            .iter()
            .map(|(label, quality)| Ok((label.clone(), serde_json::to_value(quality)?)))
            .collect::<anyhow::Result<_>>()?;
        say!("{}", serde_json::to_string_pretty(&modes)?);
        return Ok(());
    }
    say!("{queries} queries; documents ranked by their best hit among {top_k} chunks");
    let width = report
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        .max(8);
    say!(
        "{:<width$} recall@1  recall@5  recall@10  MRR@10  (95 % interval)",
        "mode"
    );
    for (label, q) in report {
        let [low, high] = q.mrr_at_10_interval;
        say!(
            "{label:<width$} {:>8.3}  {:>8.3}  {:>9.3}  {:>6.3}  ({low:.3}–{high:.3})",
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
