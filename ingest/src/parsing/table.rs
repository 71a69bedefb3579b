//! Tables (spreadsheet sheets, CSV files) as text a row to a line, cells
//! between ` | `, in blocks that each start with the header row: a chunk
//! of rows then still says what its columns are, and a row is never split.

use super::layout::TextBuilder;
use docpipe_core::error::Rejection;

/// Characters of rows after which a block ends: about 300 tokens, so a
/// block and its header fit in one chunk of the default 512.
const BLOCK_CHARS: usize = 1200;

/// Most characters of one cell: a cell is a value, and a cell the size of a
/// book is a table misused (its text still counts against the document's).
const MAX_CELL_CHARS: usize = 4096;

/// Writes `rows` (numbered from `first_row`; the first non-empty one is the
/// header) as blocks of lines.
pub fn write(
    doc: &mut TextBuilder,
    first_row: u32,
    rows: impl Iterator<Item = Result<Vec<String>, Rejection>>,
) -> Result<(), Rejection> {
    let mut header: Option<(u32, String)> = None;
    let mut block = String::new();
    let mut first = 0;
    let mut last = 0;
    for (number, row) in (first_row..).zip(rows) {
        let line = line(&row?);
        if line.is_empty() {
            continue;
        }
        let Some((_, header)) = &header else {
            header = Some((number, line));
            continue;
        };
        if block.is_empty() {
            block.push_str(header);
            first = number;
        }
        block.push('\n');
        block.push_str(&line);
        last = number;
        // Written through the builder, which stops at the document's bound.
        if block.len() >= BLOCK_CHARS {
            doc.rows(first, last, &std::mem::take(&mut block))?;
        }
    }
    match header {
        Some((number, header)) if first == 0 => doc.rows(number, number, &header),
        _ if !block.is_empty() => doc.rows(first, last, &block),
        _ => Ok(()),
    }
}

/// A row's cells, trimmed and on one line, between ` | `; empty if every
/// cell is.
fn line(cells: &[String]) -> String {
    let cells: Vec<String> = cells
        .iter()
        .map(|cell| {
            let cell: String = cell.chars().take(MAX_CELL_CHARS).collect();
            cell.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect();
    let used = cells
        .iter()
        .rposition(|c| !c.is_empty())
        .map_or(0, |i| i + 1);
    cells[..used].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(rows: &[&[&str]]) -> impl Iterator<Item = Result<Vec<String>, Rejection>> {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect();
        rows.into_iter().map(Ok)
    }

    #[test]
    fn each_block_of_rows_starts_with_the_header() {
        let mut doc = TextBuilder::new(1 << 20);
        let long = "x".repeat(700);
        write(
            &mut doc,
            1,
            rows(&[
                &["", ""],
                &["name", "note", ""],
                &["a", &long],
                &["b", &long],
                &["", ""],
                &["c", " multi\nline "],
            ]),
        )
        .unwrap();
        let (text, layout) = doc.finish();
        let blocks: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(blocks.len(), 2, "{text}");
        assert!(blocks[0].starts_with("name | note\na | xxx"));
        assert!(blocks[0].ends_with(&format!("b | {long}")));
        assert_eq!(blocks[1], "name | note\nc | multi line");
        let ranges: Vec<(u32, u32)> = layout.rows.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(ranges, [(3, 4), (6, 6)]);
    }
}
