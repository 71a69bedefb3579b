//! Token-aware chunking: cl100k tokens (or, with the local embedding
//! provider, the model's own), markdown structure where there is one,
//! overlap between neighbours. The splitting itself is text-splitter's.
//!
//! Chunks follow paragraphs: the text is first cut at blank lines into
//! sections of one paragraph each (a paragraph under `CHUNK_MIN_TOKENS`, by
//! default a 64th of the chunk size, joins the next, and headings always
//! join their body), and only a section over the chunk size is split
//! further. Where a cut falls depends on the paragraph alone,
//! not on everything before it, so editing a paragraph changes only its own
//! chunks and a re-ingest pays the embedding provider for just those.

mod sizing;

pub use sizing::TokenCount;

use crate::parsing::layout::Layout;
use docpipe_core::settings::{ChunkHeader, ChunkingSettings};
use sizing::TokenOffsets;
use std::borrow::Cow;
use std::sync::OnceLock;
use text_splitter::{
    Characters, ChunkConfig, ChunkConfigError, ChunkSizer, MarkdownSplitter, TextSplitter,
};

/// One piece of a document, with where it came from. The text stays in the
/// document: a large one is not held twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub index: u32,
    /// Byte range of the chunk in the parsed text.
    pub bytes: std::ops::Range<usize>,
    pub token_count: u32,
    /// Offsets in characters (not bytes) into the parsed text.
    pub char_start: u32,
    pub char_end: u32,
}

impl Chunk {
    /// The chunk's text in `document`, the text it was cut from.
    pub fn text<'t>(&self, document: &'t str) -> &'t str {
        &document[self.bytes.clone()]
    }
}

/// What a chunk is embedded as, when that is more than its text: a header
/// (`CHUNK_HEADER`) and the tokens of the header and text together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedHeader {
    pub text: String,
    pub input_tokens: u32,
}

/// Longest header, in characters: file names and heading titles are the
/// uploader's, and a header costs tokens on every chunk it heads.
const MAX_HEADER_CHARS: usize = 300;

/// The text a chunk is embedded (and its vector cached) as: its header, a
/// blank line, its text.
pub fn embed_input<'t>(header: Option<&str>, text: &'t str) -> Cow<'t, str> {
    match header {
        Some(header) => Cow::Owned(format!("{header}\n\n{text}")),
        None => Cow::Borrowed(text),
    }
}

/// Text is chunked a window at a time, each window tokenized on its own, so
/// the token offsets held stay bounded whatever the document's size (a 50 MB
/// text has ~10 M tokens). A window ends at the first paragraph break after
/// this many bytes; smaller documents are one window.
const WINDOW_BYTES: usize = 1 << 20;

/// Where the window starting at `start` ends: a paragraph break past
/// [`WINDOW_BYTES`], else a line break, else any whitespace (parsing refuses
/// longer unbroken runs), else the text's end.
fn window_end(text: &str, start: usize) -> usize {
    let from = text.ceil_char_boundary(start + WINDOW_BYTES);
    if from >= text.len() {
        return text.len();
    }
    let rest = &text[from..];
    let after_breaks = |at: usize| at + rest[at..].find(|c| c != '\n').unwrap_or(rest.len() - at);
    let end = rest
        .find("\n\n")
        .map(after_breaks)
        .or_else(|| rest.find('\n').map(after_breaks))
        .or_else(|| rest.find(char::is_whitespace).map(|at| at + 1))
        .unwrap_or(rest.len());
    text.ceil_char_boundary(from + end)
}

/// Splits documents into chunks of at most `max_tokens` tokens, cut
/// at paragraph breaks: paragraphs join until a chunk holds `min_tokens`.
pub struct Chunker {
    max_tokens: usize,
    /// The most tokens a chunk and its header may hold together: the chunk
    /// size, before room was left for [`Chunker::attributes`].
    input_tokens: usize,
    /// The text of the document's attributes marked `includeForEmbedding`,
    /// which heads each of its chunks.
    attributes: Option<String>,
    min_tokens: usize,
    overlap_tokens: usize,
    header: ChunkHeader,
    tokens: TokenCount,
    /// Exact splitter, for the rare chunk the fast one lets run over; built
    /// on first use, as the tokenizer is.
    exact: OnceLock<TextSplitter<TokenCount>>,
}

/// Where the pages and headings of a window of the text start.
struct PartStarts<'l> {
    layout: &'l Layout,
    /// The window's byte offset in the text the layout marks.
    window_start: usize,
}

impl PartStarts<'_> {
    fn heading(&self, at: usize) -> bool {
        let at = self.window_start + at;
        let headings = &self.layout.headings;
        headings.binary_search_by_key(&at, |h| h.at).is_ok()
    }

    fn page(&self, at: usize) -> bool {
        let at = self.window_start + at;
        self.layout
            .pages
            .binary_search_by_key(&at, |p| p.at)
            .is_ok()
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
    /// Chunks of `config`'s sizes in `tokens`; none larger than the
    /// model's window, whatever `CHUNK_TOKENS` says.
    pub fn new(config: &ChunkingSettings, tokens: TokenCount) -> Result<Chunker, ChunkConfigError> {
        let max_tokens = tokens
            .window()
            .map_or(config.max_tokens, |window| window.min(config.max_tokens));
        // Checks the sizes now, without building the tokenizer.
        chunk_config(max_tokens, config.overlap_tokens, Characters)?;
        Ok(Chunker {
            max_tokens,
            input_tokens: max_tokens,
            attributes: None,
            min_tokens: config.min_tokens().min(max_tokens),
            overlap_tokens: config.overlap_tokens,
            header: config.header,
            tokens,
            exact: OnceLock::new(),
        })
    }

    /// The largest chunk, in tokens.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// This chunker for a document each of whose chunks is embedded with
    /// `attributes` (its sidecar's, marked `includeForEmbedding`): its
    /// chunks are smaller by the attributes' tokens, so that every one
    /// holds them. None when they would take more than half a chunk.
    pub fn with_attributes(&self, attributes: &str) -> Option<Chunker> {
        // The attributes, the blank line after them, and a token for where
        // they meet the chunk's first word.
        let reserved = self.tokens.count(&embed_input(Some(attributes), "")) + 1;
        let max_tokens = self
            .input_tokens
            .checked_sub(reserved)
            .filter(|&max| max >= self.input_tokens / 2 && max > self.overlap_tokens)?;
        Some(Chunker {
            max_tokens,
            input_tokens: self.input_tokens,
            attributes: Some(attributes.to_string()),
            min_tokens: self.min_tokens.min(max_tokens),
            overlap_tokens: self.overlap_tokens,
            header: self.header,
            tokens: self.tokens.clone(),
            exact: OnceLock::new(),
        })
    }

    /// The header `chunk` is embedded under: the document's attributes
    /// marked for embedding, if any, then, as `CHUNK_HEADER` says, its
    /// `file_name` and the `headings` above it, when they fit. None when it
    /// would be empty; the headings are left out when the chunk and header
    /// together would be over the chunk size (the model's window, or what
    /// the provider is asked to read).
    pub fn header(&self, file_name: &str, headings: &[String], chunk: &str) -> Option<EmbedHeader> {
        let name = match self.header {
            ChunkHeader::None => None,
            ChunkHeader::Headings => None,
            ChunkHeader::NameAndHeadings => Some(file_name).filter(|n| !n.is_empty()),
        };
        let headings = if self.header == ChunkHeader::None {
            &[]
        } else {
            headings
        };
        let parts: Vec<&str> = name
            .into_iter()
            .chain(headings.iter().map(String::as_str))
            .collect();
        let path = (!parts.is_empty()).then(|| {
            parts
                .join(" > ")
                .chars()
                .take(MAX_HEADER_CHARS)
                .collect::<String>()
        });
        let fitting = |text: String| {
            let input_tokens = self.tokens.count(&embed_input(Some(&text), chunk));
            (input_tokens <= self.input_tokens).then_some(EmbedHeader {
                text,
                input_tokens: input_tokens as u32,
            })
        };
        let with_path = match (&self.attributes, path) {
            (None, None) => return None,
            (None, Some(path)) => return fitting(path),
            (Some(attributes), None) => return fitting(attributes.clone()),
            (Some(attributes), Some(path)) => fitting(format!("{attributes}\n{path}")),
        };
        with_path.or_else(|| fitting(self.attributes.clone()?))
    }

    fn exact(&self) -> &TextSplitter<TokenCount> {
        self.exact.get_or_init(|| {
            let config = chunk_config(self.max_tokens, self.overlap_tokens, self.tokens.clone())
                .expect("the sizes passed Chunker::new");
            TextSplitter::new(config)
        })
    }

    /// Sections of `text` at paragraph breaks, each with its char offset: a
    /// section ends after a paragraph once it holds `min_tokens`, or where a
    /// page or heading starts, unless it holds only headings.
    fn sections<'t>(
        text: &'t str,
        min_tokens: usize,
        sizer: &TokenOffsets<'t>,
        parts: &PartStarts,
    ) -> Vec<(usize, &'t str)> {
        let mut sections = Vec::new();
        let (mut start, mut start_chars, mut chars) = (0, 0, 0);
        let mut headings_only = parts.heading(0);
        let mut rest = text;
        while let Some(at) = rest.find("\n\n") {
            // Keep the blank line (and any further newlines) with this paragraph.
            let after = at + rest[at..].find(|c| c != '\n').unwrap_or(rest.len() - at);
            let end = text.len() - rest.len() + after;
            chars += rest[..after].chars().count();
            rest = &rest[after..];
            let next_is_heading = parts.heading(end);
            let part_starts = next_is_heading || parts.page(end);
            // Headings alone never end a section, whatever their size: a
            // heading keeps its body.
            if !headings_only && (part_starts || sizer.size(&text[start..end]) >= min_tokens) {
                sections.push((start_chars, &text[start..end]));
                (start, start_chars) = (end, chars);
                headings_only = next_is_heading;
            } else {
                headings_only &= next_is_heading;
            }
        }
        if start < text.len() {
            sections.push((start_chars, &text[start..]));
        }
        sections
    }

    /// The chunks of `text`, following its markdown structure if `markdown`,
    /// and starting anew at the pages and headings of its `layout`.
    pub fn chunk(&self, text: &str, markdown: bool, layout: &Layout) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let (mut start, mut start_chars) = (0, 0);
        while start < text.len() {
            let window = &text[start..window_end(text, start)];
            let parts = PartStarts {
                layout,
                window_start: start,
            };
            self.chunk_window(text, window, start_chars, markdown, &parts, &mut chunks);
            start += window.len();
            start_chars += window.chars().count();
        }
        chunks
    }

    /// Appends the chunks of `window`, a slice of `document` starting
    /// `window_chars` characters into it.
    fn chunk_window(
        &self,
        document: &str,
        window: &str,
        window_chars: usize,
        markdown: bool,
        parts: &PartStarts,
        out: &mut Vec<Chunk>,
    ) {
        let sizer = TokenOffsets::new(window, &self.tokens);
        let mut pieces: Vec<(usize, &str)> = Vec::new();
        for (offset, section) in Self::sections(window, self.min_tokens, &sizer, parts) {
            let offset = window_chars + offset;
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
            let tokens = self.tokens.count(piece);
            if tokens <= self.max_tokens {
                chunks.push((char_offset, piece, tokens));
            } else {
                for sub in self.exact().chunk_char_indices(piece) {
                    let tokens = self.tokens.count(sub.chunk);
                    chunks.push((char_offset + sub.char_offset, sub.chunk, tokens));
                }
            }
        }
        for (char_offset, piece, tokens) in chunks {
            // Every piece is a slice of the document.
            let start = piece.as_ptr() as usize - document.as_ptr() as usize;
            out.push(Chunk {
                index: out.len() as u32,
                bytes: start..start + piece.len(),
                token_count: tokens as u32,
                char_start: char_offset as u32,
                char_end: (char_offset + piece.chars().count()) as u32,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docpipe_core::tokens::tokenizer;

    /// Paragraphs join up to the default share of the chunk size.
    fn min_tokens(max_tokens: usize) -> usize {
        docpipe_core::settings::default_min_tokens(max_tokens)
    }

    fn chunker(max_tokens: usize, overlap_tokens: usize) -> Chunker {
        joining_to(max_tokens, min_tokens(max_tokens), overlap_tokens)
    }

    /// A chunker whose paragraphs join until a chunk holds `min_tokens`.
    fn joining_to(max_tokens: usize, min_tokens: usize, overlap_tokens: usize) -> Chunker {
        Chunker::new(
            &ChunkingSettings::new(max_tokens, min_tokens, overlap_tokens),
            TokenCount::Cl100k,
        )
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
                let chunks = chunker(max, overlap).chunk(&text, markdown, &Layout::default());
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
                    assert_eq!(span, chunk.text(&text), "chunk {i} offsets");
                }
                // Chunks cover the text in order.
                assert!(chunks.windows(2).all(|w| w[0].char_start < w[1].char_start));
            }
        }
    }

    #[test]
    fn sizes_from_one_tokenization_are_close_to_exact() {
        let text = sample_text();
        let sizer = TokenOffsets::new(&text, &TokenCount::Cl100k);
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
        let parts = PartStarts {
            layout: &Layout::default(),
            window_start: 0,
        };
        Chunker::sections(
            text,
            min_tokens(max),
            &TokenOffsets::new(text, &TokenCount::Cl100k),
            &parts,
        )
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
    fn agreement(text: &str, fast: &[Chunk], exact: &[&str]) -> f64 {
        fast.iter()
            .filter(|c| exact.contains(&c.text(text)))
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
            let text = paragraphs.join("\n\n");
            chunker
                .chunk(&text, false, &Layout::default())
                .into_iter()
                .map(|c| c.text(&text).to_string())
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
            let fast = chunker(max, overlap).chunk(&text, false, &Layout::default());
            let exact = exact_chunks(&text, max, overlap);
            let share = agreement(&text, &fast, &exact);
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
        let with = chunker(100, 30).chunk(&text, false, &Layout::default());
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
        let without = chunker(100, 0).chunk(&text, false, &Layout::default());
        assert_eq!(overlapping_pairs(&without), 0);
    }

    #[test]
    fn markdown_splits_at_headings() {
        let text = format!(
            "# One\n\n{}\n\n# Two\n\n{}",
            "alpha ".repeat(60),
            "beta ".repeat(60)
        );
        let chunks = chunker(80, 0).chunk(&text, true, &Layout::default());
        assert!(
            chunks.iter().any(|c| c.text(&text).starts_with("# Two")),
            "{chunks:#?}"
        );
        assert!(
            chunks
                .iter()
                .map(|c| c.text(&text))
                .all(|t| !(t.contains("alpha") && t.contains("beta")))
        );
    }

    #[test]
    fn a_text_of_several_windows_is_chunked_as_one() {
        // Paragraph-sized lines, so windows end at line breaks too.
        let text = sample_text().repeat(3 * WINDOW_BYTES / sample_text().len() + 1);
        let chunks = chunker(512, 64).chunk(&text, false, &Layout::default());
        let char_offsets: Vec<usize> = text.char_indices().map(|(at, _)| at).collect();
        let byte_at = |chars: u32| {
            char_offsets
                .get(chars as usize)
                .copied()
                .unwrap_or(text.len())
        };
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.index as usize, i);
            assert_eq!(
                byte_at(chunk.char_start)..byte_at(chunk.char_end),
                chunk.bytes,
                "chunk {i}"
            );
            assert!(chunk.token_count <= 512);
        }
        // Together the chunks hold all the text, in order: only whitespace
        // falls between neighbours, across windows too.
        assert!(chunks.len() > 3 * WINDOW_BYTES / 4096, "{}", chunks.len());
        assert_eq!(text[..chunks[0].bytes.start].trim(), "");
        assert_eq!(text[chunks.last().unwrap().bytes.end..].trim(), "");
        for pair in chunks.windows(2) {
            let gap = pair[0].bytes.end.min(pair[1].bytes.start)..pair[1].bytes.start;
            assert_eq!(text[gap].trim(), "", "between chunks {}", pair[0].index);
        }
    }

    #[test]
    fn a_header_names_the_file_and_headings_within_its_bounds() {
        let headed = |header, max_tokens| {
            let mut settings = ChunkingSettings::new(max_tokens, 2, 4);
            settings.header = header;
            Chunker::new(&settings, TokenCount::Cl100k).unwrap()
        };
        let with = |header| headed(header, 32);
        let headings = ["Install".to_string(), "On Linux".to_string()];
        let chunk = "Run the installer.";
        assert_eq!(
            with(ChunkHeader::None).header("guide.md", &headings, chunk),
            None
        );
        let header = with(ChunkHeader::Headings)
            .header("guide.md", &headings, chunk)
            .unwrap();
        assert_eq!(header.text, "Install > On Linux");
        let input = embed_input(Some(&header.text), chunk);
        assert_eq!(input, "Install > On Linux\n\nRun the installer.");
        assert_eq!(
            header.input_tokens as usize,
            TokenCount::Cl100k.count(&input)
        );
        let named = with(ChunkHeader::NameAndHeadings);
        let header = named.header("guide.md", &headings, chunk).unwrap();
        assert_eq!(header.text, "guide.md > Install > On Linux");
        // Nothing to say: no header; the name alone is one.
        assert_eq!(
            with(ChunkHeader::Headings).header("guide.md", &[], chunk),
            None
        );
        assert_eq!(
            named.header("guide.md", &[], chunk).unwrap().text,
            "guide.md"
        );
        // A hostile name is cut to its bound, and a header that would take
        // the input over the chunk size is left off: no input is larger
        // than a chunk may be.
        let long = "x".repeat(10_000);
        let header = headed(ChunkHeader::NameAndHeadings, 4096)
            .header(&long, &headings, chunk)
            .unwrap();
        assert_eq!(header.text.chars().count(), MAX_HEADER_CHARS);
        let full = "word ".repeat(30);
        assert!(TokenCount::Cl100k.count(full.trim()) <= 32);
        assert_eq!(named.header("guide.md", &headings, full.trim()), None);
        assert!(named.header("g.md", &[], "word word").is_some());
    }

    #[test]
    fn attributes_for_embedding_head_every_chunk_which_leaves_them_room() {
        let mut settings = ChunkingSettings::new(32, 2, 4);
        settings.header = ChunkHeader::Headings;
        let plain = Chunker::new(&settings, TokenCount::Cl100k).unwrap();
        let attributes = "team: harbour\nyear: 2026";
        let chunker = plain.with_attributes(attributes).unwrap();
        let text = "word ".repeat(400);
        let chunks = chunker.chunk(&text, false, &Layout::default());
        assert!(chunks.len() > 1);
        let headings = ["Install".to_string()];
        for chunk in &chunks {
            let header = chunker
                .header("guide.md", &headings, chunk.text(&text))
                .expect("every chunk holds the attributes");
            assert!(header.text.starts_with(attributes), "{header:?}");
            assert!(header.input_tokens as usize <= 32, "{header:?}");
        }
        // A short chunk has room for its headings too.
        let header = chunker.header("guide.md", &headings, "Run it.").unwrap();
        assert_eq!(header.text, format!("{attributes}\nInstall"));
        // Attributes over half a chunk are not taken.
        assert!(plain.with_attributes(&"harbour ".repeat(20)).is_none());
    }

    #[test]
    fn short_text_is_one_chunk() {
        let text = "  Just a line.  ";
        let chunks = chunker(512, 64).chunk(text, false, &Layout::default());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text(text), "Just a line.");
        assert_eq!((chunks[0].char_start, chunks[0].char_end), (2, 14));
    }

    #[test]
    fn chunks_start_anew_at_pages_and_headings_but_a_heading_keeps_its_body() {
        use crate::parsing::layout::TextBuilder;
        let mut doc = TextBuilder::new(usize::MAX);
        doc.page(1);
        doc.paragraph("Short first page.").unwrap();
        doc.page(2);
        doc.heading(1, "Installation").unwrap();
        doc.heading(2, "On Linux").unwrap();
        doc.paragraph("Run the installer.").unwrap();
        doc.heading(2, "On Mac").unwrap();
        doc.paragraph("Drag the app.").unwrap();
        let (text, layout) = doc.finish();
        // Without a layout, the short paragraphs join into one chunk.
        let plain = joining_to(512, 32, 0).chunk(&text, false, &Layout::default());
        assert_eq!(plain.len(), 1);
        // With it, headings keep their body however small a chunk may be.
        for min_tokens in [32, 2, 0] {
            let chunks = joining_to(512, min_tokens, 0).chunk(&text, false, &layout);
            let texts: Vec<&str> = chunks.iter().map(|c| c.text(&text)).collect();
            assert_eq!(
                texts,
                [
                    "Short first page.",
                    "Installation\n\nOn Linux\n\nRun the installer.",
                    "On Mac\n\nDrag the app."
                ],
                "CHUNK_MIN_TOKENS {min_tokens}"
            );
        }
        let chunks = chunker(512, 0).chunk(&text, false, &layout);
        let located = layout.locate(chunks.iter().map(|c| c.bytes.clone()));
        assert_eq!(located[1].headings, ["Installation", "On Linux"]);
        assert_eq!(located[2].headings, ["Installation", "On Mac"]);
        assert_eq!(located[2].page_start, Some(2));
    }
}
