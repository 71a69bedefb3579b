//! `EMBEDDING_PROVIDER=local`: sentence-embedding models of the BERT family
//! (all-MiniLM-L6-v2, bge-small/base, e5-small/base, gte-small…) run
//! in-process on the CPU by ONNX Runtime, from a sentence-transformers model
//! directory (`EMBEDDING_MODEL_DIR`, as scripts/fetch-model makes it):
//! `config.json`, `tokenizer.json`, the pooling and window
//! sentence-transformers keeps in `1_Pooling/config.json`, `modules.json`
//! and `sentence_bert_config.json`, the encoder as `model.onnx`, ONNX
//! Runtime as `libonnxruntime.so`, and `SHA256SUMS` naming every one of
//! them: a truncated or altered file fails the start, not a batch.
//!
//! Text is never cut to fit: a chunk over the model's window is rejected
//! (`chunk_too_long`), and chunking counts the same tokens
//! ([`ModelTokenizer`]) so that chunks fit.

use async_trait::async_trait;
use docpipe_core::embedding::{EmbedInput, Embedder, Embeddings};
use docpipe_core::error::{Error, Rejection, Result};
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
mod engine;
mod tokenizer;

use engine::{Batch, Encoder};
pub use tokenizer::{ModelError, ModelTokenizer};
use tokenizer::{model_error, read_json, verify_checksums};

/// How token vectors become one text vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Mean,
    Cls,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

/// The pooling and normalisation the model's sentence-transformers modules
/// name; without `modules.json`, mean pooling and unit vectors (what most
/// sentence models use).
fn pooling(dir: &Path) -> std::result::Result<(Pooling, bool), ModelError> {
    let modules_path = dir.join("modules.json");
    if !modules_path.exists() {
        return Ok((Pooling::Mean, true));
    }
    let modules: Vec<Module> = read_json(&modules_path)?;
    let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
    let Some(module) = modules.iter().find(|m| m.kind.ends_with(".Pooling")) else {
        return Err(model_error(&modules_path, "no Pooling module"));
    };
    let path = dir.join(&module.path).join("config.json");
    let config: PoolingConfig = read_json(&path)?;
    let pooling = match (
        config.pooling_mode_mean_tokens,
        config.pooling_mode_cls_token,
        config.pooling_mode_max_tokens || config.pooling_mode_mean_sqrt_len_tokens,
    ) {
        (true, false, false) => Pooling::Mean,
        (false, true, false) => Pooling::Cls,
        _ => return Err(model_error(&path, "only mean or CLS pooling is supported")),
    };
    Ok((pooling, normalize))
}

#[derive(Deserialize)]
struct ModelConfig {
    model_type: Option<String>,
    hidden_size: usize,
}

/// A BERT-family sentence model run on this process's CPU (clones share it).
#[derive(Clone)]
pub struct LocalEmbedder {
    name: String,
    dims: usize,
    tokenizer: ModelTokenizer,
    encoder: Encoder,
    pooling: Pooling,
    normalize: bool,
    /// The most texts in one forward pass (its memory grows with them).
    batch: usize,
}

impl LocalEmbedder {
    /// Loads the model in `dir` on `threads` threads, once its files match
    /// their checksums.
    pub fn load(
        name: &str,
        dir: &Path,
        threads: usize,
        batch: usize,
    ) -> std::result::Result<Self, ModelError> {
        verify_checksums(dir, &[engine::ENCODER, engine::RUNTIME_LIB])?;
        let config_path = dir.join("config.json");
        let config: ModelConfig = read_json(&config_path)?;
        if let Some(kind) = config.model_type.filter(|kind| kind != "bert") {
            return Err(model_error(
                &config_path,
                format!("model_type {kind:?} is not supported (only BERT-family models)"),
            ));
        }
        let (pooling, normalize) = pooling(dir)?;
        Ok(LocalEmbedder {
            name: name.to_string(),
            dims: config.hidden_size,
            tokenizer: ModelTokenizer::load(dir)?,
            encoder: Encoder::load(dir, threads.max(1))?,
            pooling,
            normalize,
            batch: batch.max(1),
        })
    }

    pub fn tokenizer(&self) -> &ModelTokenizer {
        &self.tokenizer
    }
}

/// One text's token ids, special tokens included, and its count of text tokens.
struct Encoded {
    ids: Vec<u32>,
    text_tokens: usize,
}

impl LocalEmbedder {
    fn encode(&self, text: &str) -> Result<Encoded> {
        let encoding = self
            .tokenizer
            .tokenizer
            .encode_fast(text, true)
            .map_err(|e| Error::Transient(format!("tokenizing for the local model: {e}")))?;
        let specials = encoding.get_special_tokens_mask().iter().sum::<u32>() as usize;
        let text_tokens = encoding.len() - specials;
        if text_tokens > self.tokenizer.text_window {
            // Cutting the text to fit would silently drop it from search.
            return Err(Rejection::ChunkTooLong {
                tokens: text_tokens as u32,
                limit: self.tokenizer.text_window as u32,
            }
            .into());
        }
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            text_tokens,
        })
    }

    /// Vectors of texts of similar lengths, padded to the longest.
    fn forward(&self, batch: &[&Encoded]) -> ort::Result<Vec<Vec<f32>>> {
        let longest = batch.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for encoded in batch {
            let padding = longest - encoded.ids.len();
            ids.extend(encoded.ids.iter().map(|&id| i64::from(id)));
            ids.extend(std::iter::repeat_n(0, padding));
            mask.extend(std::iter::repeat_n(1, encoded.ids.len()));
            mask.extend(std::iter::repeat_n(0, padding));
        }
        let batch_shape = Batch {
            texts: batch.len(),
            tokens: longest,
            ids,
            mask,
        };
        let vectors = self.encoder.hidden(batch_shape, |states, hidden| {
            batch
                .iter()
                .zip(states.chunks(longest * hidden))
                .map(|(encoded, tokens)| {
                    let vector = match self.pooling {
                        Pooling::Cls => tokens[..hidden].to_vec(),
                        Pooling::Mean => mean(tokens, hidden, encoded.ids.len()),
                    };
                    if self.normalize { unit(vector) } else { vector }
                })
                .collect()
        })?;
        Ok(vectors)
    }

    /// Every text's vector, in input order; blocks on inference.
    fn embed_blocking(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, u64)> {
        let encoded = texts
            .iter()
            .map(|text| self.encode(text))
            .collect::<Result<Vec<_>>>()?;
        let tokens = encoded.iter().map(|e| e.text_tokens as u64).sum();
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].ids.len());
        let lengths: Vec<usize> = order.iter().map(|&i| encoded[i].ids.len()).collect();
        let mut vectors = vec![Vec::new(); encoded.len()];
        for pass in passes(&lengths, self.batch) {
            let indices = &order[pass];
            let batch: Vec<&Encoded> = indices.iter().map(|&i| &encoded[i]).collect();
            let batch_vectors = self
                .forward(&batch)
                .map_err(|e| Error::Transient(format!("local model inference: {e}")))?;
            for (&i, vector) in indices.iter().zip(batch_vectors) {
                vectors[i] = vector;
            }
        }
        Ok((vectors, tokens))
    }
}

/// What one forward pass costs beyond its tokens, in tokens' worth: ~6 ms,
/// while each token (padding too) costs ~0.22 ms on two cores (MiniLM, ONNX
/// Runtime 1.31, batches of 1 and 8 at 40 and 80 tokens; 2026-12-07).
const PASS_COST_TOKENS: usize = 26;

/// Cuts texts sorted by length into forward passes of at most `most` texts
/// each, as runs `start..end` in order, so that the tokens run (each pass is
/// padded to its longest) plus each pass's own cost is least. A document's
/// chunks range from a heading to a full window, and passes of a fixed count
/// ran ~40 % padding on the quality corpus's READMEs.
fn passes(lengths: &[usize], most: usize) -> Vec<Range<usize>> {
    let most = most.max(1);
    // cost[end]: the least cost of the first `end` texts, their last pass
    // starting at start[end].
    let mut cost = vec![0; lengths.len() + 1];
    let mut start = vec![0; lengths.len() + 1];
    for end in 1..=lengths.len() {
        (cost[end], start[end]) = (end.saturating_sub(most)..end)
            .map(|first| {
                let run = cost[first] + (end - first) * lengths[end - 1] + PASS_COST_TOKENS;
                (run, first)
            })
            .min()
            .expect("a pass has at least one text");
    }
    let mut runs = Vec::new();
    let mut end = lengths.len();
    while end > 0 {
        runs.push(start[end]..end);
        end = start[end];
    }
    runs.reverse();
    runs
}

/// The mean of the first `count` token vectors (the text's; the rest pad).
fn mean(tokens: &[f32], hidden: usize, count: usize) -> Vec<f32> {
    let mut sum = vec![0f32; hidden];
    for token in tokens.chunks(hidden).take(count) {
        sum.iter_mut().zip(token).for_each(|(s, t)| *s += t);
    }
    sum.iter().map(|s| s / count.max(1) as f32).collect()
}

/// `vector` scaled to length 1 (a zero vector stays zero).
fn unit(vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    vector.into_iter().map(|x| x / norm).collect()
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn billable(&self) -> bool {
        false
    }
    fn service(&self) -> &'static str {
        "local"
    }
    fn model(&self) -> &str {
        &self.name
    }
    fn dims(&self) -> usize {
        self.dims
    }
    fn query_window<'a>(&self, text: &'a str) -> &'a str {
        self.tokenizer.first_tokens(text)
    }
    async fn embed(&self, inputs: &[EmbedInput<'_>]) -> Result<Embeddings> {
        let texts: Vec<String> = inputs.iter().map(|i| i.text.to_string()).collect();
        let this = self.clone();
        let (vectors, tokens) = tokio::task::spawn_blocking(move || this.embed_blocking(&texts))
            .await
            .map_err(|e| Error::transient("local model thread", e))??;
        Ok(Embeddings {
            vectors,
            model: self.name.clone(),
            service: "local",
            billed_tokens: tokens,
            requests: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(lengths: &[usize], runs: &[Range<usize>]) -> usize {
        runs.iter()
            .map(|run| run.len() * lengths[run.end - 1] + PASS_COST_TOKENS)
            .sum()
    }

    #[test]
    fn short_texts_are_not_padded_to_a_long_ones_length() {
        let lengths = [5, 5, 5, 5, 200, 200];
        assert_eq!(passes(&lengths, 8), vec![0..4, 4..6]);
    }

    #[test]
    fn passes_cover_every_text_once_in_order_within_the_bound() {
        let mut lengths: Vec<usize> = (0..1000).map(|i| 3 + i * 7 % 250).collect();
        lengths.sort_unstable();
        let runs = passes(&lengths, 8);
        assert_eq!(runs.first().map(|r| r.start), Some(0));
        assert!(runs.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(runs.last().map(|r| r.end), Some(lengths.len()));
        assert!(runs.iter().all(|r| (1..=8).contains(&r.len())));
        let fixed: Vec<Range<usize>> = (0..lengths.len())
            .step_by(8)
            .map(|s| s..(s + 8).min(lengths.len()))
            .collect();
        assert!(cost(&lengths, &runs) <= cost(&lengths, &fixed));
        assert!(passes(&[], 8).is_empty());
        assert_eq!(passes(&[9; 20], 8).len(), 3);
    }
}
