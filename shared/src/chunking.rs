//! Token-aware chunking: cl100k tokens, markdown structure where there is one,
//! overlap between neighbours. The splitting itself is text-splitter's.

use crate::config::ChunkingConfig;
use text_splitter::{ChunkConfig, ChunkConfigError, MarkdownSplitter, TextSplitter};
use tiktoken_rs::CoreBPE;

/// One piece of a document, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub index: u32,
    pub text: String,
    pub token_count: u32,
    /// Offsets in characters (not bytes) into the parsed text.
    pub char_start: u32,
    pub char_end: u32,
}

pub struct Chunker {
    text: TextSplitter<&'static CoreBPE>,
    markdown: MarkdownSplitter<&'static CoreBPE>,
}

/// The cl100k tokenizer, loaded once per process.
pub fn tokenizer() -> &'static CoreBPE {
    tiktoken_rs::cl100k_base_singleton()
}

impl Chunker {
    pub fn new(config: &ChunkingConfig) -> Result<Chunker, ChunkConfigError> {
        let chunk_config = || -> Result<_, ChunkConfigError> {
            Ok(ChunkConfig::new(config.max_tokens)
                .with_overlap(config.overlap_tokens)?
                .with_sizer(tokenizer()))
        };
        Ok(Chunker {
            text: TextSplitter::new(chunk_config()?),
            markdown: MarkdownSplitter::new(chunk_config()?),
        })
    }

    pub fn chunk(&self, text: &str, markdown: bool) -> Vec<Chunk> {
        let pieces: Box<dyn Iterator<Item = text_splitter::ChunkCharIndex<'_>>> = if markdown {
            Box::new(self.markdown.chunk_char_indices(text))
        } else {
            Box::new(self.text.chunk_char_indices(text))
        };
        pieces
            .enumerate()
            .map(|(index, piece)| Chunk {
                index: index as u32,
                token_count: tokenizer().encode_ordinary(piece.chunk).len() as u32,
                char_start: piece.char_offset as u32,
                char_end: (piece.char_offset + piece.chunk.chars().count()) as u32,
                text: piece.chunk.to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunker(max_tokens: usize, overlap_tokens: usize) -> Chunker {
        Chunker::new(&ChunkingConfig {
            max_tokens,
            overlap_tokens,
        })
        .unwrap()
    }

    fn sample_text() -> String {
        let words = [
            "lighthouse",
            "keeper",
            "spiral",
            "stairs",
            "lamp",
            "fog",
            "ünïcødé",
            "ship",
            "harbour",
        ];
        let mut text = String::new();
        for i in 0..4000 {
            text.push_str(words[i * 7 % words.len()]);
            text.push(if i % 97 == 96 {
                '\n'
            } else if i % 13 == 12 {
                '.'
            } else {
                ' '
            });
            if i % 500 == 499 {
                text.push_str("\n\n## Section\n\n");
            }
        }
        text
    }

    #[test]
    fn every_chunk_fits_and_points_back_into_the_text() {
        let text = sample_text();
        let chars: Vec<char> = text.chars().collect();
        for markdown in [false, true] {
            for (max, overlap) in [(512, 64), (100, 0), (64, 16)] {
                let chunks = chunker(max, overlap).chunk(&text, markdown);
                assert!(
                    chunks.len() > text.len() / (max * 8),
                    "too few chunks: {}",
                    chunks.len()
                );
                for (i, chunk) in chunks.iter().enumerate() {
                    assert_eq!(chunk.index as usize, i);
                    assert!(
                        chunk.token_count as usize <= max,
                        "chunk {i}: {} > {max}",
                        chunk.token_count
                    );
                    assert!(chunk.token_count > 0);
                    let span: String = chars[chunk.char_start as usize..chunk.char_end as usize]
                        .iter()
                        .collect();
                    assert_eq!(span, chunk.text, "chunk {i} offsets");
                }
                // Chunks cover the text in order.
                assert!(chunks.windows(2).all(|w| w[0].char_start < w[1].char_start));
            }
        }
    }

    #[test]
    fn overlap_repeats_text_between_neighbours() {
        let text = sample_text();
        let with = chunker(100, 30).chunk(&text, false);
        assert!(
            with.windows(2)
                .filter(|w| w[1].char_start < w[0].char_end)
                .count()
                > with.len() / 2
        );
        let without = chunker(100, 0).chunk(&text, false);
        assert!(without.windows(2).all(|w| w[1].char_start >= w[0].char_end));
    }

    #[test]
    fn markdown_splits_at_headings() {
        let text = format!(
            "# One\n\n{}\n\n# Two\n\n{}",
            "alpha ".repeat(60),
            "beta ".repeat(60)
        );
        let chunks = chunker(80, 0).chunk(&text, true);
        assert!(
            chunks.iter().any(|c| c.text.starts_with("# Two")),
            "{chunks:#?}"
        );
        assert!(
            chunks
                .iter()
                .all(|c| !(c.text.contains("alpha") && c.text.contains("beta")))
        );
    }

    #[test]
    fn short_text_is_one_chunk() {
        let chunks = chunker(512, 64).chunk("  Just a line.  ", false);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "Just a line.");
        assert_eq!((chunks[0].char_start, chunks[0].char_end), (2, 14));
    }
}
