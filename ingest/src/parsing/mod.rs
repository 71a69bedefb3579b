//! Turns uploaded bytes into text and its layout: plain text, markdown, HTML,
//! PDF (text layer), Word, PowerPoint, spreadsheets, CSV/TSV and JSON.
//!
//! Every parse is bounded: the text it may give ([`OutputBounds`]: characters,
//! HTML nesting depth, PDF pages) here, and its time and memory by the
//! [`sandbox`] that runs it in a child process.

pub mod archive;
mod delimited;
mod docx;
mod epub;
mod html;
mod json;
pub mod layout;
mod pdf;
mod pptx;
pub mod sandbox;
mod spreadsheet;
mod table;
mod text;
mod xml;

use bytes::Bytes;
use docpipe_core::domain::format::Format;
use docpipe_core::domain::keys::STORED_TEXT_EXTENSION;
use docpipe_core::error::Rejection;
use docpipe_core::settings::{OutputBounds, ParseLimits};
use layout::{Layout, TextBuilder};
use serde::{Deserialize, Serialize};

/// The text of a document, ready for chunking.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDocument {
    pub format: Format,
    pub text: String,
    /// Pages, for formats that have them.
    pub pages: Option<u32>,
    pub layout: Layout,
}

/// A parsed text as stored between parse and chunk: a JSON line with what
/// chunking needs besides the text, then the text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredText {
    /// Whether chunking may follow markdown structure.
    pub markdown: bool,
    pub layout: Layout,
    #[serde(skip)]
    pub text: String,
}

impl StoredText {
    pub fn to_bytes(&self) -> Bytes {
        let mut bytes = serde_json::to_vec(self).expect("a layout serializes");
        bytes.push(b'\n');
        bytes.extend_from_slice(self.text.as_bytes());
        bytes.into()
    }

    /// The text stored under `key`. Takes the bytes so that the text is not
    /// copied (a 50 MB text is held once).
    pub fn from_bytes(key: &str, bytes: Bytes) -> Result<StoredText, String> {
        let mut bytes = Vec::from(bytes);
        let mut stored = if key.ends_with(STORED_TEXT_EXTENSION) {
            let line = bytes.iter().position(|&b| b == b'\n').ok_or("no header")?;
            let stored: StoredText =
                serde_json::from_slice(&bytes[..line]).map_err(|e| e.to_string())?;
            bytes.drain(..=line);
            stored
        } else {
            StoredText {
                markdown: key.ends_with(".md"),
                ..StoredText::default()
            }
        };
        stored.text = String::from_utf8(bytes).map_err(|e| e.to_string())?;
        Ok(stored)
    }
}

/// Longest run of characters without whitespace a document may hold: far
/// beyond any word or URL, short of a blob that would cost thousands of
/// meaningless chunks.
pub const MAX_UNBROKEN_CHARS: usize = 64 * 1024;

/// Text of the file, within `bounds`. Takes the bytes so that UTF-8 text
/// becomes the document without a copy (a 50 MB file is held once, not
/// twice). Runs in this process with no bound on its time or memory: the
/// pipeline runs it through [`sandbox::ParseSandbox`].
pub fn parse(key: &str, bytes: Bytes, bounds: &OutputBounds) -> Result<ParsedDocument, Rejection> {
    let format = Format::from_key(key)?;
    if bytes.is_empty() {
        return Err(Rejection::EmptyFile);
    }
    let (text, layout, pages) = match format {
        Format::Text => (text::decode(bytes)?, Layout::default(), None),
        Format::Markdown => with_headings(text::decode(bytes)?),
        Format::Html => {
            let mut doc = TextBuilder::new(bounds.max_chars);
            doc.rendered_markdown(&html::to_text(&text::decode(bytes)?, bounds)?)?;
            unpaged(doc.finish())
        }
        Format::Epub => unpaged(epub::parse(&bytes, bounds)?),
        Format::Pdf => paged(pdf::parse(&bytes, bounds)?),
        Format::Docx => unpaged(docx::parse(&bytes, bounds)?),
        Format::Pptx => paged(pptx::parse(&bytes, bounds)?),
        Format::Xlsx | Format::Xls | Format::Ods => {
            paged(spreadsheet::parse(&bytes, format, bounds)?)
        }
        Format::Csv | Format::Tsv => {
            unpaged(delimited::parse(&text::decode(bytes)?, format, bounds)?)
        }
        Format::Json | Format::Jsonl => {
            unpaged(json::parse(&text::decode(bytes)?, format, bounds)?)
        }
    };
    check_length(text.chars().count(), bounds)?;
    if text.trim().is_empty() {
        return Err(Rejection::NoText);
    }
    let longest = text
        .split(char::is_whitespace)
        .map(|run| run.chars().count())
        .max()
        .unwrap_or(0);
    if longest > MAX_UNBROKEN_CHARS {
        return Err(Rejection::UnbrokenText {
            chars: longest,
            limit: MAX_UNBROKEN_CHARS,
        });
    }
    Ok(ParsedDocument {
        format,
        text,
        pages,
        layout,
    })
}

/// A text and layout whose pages (slides, sheets) are counted.
fn paged((text, layout): (String, Layout)) -> (String, Layout, Option<u32>) {
    let pages = layout.pages.len() as u32;
    (text, layout, Some(pages))
}

fn unpaged((text, layout): (String, Layout)) -> (String, Layout, Option<u32>) {
    (text, layout, None)
}

/// A markdown text (or one rendered as markdown, like HTML's), with its
/// headings marked.
fn with_headings(text: String) -> (String, Layout, Option<u32>) {
    let layout = Layout {
        headings: layout::markdown_headings(&text),
        ..Layout::default()
    };
    (text, layout, None)
}

/// Why a `format` file cannot be read, in at most 300 characters of `detail`.
pub fn unreadable(format: &str, detail: impl std::fmt::Display) -> Rejection {
    Rejection::UnreadableDocument {
        format: format.to_string(),
        detail: detail.to_string().chars().take(300).collect(),
    }
}

/// Refuses text over the bounds.
pub fn check_length(chars: usize, bounds: &OutputBounds) -> Result<(), Rejection> {
    if chars > bounds.max_chars {
        return Err(Rejection::TooMuchText {
            chars,
            limit: bounds.max_chars,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(key: &str, bytes: Bytes) -> Result<ParsedDocument, Rejection> {
        let bounds = ParseLimits::default().bounds(Format::from_key(key)?, bytes.len());
        super::parse(key, bytes, &bounds)
    }

    fn parsed(key: &str, bytes: &[u8]) -> String {
        parse(key, Bytes::copy_from_slice(bytes)).unwrap().text
    }

    #[test]
    fn text_and_markdown_pass_through() {
        assert_eq!(parsed("a.txt", b"hello\nworld"), "hello\nworld");
        assert_eq!(parsed("a.md", b"# Title\n\nbody"), "# Title\n\nbody");
        assert_eq!(parsed("a.txt", b"\xEF\xBB\xBFbom"), "bom");
    }

    #[test]
    fn utf16_with_bom_is_decoded() {
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("héllo".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain("héllo".encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(parsed("a.txt", &le), "héllo");
        assert_eq!(parsed("a.txt", &be), "héllo");
    }

    #[test]
    fn html_loses_tags_scripts_and_styles() {
        let html = b"<html><head><style>p{color:red}</style><script>alert('x')</script></head>\
                     <body><h1>Title</h1><p>Some <b>bold</b> text.</p><script>var y=1;</script></body></html>";
        let text = parsed("a.html", html);
        assert!(
            text.contains("Title") && text.contains("Some bold text."),
            "{text}"
        );
        for leaked in ["<", "alert", "color:red", "var y"] {
            assert!(!text.contains(leaked), "{leaked:?} in {text:?}");
        }
    }

    #[test]
    fn nesting_is_bounded_from_below_before_the_parse() {
        assert_eq!(
            html::container_depth("<div><p>a<div>b</div></div><div>c</div>"),
            2
        );
        assert_eq!(html::container_depth("<DIV><Span>x</SPAN></div>"), 2);
        // Comments, scripts and self-closed tags do not nest.
        let hidden = "<!-- <div><div> --><script>'<div><div><div>'</script><div/>";
        assert_eq!(html::container_depth(hidden), 0);
        // Unclosed containers nest, as the parser nests them.
        assert_eq!(html::container_depth(&"<div>".repeat(300)), 300);
        let deep = format!("<html><body>{}x</body></html>", "<div>".repeat(300));
        assert!(matches!(
            parse("a.html", deep.into()),
            Err(Rejection::TooDeep {
                depth: 300,
                limit: 256
            })
        ));
    }

    #[test]
    fn pdf_text_layer_is_extracted() {
        let pdf = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../samples/docs/lighthouse-handbook.pdf"
        ))
        .unwrap();
        let doc = parse("a.pdf", pdf.into()).unwrap();
        assert_eq!(doc.pages, Some(2));
        assert!(doc.text.contains("lighthouse keeper"), "{:?}", doc.text);
        assert!(doc.text.contains("Fresnel lens"), "{:?}", doc.text);
    }

    #[test]
    fn bad_input_gets_a_specific_reason() {
        assert_eq!(
            parse("a.txt", Bytes::from_static(b"")),
            Err(Rejection::EmptyFile)
        );
        assert_eq!(
            parse("a.exe", Bytes::from_static(b"MZ")),
            Err(Rejection::UnsupportedType {
                extension: "exe".into()
            })
        );
        assert_eq!(
            parse("a.txt", Bytes::from_static(b"ab\0cd")),
            Err(Rejection::Binary { offset: 2 })
        );
        assert_eq!(
            parse("a.txt", Bytes::from_static(b"caf\xE9 au lait")),
            Err(Rejection::NotUtf8 { offset: 3 })
        );
        assert_eq!(
            parse("a.txt", Bytes::from_static(b"  \n\t ")),
            Err(Rejection::NoText)
        );
        assert_eq!(
            parse("a.html", Bytes::from_static(b"<script>only()</script>")),
            Err(Rejection::NoText)
        );
        assert!(matches!(
            parse("a.pdf", Bytes::from_static(b"%PDF-1.4 truncated")),
            Err(Rejection::UnreadablePdf { .. })
        ));
        assert!(matches!(
            parse("a.pdf", Bytes::from_static(b"not a pdf at all")),
            Err(Rejection::UnreadablePdf { .. })
        ));
    }
}
