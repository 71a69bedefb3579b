//! Token-aware chunking: cl100k tokens, markdown structure where there is one,
//! overlap between neighbours. The splitting itself is text-splitter's.
//!
//! Chunks follow paragraphs: the text is first cut at blank lines into
//! sections of one paragraph each (a paragraph under a quarter of the chunk
//! size, a heading say, joins the next), and only a section over the chunk
//! size is split further. Where a cut falls depends on the paragraph alone,
//! not on everything before it, so editing a paragraph changes only its own
//! chunks and a re-ingest pays the embedding provider for just those.

use crate::config::ChunkingConfig;
use text_splitter::{ChunkConfig, ChunkConfigError, ChunkSizer, MarkdownSplitter, TextSplitter};
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

/// Splits documents into chunks of at most `max_tokens` cl100k tokens, cut
/// at paragraph breaks: paragraphs join until a chunk holds `min_tokens`.
pub struct Chunker {
    max_tokens: usize,
    min_tokens: usize,
    overlap_tokens: usize,
    /// Exact splitter, for the rare chunk the fast one lets run over.
    exact: TextSplitter<&'static CoreBPE>,
}

/// The cl100k tokenizer, loaded once per process.
pub fn tokenizer() -> &'static CoreBPE {
    tiktoken_rs::cl100k_base_singleton()
}

/// Sizes any slice of one text from a single tokenization of the whole text:
/// the splitter probes many candidate chunks, and re-tokenizing each one made
/// chunking ~15x slower than tokenizing once. A slice's size is the number of
/// the text's tokens it overlaps, which can differ from tokenizing the slice
/// alone by a token or two at its edges; [`Chunker::chunk`] checks exactly.
struct TokenOffsets<'t> {
    text: &'t str,
    /// Byte offset at which each token of `text` starts, ascending.
    starts: Vec<usize>,
}

impl<'t> TokenOffsets<'t> {
    fn new(text: &'t str) -> Self {
        let mut starts = Vec::new();
        let mut offset = 0;
        for token in tokenizer().encode_ordinary(text) {
            starts.push(offset);
            offset += tokenizer()
                .decode_bytes(&[token])
                .map_or(0, |bytes| bytes.len());
        }
        TokenOffsets { text, starts }
    }
}

impl ChunkSizer for TokenOffsets<'_> {
    fn size(&self, chunk: &str) -> usize {
        let start = (chunk.as_ptr() as usize).wrapping_sub(self.text.as_ptr() as usize);
        if start > self.text.len() || start + chunk.len() > self.text.len() {
            return tokenizer().encode_ordinary(chunk).len();
        }
        let end = start + chunk.len();
        // Tokens starting inside the slice, plus one straddling its start.
        let first = self.starts.partition_point(|&s| s < start);
        let past_end = self.starts.partition_point(|&s| s < end);
        let straddles = first > 0 && self.starts.get(first) != Some(&start) && start < end;
        past_end - first + usize::from(straddles)
    }
}

fn chunk_config<S: ChunkSizer>(
    max_tokens: usize,
    overlap_tokens: usize,
    sizer: S,
) -> Result<ChunkConfig<S>, ChunkConfigError> {
    Ok(ChunkConfig::new(max_tokens)
        .with_overlap(overlap_tokens)?
        .with_sizer(sizer))
}

impl Chunker {
    pub fn new(config: &ChunkingConfig) -> Result<Chunker, ChunkConfigError> {
        let exact = chunk_config(config.max_tokens, config.overlap_tokens, tokenizer())?;
        Ok(Chunker {
            max_tokens: config.max_tokens,
            min_tokens: config.min_tokens,
            overlap_tokens: config.overlap_tokens,
            exact: TextSplitter::new(exact),
        })
    }

    /// Sections of `text` at paragraph breaks, each with its char offset: a
    /// section ends after a paragraph once it holds `min_tokens`.
    fn sections<'t>(
        text: &'t str,
        min_tokens: usize,
        sizer: &TokenOffsets<'t>,
    ) -> Vec<(usize, &'t str)> {
        let mut sections = Vec::new();
        let (mut start, mut start_chars, mut chars) = (0, 0, 0);
        let mut rest = text;
        while let Some(at) = rest.find("\n\n") {
            // Keep the blank line (and any further newlines) with this paragraph.
            let after = at + rest[at..].find(|c| c != '\n').unwrap_or(rest.len() - at);
            let end = text.len() - rest.len() + after;
            chars += rest[..after].chars().count();
            rest = &rest[after..];
            if sizer.size(&text[start..end]) >= min_tokens {
                sections.push((start_chars, &text[start..end]));
                (start, start_chars) = (end, chars);
            }
        }
        if start < text.len() {
            sections.push((start_chars, &text[start..]));
        }
        sections
    }

    pub fn chunk(&self, text: &str, markdown: bool) -> Vec<Chunk> {
        let sizer = TokenOffsets::new(text);
        let mut pieces: Vec<(usize, &str)> = Vec::new();
        for (offset, section) in Self::sections(text, self.min_tokens, &sizer) {
            let trimmed = section.trim();
            if trimmed.is_empty() {
                continue;
            }
            if sizer.size(trimmed) <= self.max_tokens {
                let leading = section[..section.len() - section.trim_start().len()]
                    .chars()
                    .count();
                pieces.push((offset + leading, trimmed));
                continue;
            }
            let config = chunk_config(self.max_tokens, self.overlap_tokens, &sizer)
                .expect("the same sizes passed Chunker::new");
            let split: Vec<(usize, &str)> = if markdown {
                MarkdownSplitter::new(config)
                    .chunk_char_indices(section)
                    .map(|c| (offset + c.char_offset, c.chunk))
                    .collect()
            } else {
                TextSplitter::new(config)
                    .chunk_char_indices(section)
                    .map(|c| (offset + c.char_offset, c.chunk))
                    .collect()
            };
            pieces.extend(split);
        }
        let mut chunks: Vec<(usize, &str, usize)> = Vec::with_capacity(pieces.len());
        for (char_offset, piece) in pieces {
            // With overlap, the splitter can follow a chunk with a longer one
            // from the same start; the shorter one adds nothing.
            if let Some(&(last_offset, last, _)) = chunks.last()
                && last_offset == char_offset
                && last.len() <= piece.len()
            {
                chunks.pop();
            }
            let tokens = tokenizer().encode_ordinary(piece).len();
            if tokens <= self.max_tokens {
                chunks.push((char_offset, piece, tokens));
            } else {
                for sub in self.exact.chunk_char_indices(piece) {
                    let tokens = tokenizer().encode_ordinary(sub.chunk).len();
                    chunks.push((char_offset + sub.char_offset, sub.chunk, tokens));
                }
            }
        }
        chunks
            .into_iter()
            .enumerate()
            .map(|(index, (char_offset, piece, tokens))| Chunk {
                index: index as u32,
                token_count: tokens as u32,
                char_start: char_offset as u32,
                char_end: (char_offset + piece.chars().count()) as u32,
                text: piece.to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paragraphs join up to an eighth of the chunk size, as by default.
    fn min_tokens(max_tokens: usize) -> usize {
        max_tokens / 8
    }

    fn chunker(max_tokens: usize, overlap_tokens: usize) -> Chunker {
        Chunker::new(&ChunkingConfig {
            max_tokens,
            min_tokens: min_tokens(max_tokens),
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
    fn sizes_from_one_tokenization_are_close_to_exact() {
        let text = sample_text();
        let sizer = TokenOffsets::new(&text);
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).step_by(37).collect();
        for window in boundaries.windows(9).step_by(5) {
            let slice = &text[window[0]..window[8]];
            let exact = tokenizer().encode_ordinary(slice).len();
            let fast = sizer.size(slice);
            assert!(
                fast.abs_diff(exact) <= 2,
                "{slice:?}: fast {fast}, exact {exact}"
            );
        }
        assert_eq!(sizer.size(&text), tokenizer().encode_ordinary(&text).len());
        assert_eq!(sizer.size("not a slice of the text"), 6);
    }

    /// The exact splitter's chunks of each paragraph section.
    fn exact_chunks(text: &str, max: usize, overlap: usize) -> Vec<&str> {
        let splitter = TextSplitter::new(chunk_config(max, overlap, tokenizer()).unwrap());
        Chunker::sections(text, min_tokens(max), &TokenOffsets::new(text))
            .into_iter()
            .flat_map(|(_, section)| splitter.chunks(section).collect::<Vec<_>>())
            .collect()
    }

    fn overlapping_pairs(chunks: &[Chunk]) -> usize {
        chunks
            .windows(2)
            .filter(|w| w[1].char_start < w[0].char_end)
            .count()
    }

    /// Share of `fast` chunks that the exact splitter also produces.
    fn agreement(fast: &[Chunk], exact: &[&str]) -> f64 {
        fast.iter()
            .filter(|c| exact.contains(&c.text.as_str()))
            .count() as f64
            / fast.len() as f64
    }

    #[test]
    fn an_edited_paragraph_changes_only_its_own_chunks() {
        let words = ["tide", "lamp", "keeper", "fog", "harbour", "bell", "stairs"];
        let paragraphs: Vec<String> = (0..60)
            .map(|p| {
                let len = 8 + (p * 37) % 60;
                let body: Vec<&str> = (0..len).map(|w| words[(p * 3 + w * 5) % 7]).collect();
                format!("{}.", body.join(" "))
            })
            .collect();
        let chunker = chunker(100, 10);
        let texts = |paragraphs: &[String]| -> Vec<String> {
            chunker
                .chunk(&paragraphs.join("\n\n"), false)
                .into_iter()
                .map(|c| c.text)
                .collect()
        };
        let before = texts(&paragraphs);
        for edited in [0, 17, 30, 59] {
            let mut changed = paragraphs.clone();
            changed[edited] = changed[edited].replacen(' ', " inserted words here ", 1);
            let after = texts(&changed);
            let new = after.iter().filter(|c| !before.contains(c)).count();
            assert!(
                (1..=2).contains(&new),
                "paragraph {edited}: {new} new chunks"
            );
            assert!(after.len().abs_diff(before.len()) <= 1);
        }
    }

    #[test]
    fn chunks_agree_with_the_exact_splitter() {
        let text = sample_text();
        for (max, overlap, at_least) in [
            (512, 0, 1.0),
            (100, 0, 1.0),
            (64, 0, 0.9),
            (512, 64, 0.9),
            (100, 30, 0.7),
        ] {
            let fast = chunker(max, overlap).chunk(&text, false);
            let exact = exact_chunks(&text, max, overlap);
            let share = agreement(&fast, &exact);
            assert!(
                share >= at_least,
                "{max}/{overlap}: {share:.2} of chunks agree"
            );
            assert!(
                fast.len().abs_diff(exact.len()) * 10 <= exact.len(),
                "{max}/{overlap}: {} vs {}",
                fast.len(),
                exact.len()
            );
        }
    }

    #[test]
    fn overlap_repeats_text_between_neighbours() {
        let text = sample_text();
        let with = chunker(100, 30).chunk(&text, false);
        let exact_overlaps = exact_chunks(&text, 100, 30)
            .windows(2)
            .filter(|w| {
                let (a, b) = (w[0].as_ptr() as usize, w[1].as_ptr() as usize);
                b < a + w[0].len()
            })
            .count();
        assert!(
            overlapping_pairs(&with) * 10 >= exact_overlaps * 8,
            "{} vs {exact_overlaps}",
            overlapping_pairs(&with)
        );
        let without = chunker(100, 0).chunk(&text, false);
        assert_eq!(overlapping_pairs(&without), 0);
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
