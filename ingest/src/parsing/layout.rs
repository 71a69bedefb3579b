//! Where things are in a parsed text: the pages, headings and table rows a
//! parser marks as it writes the text, and from them each chunk's
//! provenance (its page range, heading path and row range).

use docpipe_core::error::Rejection;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Marks on a parsed text, each at the byte offset where its part starts,
/// ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// PDF pages, slides, sheets: numbered from 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<Mark>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headings: Vec<Heading>,
    /// Blocks of table rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<Rows>,
}

/// Rows `first..=last` of a table (numbered as the table numbers them: a
/// sheet's first row is 1), written as the bytes `at..end` of the text.
/// Rows are marked a block at a time, not one by one, so that a sheet of a
/// million short rows has a layout of thousands of marks, not millions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rows {
    pub at: usize,
    pub end: usize,
    pub first: u32,
    pub last: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub at: usize,
    pub number: u32,
}

/// A heading: its section runs from `at` to the next heading of its level
/// or above (1 is the top); its own line ends at `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heading {
    pub at: usize,
    pub end: usize,
    pub level: u8,
    pub title: String,
}

/// Where a chunk came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub page_start: Option<u32>,
    pub page_end: Option<u32>,
    /// The titles of the headings above the chunk, outermost first.
    pub headings: Vec<String>,
    pub row_start: Option<u32>,
    pub row_end: Option<u32>,
}

/// Longest heading title kept, in characters: a heading is a label, and a
/// "heading" the length of a page is a document's markup gone wrong.
const MAX_TITLE_CHARS: usize = 200;

/// The most bytes (blank lines) between two headings with nothing between.
const HEADING_GAP: usize = 3;

/// Most headings marked in one document; later ones are text only. Bounds
/// the layout a parse child answers with (this many titles is ~2 MB).
pub const MAX_HEADINGS: usize = 10_000;

impl Layout {
    /// The provenance of each of `ranges` (byte ranges of the text).
    pub fn locate(&self, ranges: impl Iterator<Item = Range<usize>>) -> Vec<Provenance> {
        let parents = self.heading_parents();
        ranges
            .map(|range| {
                let (pages, rows) = (pages(&self.pages, &range), rows(&self.rows, &range));
                Provenance {
                    page_start: pages.map(|p| p.0),
                    page_end: pages.map(|p| p.1),
                    headings: self.heading_path(&parents, self.body_start(&range)),
                    row_start: rows.map(|r| r.0),
                    row_end: rows.map(|r| r.1),
                }
            })
            .collect()
    }

    /// Each heading's nearest enclosing heading (the last before it of a
    /// higher level).
    fn heading_parents(&self) -> Vec<Option<usize>> {
        let mut open: Vec<usize> = Vec::new();
        self.headings
            .iter()
            .enumerate()
            .map(|(i, heading)| {
                while open
                    .last()
                    .is_some_and(|&o| self.headings[o].level >= heading.level)
                {
                    open.pop();
                }
                let parent = open.last().copied();
                open.push(i);
                parent
            })
            .collect()
    }

    /// Where the text under the headings that open `range` starts: a chunk
    /// that begins with headings is under them.
    fn body_start(&self, range: &Range<usize>) -> usize {
        let mut at = range.start;
        let mut next = self.headings.partition_point(|h| h.at < at);
        while let Some(heading) = self.headings.get(next)
            && heading.at < range.end
            && heading.at <= at + HEADING_GAP
        {
            at = heading.end;
            next += 1;
        }
        at
    }

    fn heading_path(&self, parents: &[Option<usize>], at: usize) -> Vec<String> {
        let mut current = self.headings.partition_point(|h| h.at <= at).checked_sub(1);
        let mut path = Vec::new();
        while let Some(i) = current {
            path.push(self.headings[i].title.clone());
            current = parents[i];
        }
        path.reverse();
        path
    }
}

/// The first and last pages `range` falls on, if the text has pages.
fn pages(pages: &[Mark], range: &Range<usize>) -> Option<(u32, u32)> {
    let last_at_or_before = |at: usize| pages.partition_point(|m| m.at <= at).checked_sub(1);
    let first = last_at_or_before(range.start).unwrap_or(0);
    let last = last_at_or_before(range.end.saturating_sub(1).max(range.start)).unwrap_or(0);
    Some((pages.get(first)?.number, pages[last].number))
}

/// The first and last rows of the blocks `range` overlaps, if any.
fn rows(rows: &[Rows], range: &Range<usize>) -> Option<(u32, u32)> {
    let first = rows.partition_point(|r| r.end <= range.start);
    let past_last = rows.partition_point(|r| r.at < range.end);
    (first < past_last).then(|| (rows[first].first, rows[past_last - 1].last))
}

/// Writes a parsed text and its layout, paragraph by paragraph, within a
/// bound on its characters: a parser stops as soon as a document's text
/// passes it, however compressed the document was.
pub struct TextBuilder {
    text: String,
    layout: Layout,
    chars: usize,
    max_chars: usize,
}

impl TextBuilder {
    pub fn new(max_chars: usize) -> TextBuilder {
        TextBuilder {
            text: String::new(),
            layout: Layout::default(),
            chars: 0,
            max_chars,
        }
    }

    /// Page (slide, sheet) `number` starts with the next paragraph.
    pub fn page(&mut self, number: u32) {
        self.layout.pages.push(Mark {
            at: self.text.len(),
            number,
        });
    }

    /// A heading of `level` (1 is the top), as a paragraph of its own.
    pub fn heading(&mut self, level: u8, title: &str) -> Result<(), Rejection> {
        let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
        if title.is_empty() {
            return Ok(());
        }
        let at = self.text.len();
        self.paragraph(&title)?;
        if self.layout.headings.len() < MAX_HEADINGS {
            self.layout.headings.push(Heading {
                at,
                end: at + title.len(),
                level: level.max(1),
                title: title.chars().take(MAX_TITLE_CHARS).collect(),
            });
        }
        Ok(())
    }

    /// Rows `first..=last` of a table, written as `block`, a paragraph.
    pub fn rows(&mut self, first: u32, last: u32, block: &str) -> Result<(), Rejection> {
        let at = self.text.len();
        self.paragraph(block)?;
        self.layout.rows.push(Rows {
            at,
            end: self.text.trim_end().len(),
            first,
            last,
        });
        Ok(())
    }

    /// A paragraph; blank ones are left out.
    pub fn paragraph(&mut self, text: &str) -> Result<(), Rejection> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        self.push(text)?;
        self.end_paragraph()
    }

    /// Ends the paragraph under way (a blank line after it).
    fn end_paragraph(&mut self) -> Result<(), Rejection> {
        let ending = if self.text.ends_with('\n') {
            "\n"
        } else {
            "\n\n"
        };
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.push(ending)?;
        }
        Ok(())
    }

    fn push(&mut self, text: &str) -> Result<(), Rejection> {
        self.chars += text.chars().count();
        if self.chars > self.max_chars {
            return Err(Rejection::TooMuchText {
                chars: self.chars,
                limit: self.max_chars,
            });
        }
        self.text.push_str(text);
        Ok(())
    }

    pub fn finish(mut self) -> (String, Layout) {
        let kept = self.text.trim_end().len();
        self.text.truncate(kept);
        (self.text, self.layout)
    }
}

/// The headings of a markdown text (ATX `#` and setext), found by a
/// markdown parser, so a `#` in a code block is not one.
pub fn markdown_headings(text: &str) -> Vec<Heading> {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut headings = Vec::new();
    let mut open: Option<Heading> = None;
    for (event, range) in Parser::new(text).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                open = Some(Heading {
                    at: range.start,
                    end: range.end,
                    level: level as u8,
                    title: String::new(),
                });
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(heading) = open.as_mut()
                    && heading.title.len() < MAX_TITLE_CHARS * 4
                {
                    heading.title.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(mut heading) = open.take() {
                    heading.title = heading
                        .title
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .chars()
                        .take(MAX_TITLE_CHARS)
                        .collect();
                    if !heading.title.is_empty() {
                        headings.push(heading);
                    }
                    if headings.len() == MAX_HEADINGS {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    headings
}

impl TextBuilder {
    /// Writes a text rendered as markdown (HTML's is) as plain text: its
    /// headings marked in the layout instead of by `#`s.
    pub fn rendered_markdown(&mut self, rendered: &str) -> Result<(), Rejection> {
        let mut at = 0;
        for heading in markdown_headings(rendered) {
            self.paragraph(&rendered[at..heading.at])?;
            self.heading(heading.level, &heading.title)?;
            at = heading.end;
        }
        self.paragraph(&rendered[at..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_gets_its_pages_rows_and_heading_path() {
        let mut doc = TextBuilder::new(10_000);
        doc.page(1);
        doc.heading(1, "Installation").unwrap();
        doc.paragraph("Intro.").unwrap();
        doc.heading(2, " On   Linux ").unwrap();
        doc.paragraph("apt install.").unwrap();
        doc.page(2);
        doc.paragraph("still Linux").unwrap();
        doc.heading(2, "On Mac").unwrap();
        doc.page(3);
        doc.heading(1, "Usage").unwrap();
        doc.rows(1, 2, "h\na,b\n").unwrap();
        doc.rows(3, 3, "h\nc,d").unwrap();
        doc.paragraph("after").unwrap();
        let (text, layout) = doc.finish();
        assert_eq!(
            text,
            "Installation\n\nIntro.\n\nOn Linux\n\napt install.\n\nstill Linux\n\n\
             On Mac\n\nUsage\n\nh\na,b\n\nh\nc,d\n\nafter"
        );
        let find = |s: &str| {
            let at = text.find(s).unwrap();
            at..at + s.len()
        };
        let located = layout.locate(
            [
                find("Intro."),
                find("apt install.\n\nstill"),
                find("On Mac"),
                find("c,d"),
                find("a,b\n\nh\nc,d"),
                find("after"),
            ]
            .into_iter(),
        );
        let path = |p: &Provenance| p.headings.join(" > ");
        assert_eq!(path(&located[0]), "Installation");
        assert_eq!(
            (located[0].page_start, located[0].page_end),
            (Some(1), Some(1))
        );
        assert_eq!(path(&located[1]), "Installation > On Linux");
        assert_eq!(
            (located[1].page_start, located[1].page_end),
            (Some(1), Some(2))
        );
        assert_eq!(path(&located[2]), "Installation > On Mac");
        assert_eq!(path(&located[3]), "Usage");
        assert_eq!(
            (located[3].row_start, located[3].row_end),
            (Some(3), Some(3))
        );
        assert_eq!(
            (located[4].row_start, located[4].row_end),
            (Some(1), Some(3))
        );
        assert_eq!(located[4].page_start, Some(3));
        assert_eq!(located[5].row_start, None);
    }

    #[test]
    fn a_text_without_marks_has_no_provenance() {
        let located = Layout::default().locate(std::iter::once(0..10));
        assert_eq!(located, vec![Provenance::default()]);
    }

    #[test]
    fn the_builder_stops_at_its_bound() {
        let mut doc = TextBuilder::new(10);
        doc.paragraph("12345678").unwrap();
        assert!(matches!(
            doc.paragraph("9"),
            Err(Rejection::TooMuchText { limit: 10, .. })
        ));
    }

    #[test]
    fn markdown_headings_skip_code_blocks() {
        let text = "# Top\n\nbody\n\n```\n# not a heading\n```\n\nSub `x`\n---\n\ntext";
        let headings = markdown_headings(text);
        let titles: Vec<(&str, u8)> = headings
            .iter()
            .map(|h| (h.title.as_str(), h.level))
            .collect();
        assert_eq!(titles, [("Top", 1), ("Sub x", 2)]);
        assert_eq!(headings[1].at, text.find("Sub").unwrap());
    }
}
