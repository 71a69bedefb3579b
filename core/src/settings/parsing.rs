//! Parsing: which parser, LlamaParse's endpoint and key, and what one parse
//! may cost.

use super::{Secret, Settings, choice, invalid, secs};
use crate::domain::format::Format;
use crate::error::ConfigError;
use crate::error::Rejection;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

choice! {
    pub enum ParserProvider from "PARSER" {
        /// In-process parsers for text, markdown, HTML and PDF text layers.
        #[default]
        Local,
        /// LlamaParse (LlamaCloud) for the configured extensions, local for the rest.
        LlamaParse,
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ParserSettings {
    /// `PARSER`: local (default) or llamaparse.
    #[serde(rename = "parser")]
    pub provider: ParserProvider,
    /// `PARSE_TIMEOUT_SECS` (30): wall time of one parse; below `STAGE_DEADLINE_SECS`.
    #[serde(rename = "parse_timeout_secs", deserialize_with = "secs")]
    timeout: Duration,
    /// `PARSE_MEMORY_MB` (512): address space of the process that parses.
    parse_memory_mb: u64,
    /// `PARSE_MAX_CHARS` (64 Mi): characters of text any document may give...
    parse_max_chars: usize,
    /// ...`PARSE_CHARS_PER_BYTE` (16): and an HTML or PDF file per byte of itself.
    parse_chars_per_byte: usize,
    /// `PARSE_MAX_DEPTH` (256): deepest element nesting of an HTML document.
    parse_max_depth: usize,
    /// `PARSE_MAX_PAGES` (10 000): most pages of a PDF (slides, sheets).
    parse_max_pages: usize,
    /// `PARSE_MAX_UNPACKED_MB` (128): most bytes an Office file or EPUB
    /// (a ZIP archive) may unpack to...
    parse_max_unpacked_mb: u64,
    /// ...`PARSE_MAX_ENTRIES` (10 000): and most files it may hold.
    parse_max_entries: usize,
    /// `PARSE_CONCURRENCY` (2): parses at once in one process.
    parse_concurrency: usize,
    /// `PARSE_SANDBOX_EXE`: the executable parse children run; by default
    /// the running one.
    pub parse_sandbox_exe: Option<PathBuf>,
}

/// LlamaParse's endpoint, key and patience (with `PARSER=llamaparse`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LlamaParseSettings {
    /// `LLAMAPARSE_BASE_URL`: up to, not including, `/api/v1`.
    #[serde(rename = "llamaparse_base_url")]
    pub base_url: String,
    /// `LLAMA_CLOUD_API_KEY` (required with `PARSER=llamaparse`).
    #[serde(rename = "llama_cloud_api_key")]
    api_key: Option<Secret>,
    /// `LLAMAPARSE_EXTENSIONS` (pdf): extensions sent to LlamaParse, comma-separated.
    #[serde(rename = "llamaparse_extensions")]
    pub extensions: Vec<String>,
    /// `LLAMAPARSE_HTTP_TIMEOUT_SECS` (60) of each request.
    #[serde(rename = "llamaparse_http_timeout_secs", deserialize_with = "secs")]
    pub timeout: Duration,
    /// `LLAMAPARSE_JOB_TIMEOUT_SECS` (1800): a parse job not done after this
    /// long fails the document.
    #[serde(rename = "llamaparse_job_timeout_secs", deserialize_with = "secs")]
    pub job_timeout: Duration,
    /// `LLAMAPARSE_FIRST_POLL_SECS` (2): first delay before checking a
    /// submitted job; doubles up to `LLAMAPARSE_MAX_POLL_SECS` (60).
    #[serde(rename = "llamaparse_first_poll_secs", deserialize_with = "secs")]
    pub first_poll_delay: Duration,
    #[serde(rename = "llamaparse_max_poll_secs", deserialize_with = "secs")]
    pub max_poll_delay: Duration,
}

impl Default for LlamaParseSettings {
    fn default() -> Self {
        LlamaParseSettings {
            base_url: "https://api.cloud.llamaindex.ai".into(),
            api_key: None,
            extensions: vec!["pdf".into()],
            timeout: Duration::from_secs(60),
            job_timeout: Duration::from_secs(1800),
            first_poll_delay: Duration::from_secs(2),
            max_poll_delay: Duration::from_secs(60),
        }
    }
}

impl Settings for LlamaParseSettings {
    fn check(mut self) -> Result<Self, ConfigError> {
        if self.api_key.is_none() {
            return Err(ConfigError::Missing {
                name: "LLAMA_CLOUD_API_KEY".into(),
            });
        }
        self.base_url = self.base_url.trim_end_matches('/').to_string();
        self.extensions = self
            .extensions
            .iter()
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        Ok(self)
    }
}

impl LlamaParseSettings {
    pub fn api_key(&self) -> Secret {
        self.api_key.clone().unwrap_or_default()
    }
}

impl Default for ParserSettings {
    fn default() -> Self {
        let limits = ParseLimits::default();
        ParserSettings {
            provider: ParserProvider::Local,
            timeout: limits.timeout,
            parse_memory_mb: limits.memory_bytes >> 20,
            parse_max_chars: limits.max_chars,
            parse_chars_per_byte: limits.chars_per_byte,
            parse_max_depth: limits.max_depth,
            parse_max_pages: limits.max_pages,
            parse_max_unpacked_mb: limits.max_unpacked_bytes >> 20,
            parse_max_entries: limits.max_entries,
            parse_concurrency: limits.concurrency,
            parse_sandbox_exe: None,
        }
    }
}

impl Settings for ParserSettings {
    fn check(self) -> Result<Self, ConfigError> {
        if self.timeout.is_zero() || self.parse_memory_mb < 64 {
            return Err(invalid(
                "PARSE_TIMEOUT_SECS/PARSE_MEMORY_MB",
                format!("{:?}/{}", self.timeout, self.parse_memory_mb),
                "parsing needs at least 1 s and 64 MB",
            ));
        }
        Ok(self)
    }
}

impl ParserSettings {
    /// What parsing one document may cost.
    pub fn limits(&self) -> ParseLimits {
        ParseLimits {
            timeout: self.timeout,
            memory_bytes: self.parse_memory_mb.saturating_mul(1 << 20),
            max_chars: self.parse_max_chars,
            chars_per_byte: self.parse_chars_per_byte,
            max_depth: self.parse_max_depth,
            max_pages: self.parse_max_pages,
            max_unpacked_bytes: self.parse_max_unpacked_mb.saturating_mul(1 << 20),
            max_entries: self.parse_max_entries,
            concurrency: self.parse_concurrency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::env;
    use super::*;

    #[test]
    fn llamaparse_needs_its_key_and_limits_read_in_their_units() {
        let err = env(&[]).load::<LlamaParseSettings>().unwrap_err();
        assert_eq!(err.to_string(), "LLAMA_CLOUD_API_KEY is not set");
        let llamaparse = env(&[
            ("LLAMA_CLOUD_API_KEY", "llx-1"),
            ("LLAMAPARSE_EXTENSIONS", ".PDF, docx,"),
            ("LLAMAPARSE_JOB_TIMEOUT_SECS", "60"),
        ])
        .load::<LlamaParseSettings>()
        .unwrap();
        assert_eq!(llamaparse.extensions, ["pdf", "docx"]);
        assert_eq!(llamaparse.job_timeout, Duration::from_secs(60));
        let settings = env(&[("PARSE_MEMORY_MB", "384")])
            .load::<ParserSettings>()
            .unwrap();
        assert_eq!(settings.limits().memory_bytes, 384 << 20);
        assert_eq!(settings.limits().timeout, Duration::from_secs(30));
        let err = env(&[("PARSE_MEMORY_MB", "32")])
            .load::<ParserSettings>()
            .unwrap_err();
        assert!(err.to_string().contains("at least 1 s and 64 MB"), "{err}");
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
