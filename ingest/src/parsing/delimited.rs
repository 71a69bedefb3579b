//! Delimited text (`.csv`, `.tsv`): rows as a table (header repeated per
//! block). A `.tsv` is split at tabs; a `.csv`'s delimiter is sniffed from
//! its first lines (comma, semicolon, tab or pipe: whichever splits them
//! most evenly). The text must be UTF-8 or BOM-marked UTF-16, like any
//! text file: anything else is refused (`not_utf8`), not guessed at.

use super::layout::{Layout, TextBuilder};
use super::{Format, OutputBounds, table};
use docpipe_core::error::Rejection;

const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Lines the delimiter is sniffed from.
const SNIFFED_LINES: usize = 20;

pub fn parse(
    text: &str,
    format: Format,
    bounds: &OutputBounds,
) -> Result<(String, Layout), Rejection> {
    let delimiter = match format {
        Format::Tsv => b'\t',
        _ => sniff(text),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut doc = TextBuilder::new(bounds.max_chars);
    let rows = reader.records().map(|record| {
        record
            .map(|r| r.iter().map(str::to_string).collect())
            .map_err(|e| super::unreadable(format.name(), e))
    });
    table::write(&mut doc, 1, rows)?;
    Ok(doc.finish())
}

/// The candidate found the same number of times (at least once) on the
/// most of the first lines; a comma if none is.
fn sniff(text: &str) -> u8 {
    let lines: Vec<&str> = text.lines().take(SNIFFED_LINES).collect();
    let mut best = (0, b',');
    for candidate in CANDIDATES {
        let counts: Vec<usize> = lines
            .iter()
            .map(|l| l.bytes().filter(|&b| b == candidate).count())
            .collect();
        let Some(&first) = counts.first().filter(|&&c| c > 0) else {
            continue;
        };
        let agreeing = counts.iter().filter(|&&c| c == first).count();
        if agreeing > best.0 {
            best = (agreeing, candidate);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delimiter_is_sniffed() {
        assert_eq!(sniff("a;b;c\n1;2,5;3\n4;5;6"), b';');
        assert_eq!(sniff("a,b\n1,2"), b',');
        assert_eq!(sniff("a|b\n1|2"), b'|');
        assert_eq!(sniff("just words"), b',');
    }
}
