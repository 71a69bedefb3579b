//! Tokens as the HTTP embedding providers count and bill them (cl100k):
//! chunk sizes on the write path, query costs on the read path.

use tiktoken_rs::CoreBPE;

/// The cl100k tokenizer, built once per process on first use: building it
/// is most of a cold start (~60 ms), which functions that never tokenize
/// (ingest, parse, embed, sweeper, migrate; api for short queries) should
/// not pay.
pub fn tokenizer() -> &'static CoreBPE {
    tiktoken_rs::cl100k_base_singleton()
}

/// Builds the tokenizer on a thread of its own, for a process that will
/// need it: the build then overlaps the rest of its start-up.
pub fn warm_up_tokenizer() {
    std::thread::spawn(tokenizer);
}

/// The longest start of `text` of at most `limit` cl100k tokens.
pub fn first_tokens(text: &str, limit: usize) -> &str {
    // Every token is at least a byte: a text of `limit` bytes or fewer fits.
    if text.len() <= limit {
        return text;
    }
    let tokens = tokenizer().encode_ordinary(text);
    if tokens.len() <= limit {
        return text;
    }
    let bytes = tokenizer()
        .decode_bytes(&tokens[..limit])
        .map_or(0, |bytes| bytes.len());
    text.get(..text.floor_char_boundary(bytes))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_cut_to_its_first_tokens_on_a_character_boundary() {
        let text = "Où est la bibliothèque? 図書館はどこですか 🦀🦀 ".repeat(50);
        for limit in [1, 7, 100, 1_000] {
            let cut = first_tokens(&text, limit);
            assert!(text.starts_with(cut));
            assert!(tokenizer().encode_ordinary(cut).len() <= limit, "{limit}");
            assert!(cut.len() >= limit / 4, "{limit}: {cut:?}");
        }
        assert_eq!(first_tokens("short", 100), "short");
    }
}
