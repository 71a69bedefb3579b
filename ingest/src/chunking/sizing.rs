//! How chunk sizes are counted: in cl100k tokens or the local model's own,
//! and, for the splitter's many probes, from one tokenization of the text.

use crate::embedding::local::ModelTokenizer;
use docpipe_core::tokens::tokenizer;
use text_splitter::ChunkSizer;

/// Whose tokens chunk sizes count: cl100k's (what the HTTP providers bill
/// and limit; a fair measure for any model), or a local model's own, so
/// that every chunk fits the model's window.
#[derive(Debug, Clone)]
pub enum TokenCount {
    Cl100k,
    Model(ModelTokenizer),
}

impl TokenCount {
    pub(super) fn count(&self, text: &str) -> usize {
        match self {
            TokenCount::Cl100k => tokenizer().encode_ordinary(text).len(),
            TokenCount::Model(model) => model.count(text),
        }
    }

    /// The byte offset at which each token of `text` starts, ascending.
    fn starts(&self, text: &str) -> Vec<u32> {
        match self {
            TokenCount::Cl100k => cl100k_starts(text),
            TokenCount::Model(model) => model.token_starts(text),
        }
    }

    /// The most tokens one chunk may hold, if the model sets a limit.
    pub(super) fn window(&self) -> Option<usize> {
        match self {
            TokenCount::Cl100k => None,
            TokenCount::Model(model) => Some(model.text_window()),
        }
    }
}

/// The byte offset at which each cl100k token of `text` starts.
fn cl100k_starts(text: &str) -> Vec<u32> {
    // Each token's id is replaced by its offset in place: no second vector.
    let mut starts = tokenizer().encode_ordinary(text);
    let mut offset = 0;
    for slot in &mut starts {
        let token = std::mem::replace(slot, offset);
        offset += tokenizer()
            .decode_bytes(&[token])
            .map_or(0, |bytes| bytes.len() as u32);
    }
    starts
}

impl ChunkSizer for TokenCount {
    fn size(&self, chunk: &str) -> usize {
        self.count(chunk)
    }
}

/// Sizes any slice of one text from a single tokenization of the whole text:
/// the splitter probes many candidate chunks, and re-tokenizing each one made
/// chunking ~15x slower than tokenizing once. A slice's size is the number of
/// the text's tokens it overlaps, which can differ from tokenizing the slice
/// alone by a token or two at its edges; [`Chunker::chunk`] checks exactly.
pub(super) struct TokenOffsets<'t> {
    text: &'t str,
    tokens: &'t TokenCount,
    /// Byte offset at which each token of `text` starts, ascending (a window
    /// is far below 4 GiB).
    starts: Vec<u32>,
}

impl<'t> TokenOffsets<'t> {
    pub(super) fn new(text: &'t str, tokens: &'t TokenCount) -> Self {
        TokenOffsets {
            text,
            tokens,
            starts: tokens.starts(text),
        }
    }
}

impl ChunkSizer for TokenOffsets<'_> {
    fn size(&self, chunk: &str) -> usize {
        let start = (chunk.as_ptr() as usize).wrapping_sub(self.text.as_ptr() as usize);
        if start > self.text.len() || start + chunk.len() > self.text.len() {
            return self.tokens.count(chunk);
        }
        let (start, end) = (start as u32, (start + chunk.len()) as u32);
        // Tokens starting inside the slice, plus one straddling its start.
        let first = self.starts.partition_point(|&s| s < start);
        let past_end = self.starts.partition_point(|&s| s < end);
        let straddles = first > 0 && self.starts.get(first) != Some(&start) && start < end;
        past_end - first + usize::from(straddles)
    }
}
