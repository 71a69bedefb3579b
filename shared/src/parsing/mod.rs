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

use crate::error::Rejection;
use bytes::Bytes;
use layout::{Layout, TextBuilder};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What kind of document a key names, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
    Pptx,
    Xlsx,
    Xls,
    Ods,
    Csv,
    Tsv,
    Json,
    Jsonl,
    Epub,
}

/// Every extension read, and its format: the one list the upload API's
/// allow-list, `unsupported_type`'s message and the user guide follow.
pub const EXTENSIONS: &[(&str, Format)] = &[
    ("txt", Format::Text),
    ("text", Format::Text),
    ("md", Format::Markdown),
    ("markdown", Format::Markdown),
    ("html", Format::Html),
    ("htm", Format::Html),
    ("pdf", Format::Pdf),
    ("docx", Format::Docx),
    ("pptx", Format::Pptx),
    ("xlsx", Format::Xlsx),
    ("xls", Format::Xls),
    ("ods", Format::Ods),
    ("csv", Format::Csv),
    ("tsv", Format::Tsv),
    ("json", Format::Json),
    ("jsonl", Format::Jsonl),
    ("epub", Format::Epub),
];

/// The extensions read, as `unsupported_type` lists them: `.txt, .text, …`.
pub fn supported_extensions() -> String {
    let names: Vec<String> = EXTENSIONS
        .iter()
        .map(|(ext, _)| format!(".{ext}"))
        .collect();
    names.join(", ")
}

impl Format {
    pub fn from_key(key: &str) -> Result<Format, Rejection> {
        let name = crate::domain::keys::file_name(key);
        let extension = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
            _ => String::new(),
        };
        EXTENSIONS
            .iter()
            .find(|(known, _)| *known == extension)
            .map(|(_, format)| *format)
            .ok_or(Rejection::UnsupportedType { extension })
    }

    /// The format's name as stored and shown (`text`, `markdown`, `pdf`…).
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Pptx => "pptx",
            Format::Xlsx => "xlsx",
            Format::Xls => "xls",
            Format::Ods => "ods",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Epub => "epub",
        }
    }

    /// The format's media type: each chunk's `content_type` attribute.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain",
            Format::Markdown => "text/markdown",
            Format::Html => "text/html",
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            Format::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Xls => "application/vnd.ms-excel",
            Format::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            Format::Csv => "text/csv",
            Format::Tsv => "text/tab-separated-values",
            Format::Json => "application/json",
            Format::Jsonl => "application/jsonl",
            Format::Epub => "application/epub+zip",
        }
    }

    /// Markdown keeps its structure through parsing, so chunking can follow it.
    pub fn is_markdown(self) -> bool {
        self == Format::Markdown
    }

    /// Formats whose text can be far larger than their bytes (markup that
    /// multiplies, compressed streams and archives).
    fn amplifies(self) -> bool {
        !matches!(
            self,
            Format::Text
                | Format::Markdown
                | Format::Csv
                | Format::Tsv
                | Format::Json
                | Format::Jsonl
        )
    }
}

/// What parsing one document may cost. The defaults fit a 256 MB function
/// handling a 100 MiB file; each is a setting (docs/operate/configuration.md).
#[derive(Debug, Clone, PartialEq)]
pub struct ParseLimits {
    /// Wall time of one parse (`PARSE_TIMEOUT_SECS`).
    pub timeout: Duration,
    /// Address space of the process that parses (`PARSE_MEMORY_MB`).
    pub memory_bytes: u64,
    /// Characters of text any document may give (`PARSE_MAX_CHARS`)...
    pub max_chars: usize,
    /// ...and an HTML or PDF file at most this many per byte of itself
    /// (`PARSE_CHARS_PER_BYTE`), but never fewer than [`MIN_CHARS_ALLOWED`].
    pub chars_per_byte: usize,
    /// Deepest element nesting of an HTML document (`PARSE_MAX_DEPTH`).
    pub max_depth: usize,
    /// Most pages of a PDF, slides of a presentation, sheets of a workbook
    /// (`PARSE_MAX_PAGES`).
    pub max_pages: usize,
    /// Most bytes a ZIP-based document (Office, EPUB) may unpack to
    /// (`PARSE_MAX_UNPACKED_MB`)...
    pub max_unpacked_bytes: u64,
    /// ...and most files it may hold (`PARSE_MAX_ENTRIES`).
    pub max_entries: usize,
    /// Parses at once in one process (`PARSE_CONCURRENCY`).
    pub concurrency: usize,
}

/// Characters of text any HTML or PDF file may give, however small.
pub const MIN_CHARS_ALLOWED: usize = 1 << 20;

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            timeout: Duration::from_secs(30),
            memory_bytes: 512 << 20,
            max_chars: 64 << 20,
            chars_per_byte: 16,
            max_depth: 256,
            max_pages: 10_000,
            max_unpacked_bytes: 128 << 20,
            max_entries: 10_000,
            concurrency: 2,
        }
    }
}

impl ParseLimits {
    /// The bounds on the text of a document of `size` bytes in `format`.
    pub fn bounds(&self, format: Format, size: usize) -> OutputBounds {
        let max_chars = if format.amplifies() {
            size.saturating_mul(self.chars_per_byte)
                .max(MIN_CHARS_ALLOWED)
                .min(self.max_chars)
        } else {
            self.max_chars
        };
        OutputBounds {
            max_chars,
            max_depth: self.max_depth,
            max_pages: self.max_pages,
            max_unpacked_bytes: self.max_unpacked_bytes,
            max_entries: self.max_entries,
        }
    }
}

/// The most text one document may give, and the structure it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputBounds {
    pub max_chars: usize,
    pub max_depth: usize,
    pub max_pages: usize,
    pub max_unpacked_bytes: u64,
    pub max_entries: usize,
}

impl OutputBounds {
    /// Refuses a document of more than `max_pages` pages (slides, sheets).
    pub fn check_pages(&self, pages: usize) -> Result<(), Rejection> {
        if pages > self.max_pages {
            return Err(Rejection::TooManyPages {
                pages,
                limit: self.max_pages,
            });
        }
        Ok(())
    }
}

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

/// The extension of a stored text in this form; texts stored before it
/// (`.md`, `.txt`) are the bare text.
pub const STORED_TEXT_EXTENSION: &str = "parsed";

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

    /// The user guide and the upload API's OpenAPI document show the one list,
    /// where users look for it.
    #[test]
    fn the_readme_and_the_api_list_the_supported_extensions() {
        let guide = [
            include_str!("../../../docs/guide/cli.md"),
            include_str!("../../../docs/guide/failures.md"),
        ]
        .concat();
        let openapi = include_str!("../../../api/openapi.yaml");
        let openapi = openapi.split_whitespace().collect::<Vec<_>>().join(" ");
        let (last, others) = EXTENSIONS.split_last().unwrap();
        let names: Vec<&str> = others.iter().map(|(ext, _)| *ext).collect();
        let documented = format!("extension {} or {}", names.join(", "), last.0);
        assert!(
            openapi.contains(&documented),
            "openapi.yaml lacks {documented:?}"
        );
        let list = supported_extensions();
        assert_eq!(
            list,
            ".txt, .text, .md, .markdown, .html, .htm, .pdf, .docx, .pptx, .xlsx, .xls, .ods, \
             .csv, .tsv, .json, .jsonl, .epub"
        );
        for place in [
            format!("| `unsupported_type` | extension is not one of {list} |"),
            format!("supported: {list}"),
        ] {
            assert!(guide.contains(&place), "the user guide lacks {place:?}");
        }
        assert!(matches!(
            Format::from_key("uploads/acme/report.doc"),
            Err(Rejection::UnsupportedType { extension }) if extension == "doc"
        ));
        for (extension, format) in EXTENSIONS {
            let key = format!("uploads/acme/a.{}", extension.to_uppercase());
            assert_eq!(Format::from_key(&key), Ok(*format));
        }
    }

    fn parse(key: &str, bytes: Bytes) -> Result<ParsedDocument, Rejection> {
        let bounds = ParseLimits::default().bounds(Format::from_key(key)?, bytes.len());
        super::parse(key, bytes, &bounds)
    }

    fn parsed(key: &str, bytes: &[u8]) -> String {
        parse(key, Bytes::copy_from_slice(bytes)).unwrap().text
    }

    #[test]
    fn formats_come_from_the_extension() {
        for (_, format) in EXTENSIONS {
            let serialized = serde_json::to_string(&format).unwrap();
            assert_eq!(serialized, format!("\"{}\"", format.name()));
        }
        assert_eq!(Format::from_key("uploads/t/a.TXT"), Ok(Format::Text));
        assert_eq!(
            Format::from_key("uploads/t/dir.v2/a.md"),
            Ok(Format::Markdown)
        );
        assert_eq!(Format::from_key("uploads/t/a.htm"), Ok(Format::Html));
        assert_eq!(Format::from_key("uploads/t/a.pdf"), Ok(Format::Pdf));
        assert_eq!(
            Format::from_key("uploads/t/a.doc"),
            Err(Rejection::UnsupportedType {
                extension: "doc".into()
            })
        );
        assert_eq!(
            Format::from_key("uploads/t/README"),
            Err(Rejection::UnsupportedType {
                extension: "".into()
            })
        );
        assert_eq!(
            Format::from_key("uploads/t/.txt"),
            Err(Rejection::UnsupportedType {
                extension: "".into()
            })
        );
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
