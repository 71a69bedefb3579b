//! `EMBEDDING_PROVIDER=local`: sentence-embedding models of the BERT family
//! (all-MiniLM-L6-v2, bge-small/base, e5-small/base, gte-small…) run
//! in-process on the CPU with candle, from a sentence-transformers model
//! directory (`EMBEDDING_MODEL_DIR`): `config.json`, `model.safetensors`,
//! `tokenizer.json`, and the pooling and window sentence-transformers keeps
//! in `1_Pooling/config.json`, `modules.json` and `sentence_bert_config.json`.
//!
//! Text is never cut to fit: a chunk over the model's window is rejected
//! (`chunk_too_long`), and chunking counts the same tokens
//! ([`ModelTokenizer`]) so that chunks fit.

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use docpipe_core::embedding::{EmbedInput, Embedder, Embeddings};
use docpipe_core::error::{Error, Rejection, Result};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
mod tokenizer;

pub use tokenizer::{ModelError, ModelTokenizer};
use tokenizer::{model_error, read_json};

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
struct ModelType {
    model_type: Option<String>,
}

/// A BERT-family sentence model run on this process's CPU (clones share it).
#[derive(Clone)]
pub struct LocalEmbedder {
    name: String,
    dims: usize,
    tokenizer: ModelTokenizer,
    model: Arc<BertModel>,
    pooling: Pooling,
    normalize: bool,
    /// Texts in one forward pass: padding to the longest costs less in
    /// batches of similar lengths, which inputs are sorted into.
    batch: usize,
    /// The threads inference may use, whatever else the process runs.
    threads: Arc<rayon::ThreadPool>,
}

impl LocalEmbedder {
    /// Loads the model in `dir` (weights are read whole: ~90 MB for MiniLM).
    pub fn load(
        name: &str,
        dir: &Path,
        threads: usize,
        batch: usize,
    ) -> std::result::Result<Self, ModelError> {
        let config_path = dir.join("config.json");
        // The family first, alone: another family's config may not parse as
        // BERT's, and its name is the clearer reason.
        let model_type: ModelType = read_json(&config_path)?;
        if let Some(kind) = model_type.model_type.filter(|kind| kind != "bert") {
            return Err(model_error(
                &config_path,
                format!("model_type {kind:?} is not supported (only BERT-family models)"),
            ));
        }
        let config: Config = read_json(&config_path)?;
        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|e| model_error(&weights_path, e))?;
        let weights = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| model_error(&weights_path, e))?;
        let model = BertModel::load(weights, &config).map_err(|e| model_error(&weights_path, e))?;
        let (pooling, normalize) = pooling(dir)?;
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("embed-{i}"))
            .build()
            .map_err(|e| model_error(dir, e))?;
        Ok(LocalEmbedder {
            name: name.to_string(),
            dims: config.hidden_size,
            tokenizer: ModelTokenizer::load(dir)?,
            model: Arc::new(model),
            pooling,
            normalize,
            batch: batch.max(1),
            threads: Arc::new(threads),
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
    fn forward(&self, batch: &[&Encoded]) -> candle_core::Result<Vec<Vec<f32>>> {
        let longest = batch.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for encoded in batch {
            let padding = longest - encoded.ids.len();
            ids.extend(&encoded.ids);
            ids.extend(std::iter::repeat_n(0u32, padding));
            mask.extend(std::iter::repeat_n(1u32, encoded.ids.len()));
            mask.extend(std::iter::repeat_n(0u32, padding));
        }
        let shape = (batch.len(), longest);
        let ids = Tensor::from_vec(ids, shape, &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, shape, &Device::Cpu)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
                summed.broadcast_div(&mask.sum(1)?)?
            }
        };
        let pooled = if self.normalize {
            let norms = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12, f32::MAX)?;
            pooled.broadcast_div(&norms)?
        } else {
            pooled
        };
        pooled.to_vec2()
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
        let mut vectors = vec![Vec::new(); encoded.len()];
        for indices in order.chunks(self.batch) {
            let batch: Vec<&Encoded> = indices.iter().map(|&i| &encoded[i]).collect();
            let batch_vectors = self
                .threads
                .install(|| self.forward(&batch))
                .map_err(|e| Error::Transient(format!("local model inference: {e}")))?;
            for (&i, vector) in indices.iter().zip(batch_vectors) {
                vectors[i] = vector;
            }
        }
        Ok((vectors, tokens))
    }
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
