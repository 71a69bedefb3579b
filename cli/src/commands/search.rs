//! `docpipe search`: its argument and how hits are shown.

use docpipe_search as search;

/// A command-line argument that must be JSON.
pub fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

pub fn print_hits(hits: &[search::SearchHit], json: bool) -> anyhow::Result<()> {
    if json {
        say!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        say!("no results");
    }
    for (rank, hit) in hits.iter().enumerate() {
        let snippet: String = hit
            .text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(160)
            .collect();
        say!(
            "{}. {:.3}  {}  ({})",
            rank + 1,
            hit.score,
            hit.source_key,
            where_in_document(hit)
        );
        if !hit.headings.is_empty() {
            say!("   § {}", hit.headings.join(" › "));
        }
        if !hit.metadata.is_empty() {
            let attributes: Vec<String> = hit
                .metadata
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            say!("   {}", attributes.join(" "));
        }
        match &hit.context {
            // Asked for: the whole context, as it reads.
            Some(context) => {
                say!("   chunks {}-{}:", context.chunk_start, context.chunk_end);
                for line in context.text.lines() {
                    say!("{}", format!("   | {line}").trim_end());
                }
            }
            None => say!("   {snippet}"),
        }
    }
    Ok(())
}

/// `page 3, rows 2-40, chunk 5`: where a hit is, as far as its document says.
pub fn where_in_document(hit: &search::SearchHit) -> String {
    let range = |name: &str, start: Option<i32>, end: Option<i32>| match (start, end) {
        (Some(start), Some(end)) if start != end => Some(format!("{name}s {start}-{end}")),
        (Some(start), _) => Some(format!("{name} {start}")),
        _ => None,
    };
    let mut parts: Vec<String> = [
        range("page", hit.page_start, hit.page_end),
        range("row", hit.row_start, hit.row_end),
    ]
    .into_iter()
    .flatten()
    .collect();
    parts.push(format!("chunk {}", hit.chunk_index));
    parts.join(", ")
}
