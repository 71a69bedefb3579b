//! Turns uploaded bytes into text: plain text, markdown, HTML and PDF (text layer).

use crate::error::Rejection;
use bytes::Bytes;

/// What kind of document a key names, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
}

impl Format {
    pub fn from_key(key: &str) -> Result<Format, Rejection> {
        let name = key.rsplit('/').next().unwrap_or(key);
        let extension = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
            _ => String::new(),
        };
        match extension.as_str() {
            "txt" | "text" => Ok(Format::Text),
            "md" | "markdown" => Ok(Format::Markdown),
            "html" | "htm" => Ok(Format::Html),
            "pdf" => Ok(Format::Pdf),
            _ => Err(Rejection::UnsupportedType { extension }),
        }
    }

    /// Markdown keeps its structure through parsing, so chunking can follow it.
    pub fn is_markdown(self) -> bool {
        self == Format::Markdown
    }
}

/// The text of a document, ready for chunking.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDocument {
    pub format: Format,
    pub text: String,
    /// Pages, for formats that have them.
    pub pages: Option<u32>,
}

/// Longest run of characters without whitespace a document may hold: far
/// beyond any word or URL, short of a blob that would cost thousands of
/// meaningless chunks.
pub const MAX_UNBROKEN_CHARS: usize = 64 * 1024;

/// Width for HTML rendering: wide enough that lines are never wrapped.
const HTML_LINE_WIDTH: usize = 1 << 20;

/// Text of the file. Takes the bytes so that UTF-8 text becomes the document
/// without a copy (a 50 MB file is held once, not twice).
pub fn parse(key: &str, bytes: Bytes) -> Result<ParsedDocument, Rejection> {
    let format = Format::from_key(key)?;
    if bytes.is_empty() {
        return Err(Rejection::EmptyFile);
    }
    let (text, pages) = match format {
        Format::Text | Format::Markdown => (decode_text(bytes)?, None),
        Format::Html => (html_to_text(&decode_text(bytes)?)?, None),
        Format::Pdf => {
            let pages = pdf_pages(&bytes)?;
            (pages.join("\n\n"), Some(pages.len() as u32))
        }
    };
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
    })
}

/// UTF-8 (with or without BOM) or BOM-marked UTF-16; anything else is refused
/// rather than guessed at.
fn decode_text(bytes: Bytes) -> Result<String, Rejection> {
    let utf16 = |bytes: &[u8], to_u16: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| to_u16([pair[0], pair[1]]))
            .collect();
        String::from_utf16(&units).map_err(|_| Rejection::NotUtf8 { offset: 0 })
    };
    match bytes[..] {
        [0xEF, 0xBB, 0xBF, ..] => decode_utf8(bytes.slice(3..)),
        [0xFF, 0xFE, ref rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, ref rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => decode_utf8(bytes),
    }
}

fn decode_utf8(bytes: Bytes) -> Result<String, Rejection> {
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(Rejection::Binary { offset });
    }
    // No copy when the buffer is ours alone.
    String::from_utf8(Vec::from(bytes)).map_err(|e| Rejection::NotUtf8 {
        offset: e.utf8_error().valid_up_to(),
    })
}

fn html_to_text(html: &str) -> Result<String, Rejection> {
    html2text::config::plain_no_decorate()
        .string_from_read(html.as_bytes(), HTML_LINE_WIDTH)
        .map_err(|_| Rejection::NoText)
}

/// Text of each page. The PDF crate can panic on malformed files; that is
/// the file's fault, so it becomes a rejection.
fn pdf_pages(bytes: &[u8]) -> Result<Vec<String>, Rejection> {
    let extracted = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes));
    match extracted {
        Ok(Ok(pages)) => Ok(pages),
        Ok(Err(e)) => Err(Rejection::UnreadablePdf {
            detail: e.to_string(),
        }),
        Err(_) => Err(Rejection::UnreadablePdf {
            detail: "the file is malformed".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(key: &str, bytes: &[u8]) -> String {
        parse(key, Bytes::copy_from_slice(bytes)).unwrap().text
    }

    #[test]
    fn formats_come_from_the_extension() {
        assert_eq!(Format::from_key("uploads/t/a.TXT"), Ok(Format::Text));
        assert_eq!(
            Format::from_key("uploads/t/dir.v2/a.md"),
            Ok(Format::Markdown)
        );
        assert_eq!(Format::from_key("uploads/t/a.htm"), Ok(Format::Html));
        assert_eq!(Format::from_key("uploads/t/a.pdf"), Ok(Format::Pdf));
        assert_eq!(
            Format::from_key("uploads/t/a.docx"),
            Err(Rejection::UnsupportedType {
                extension: "docx".into()
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
