//! The document formats read, by extension: the one list the upload API's
//! allow-list, `unsupported_type`'s message and the user guide follow.

use crate::error::Rejection;
use serde::{Deserialize, Serialize};

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
    pub(crate) fn amplifies(self) -> bool {
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
        assert_eq!(list, crate::error::SUPPORTED_EXTENSIONS);
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
}
