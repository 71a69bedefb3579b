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
