//! A free, deterministic embedder for local runs and tests.
//!
//! Vectors are hashed bags of words and word pairs: each word and each pair of
//! neighbouring words (ASCII-lowercased) is hashed to one dimension and a
//! sign, and the sum is scaled to unit length. Equal text gives equal vectors,
//! and texts sharing words are close; shared pairs make a copied phrase
//! closest to the text it came from.

use async_trait::async_trait;
use docpipe_core::embedding::{EmbedInput, Embedder, Embeddings};
use docpipe_core::error::Result;

/// Model name stored with mock vectors, so they are never mixed with real ones.
pub const MODEL: &str = docpipe_core::settings::MOCK_EMBEDDING_MODEL;

#[derive(Debug, Clone)]
pub struct MockEmbedder {
    model: String,
    dims: usize,
}

impl MockEmbedder {
    pub fn new(model: &str, dims: usize) -> Self {
        MockEmbedder {
            model: model.to_string(),
            dims,
        }
    }
}

#[async_trait]
impl Embedder for MockEmbedder {
    fn billable(&self) -> bool {
        false
    }
    fn service(&self) -> &'static str {
        "mock"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn dims(&self) -> usize {
        self.dims
    }
    async fn embed(&self, inputs: &[EmbedInput<'_>]) -> Result<Embeddings> {
        Ok(Embeddings {
            vectors: inputs
                .iter()
                .map(|input| vector(input.text, self.dims))
                .collect(),
            model: self.model.clone(),
            service: "mock",
            billed_tokens: inputs.iter().map(|input| u64::from(input.tokens)).sum(),
            requests: 0,
        })
    }
}

/// FNV-1a over ASCII-lowercased bytes: stable across platforms and releases.
fn word_hash(word: &[u8]) -> u64 {
    word.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The unit vector of `text` with `dims` dimensions.
pub fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut sums = vec![0f32; dims];
    let words = text
        .as_bytes()
        .split(|b| !b.is_ascii_alphanumeric() && b.is_ascii())
        .filter(|w| !w.is_empty());
    let mut add = |hash: u64| {
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        sums[(hash % dims as u64) as usize] += sign;
    };
    let mut previous: Option<u64> = None;
    for word in words {
        let hash = word_hash(word);
        add(hash);
        if let Some(previous) = previous {
            add(previous.rotate_left(17) ^ hash.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        previous = Some(hash);
    }
    let norm = sums.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        // No words (empty, punctuation only) or words that cancelled out:
        // one dimension picked by the whole text.
        sums[(word_hash(text.as_bytes()) % dims as u64) as usize] = 1.0;
        return sums;
    }
    sums.iter_mut().for_each(|x| *x /= norm);
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn vectors_are_deterministic_unit_and_sized() {
        for text in [
            "",
            "!!!",
            "hello world",
            "a a",
            "ünïcode words and more words",
        ] {
            for dims in [1, 3, 384, 1536] {
                let v = vector(text, dims);
                assert_eq!(v.len(), dims);
                assert_eq!(v, vector(text, dims));
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-5, "{text:?} {dims}: {norm}");
            }
        }
    }

    #[test]
    fn shared_words_are_closer_than_unrelated_text() {
        let chunk =
            "The lighthouse keeper climbed the spiral stairs every evening to light the lamp.";
        let phrase = "keeper climbed the spiral stairs";
        let other = "Quarterly revenue grew by four percent in the northern region.";
        let (c, p, o) = (
            vector(chunk, 1536),
            vector(phrase, 1536),
            vector(other, 1536),
        );
        assert!(cosine(&c, &p) > 0.5, "{}", cosine(&c, &p));
        assert!(cosine(&c, &p) > cosine(&o, &p) + 0.3);
        assert_eq!(vector("Hello World", 64), vector("hello world", 64));
    }
}
