//! A local model's tokenizer and window, and the files of its directory.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokenizers::{PostProcessor, Tokenizer};

/// A model directory that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct ModelError {
    pub path: PathBuf,
    pub reason: String,
}

pub(super) fn model_error(path: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
) -> std::result::Result<T, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| model_error(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| model_error(path, e))
}

/// The checksum list a model directory carries (`sha256sum` output).
pub const CHECKSUMS: &str = "SHA256SUMS";

/// Checks every file `SHA256SUMS` in `dir` names against its SHA-256,
/// and that it names `config.json`, `tokenizer.json` and `required`: a
/// truncated, altered or missing file is a clear error at start.
pub(super) fn verify_checksums(dir: &Path, required: &[&str]) -> Result<(), ModelError> {
    use sha2::{Digest, Sha256};
    let list = dir.join(CHECKSUMS);
    let text = std::fs::read_to_string(&list).map_err(|e| {
        model_error(
            &list,
            format!("{e} (scripts/fetch-model writes it: `sha256sum` of each file)"),
        )
    })?;
    let mut named = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let Some((expected, name)) = line.split_once("  ") else {
            return Err(model_error(
                &list,
                format!("not a sha256sum line: {line:?}"),
            ));
        };
        let name = name.trim_start_matches('*');
        // Names stay inside the directory.
        if name.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(model_error(
                &list,
                format!("{name:?} is outside the directory"),
            ));
        }
        let path = dir.join(name);
        let mut file = std::fs::File::open(&path).map_err(|e| model_error(&path, e))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 1 << 20];
        loop {
            let read =
                std::io::Read::read(&mut file, &mut buffer).map_err(|e| model_error(&path, e))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        if hex::encode(hasher.finalize()) != expected.to_ascii_lowercase() {
            return Err(model_error(
                &path,
                format!(
                    "does not match its SHA-256 in {CHECKSUMS}: truncated or altered (fetch the model again)"
                ),
            ));
        }
        named.push(name);
    }
    match ["config.json", "tokenizer.json"]
        .iter()
        .chain(required)
        .find(|file| !named.contains(file))
    {
        Some(file) => Err(model_error(&list, format!("names no {file}"))),
        None => Ok(()),
    }
}

/// A model's tokenizer and window: what chunking counts so that every chunk
/// fits the model, and what the embedder feeds it.
#[derive(Clone)]
pub struct ModelTokenizer {
    pub(super) tokenizer: Arc<Tokenizer>,
    /// Tokens of text the model reads at once, not counting the special
    /// tokens ([CLS], [SEP]) it adds.
    pub(super) text_window: usize,
}

impl std::fmt::Debug for ModelTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelTokenizer")
            .field("text_window", &self.text_window)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

#[derive(Deserialize)]
struct PositionsConfig {
    max_position_embeddings: usize,
}

impl ModelTokenizer {
    /// The tokenizer of the model in `dir`, with its window: the
    /// `max_seq_length` sentence-transformers uses, else the model's positions.
    /// Loaded once per process and directory: chunking and the embedder of
    /// one process (the CLI, the local runner) share it.
    pub fn load(dir: &Path) -> std::result::Result<Self, ModelError> {
        static LOADED: Mutex<Vec<(PathBuf, ModelTokenizer)>> = Mutex::new(Vec::new());
        let mut loaded = LOADED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, tokenizer)) = loaded.iter().find(|(path, _)| path == dir) {
            return Ok(tokenizer.clone());
        }
        let tokenizer = Self::read(dir)?;
        loaded.push((dir.to_path_buf(), tokenizer.clone()));
        Ok(tokenizer)
    }

    fn read(dir: &Path) -> std::result::Result<Self, ModelError> {
        let path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| model_error(&path, e))?;
        // A tokenizer.json may truncate and pad (all-MiniLM-L6-v2's to 128):
        // truncating would drop text unseen, and batches are padded here.
        tokenizer
            .with_truncation(None)
            .map_err(|e| model_error(&path, e))?;
        tokenizer.with_padding(None);
        let sentence_bert = dir.join("sentence_bert_config.json");
        let window = if sentence_bert.exists() {
            read_json::<SentenceBertConfig>(&sentence_bert)?.max_seq_length
        } else {
            read_json::<PositionsConfig>(&dir.join("config.json"))?.max_position_embeddings
        };
        let specials = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        let text_window = window
            .checked_sub(specials)
            .filter(|&w| w > 0)
            .ok_or_else(|| {
                model_error(dir, format!("a window of {window} tokens holds no text"))
            })?;
        Ok(ModelTokenizer {
            tokenizer: Arc::new(tokenizer),
            text_window,
        })
    }

    /// The most tokens of text one input may hold.
    pub fn text_window(&self) -> usize {
        self.text_window
    }

    /// The longest start of `text` that fits the window.
    pub fn first_tokens<'a>(&self, text: &'a str) -> &'a str {
        let Ok(encoding) = self.tokenizer.encode(text, false) else {
            return text;
        };
        match encoding
            .get_offsets()
            .get(self.text_window.saturating_sub(1))
        {
            Some(&(_, end)) if encoding.len() > self.text_window => {
                text.get(..text.floor_char_boundary(end)).unwrap_or(text)
            }
            _ => text,
        }
    }

    /// The tokens of `text`, without the special tokens.
    pub fn count(&self, text: &str) -> usize {
        self.tokenizer
            .encode_fast(text, false)
            .map_or(text.len(), |encoding| encoding.len())
    }

    /// The byte offset at which each token of `text` starts, ascending.
    pub fn token_starts(&self, text: &str) -> Vec<u32> {
        let Ok(encoding) = self.tokenizer.encode(text, false) else {
            return Vec::new();
        };
        let mut starts: Vec<u32> = encoding
            .get_offsets()
            .iter()
            .map(|&(start, _)| start as u32)
            .collect();
        // Subwords of one word may share a start; sizing wants them ordered.
        starts.sort_unstable();
        starts
    }
}
