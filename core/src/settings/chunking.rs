//! Chunking: how large chunks are and how many texts a process holds at once.

use super::embedding::local_model_dir;
use super::{EmbeddingProvider, Settings, invalid};
use crate::error::ConfigError;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default chunk size in cl100k tokens.
pub const DEFAULT_CHUNK_TOKENS: usize = 512;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ChunkingSettings {
    /// `CHUNK_TOKENS` (512): the largest chunk, in cl100k tokens.
    #[serde(rename = "chunk_tokens")]
    pub max_tokens: usize,
    /// `CHUNK_MIN_TOKENS` (a 64th of `CHUNK_TOKENS`, [`default_min_tokens`]):
    /// paragraphs join until a chunk holds this many tokens. Smaller: an
    /// edited paragraph re-embeds less beside itself, at more rows.
    #[serde(rename = "chunk_min_tokens")]
    min_tokens: Option<usize>,
    /// `CHUNK_OVERLAP_TOKENS` (64): overlap between neighbouring chunks.
    #[serde(rename = "chunk_overlap_tokens")]
    pub overlap_tokens: usize,
    /// `CHUNK_HEADER` (`none`): what each chunk is embedded under, so that
    /// its vector knows where it sits ([`ChunkHeader`]).
    #[serde(rename = "chunk_header")]
    pub header: ChunkHeader,
    /// `CHUNK_CONCURRENCY` (2): texts a process chunks at once, each held whole.
    #[serde(rename = "chunk_concurrency")]
    pub concurrency: usize,
    /// `EMBEDDING_PROVIDER` and `EMBEDDING_MODEL_DIR`: with the local
    /// provider, chunk sizes count the model's own tokens, and no chunk is
    /// larger than the model reads.
    #[serde(rename = "embedding_provider")]
    provider: EmbeddingProvider,
    #[serde(rename = "embedding_model_dir")]
    model_dir: Option<PathBuf>,
}

impl Default for ChunkingSettings {
    fn default() -> Self {
        ChunkingSettings {
            max_tokens: DEFAULT_CHUNK_TOKENS,
            min_tokens: None,
            overlap_tokens: 64,
            header: ChunkHeader::None,
            concurrency: 2,
            provider: EmbeddingProvider::Mock,
            model_dir: None,
        }
    }
}

impl Settings for ChunkingSettings {
    fn check(self) -> Result<Self, ConfigError> {
        local_model_dir(self.provider, self.model_dir.as_deref())?;
        if self.max_tokens == 0 {
            return Err(invalid("CHUNK_TOKENS", 0, "must be at least 1"));
        }
        if self.min_tokens() > self.max_tokens {
            return Err(invalid(
                "CHUNK_MIN_TOKENS",
                self.min_tokens(),
                "must not exceed CHUNK_TOKENS",
            ));
        }
        if self.overlap_tokens >= self.max_tokens {
            return Err(invalid(
                "CHUNK_OVERLAP_TOKENS",
                self.overlap_tokens,
                "must be smaller than CHUNK_TOKENS",
            ));
        }
        Ok(self)
    }
}

impl ChunkingSettings {
    pub fn new(max_tokens: usize, min_tokens: usize, overlap_tokens: usize) -> Self {
        ChunkingSettings {
            max_tokens,
            min_tokens: Some(min_tokens),
            overlap_tokens,
            ..ChunkingSettings::default()
        }
    }

    pub fn min_tokens(&self) -> usize {
        self.min_tokens
            .unwrap_or_else(|| default_min_tokens(self.max_tokens))
    }

    /// The directory of the local model whose tokens size chunks, if any.
    pub fn model_dir(&self) -> Option<&Path> {
        local_model_dir(self.provider, self.model_dir.as_deref())
            .ok()
            .flatten()
    }
}

/// A line embedded before each chunk's text (a contextual chunk header):
/// the chunk's text, its keywords and its token count stay its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChunkHeader {
    /// The text alone.
    None,
    /// The titles of the headings above the chunk, outermost first.
    Headings,
    /// The document's file name, then its headings.
    NameAndHeadings,
}

/// `CHUNK_MIN_TOKENS` by default: a 64th of the chunk size (8 of 512). On
/// the quality bench's three query sets it ranks as well as or better than
/// a 16th on each, with both embedders, and an edit of 5 % of paragraphs
/// re-embeds 7.6 % of the tokens against 10.4 %; it stores 1.24–1.34× the
/// chunks (docs/benchmarks/search-quality.md).
pub fn default_min_tokens(max_tokens: usize) -> usize {
    max_tokens / 64
}

#[cfg(test)]
mod tests {
    use super::super::env;
    use super::*;

    #[test]
    fn sizes_are_checked_against_each_other() {
        let defaults = env(&[]).load::<ChunkingSettings>().unwrap();
        assert_eq!((defaults.max_tokens, defaults.min_tokens()), (512, 8));
        assert_eq!(defaults.overlap_tokens, 64);
        let err = env(&[("CHUNK_TOKENS", "64"), ("CHUNK_OVERLAP_TOKENS", "64")])
            .load::<ChunkingSettings>()
            .unwrap_err();
        assert!(
            err.to_string().contains("smaller than CHUNK_TOKENS"),
            "{err}"
        );
        let err = env(&[("CHUNK_TOKENS", "64"), ("CHUNK_MIN_TOKENS", "65")])
            .load::<ChunkingSettings>()
            .unwrap_err();
        assert!(
            err.to_string().contains("must not exceed CHUNK_TOKENS"),
            "{err}"
        );
    }
}
