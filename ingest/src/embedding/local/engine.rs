//! The model's encoder run by ONNX Runtime (`ort`), loaded at start from
//! the model directory: `model.onnx` (the encoder, written from the
//! safetensors by scripts/bert_to_onnx.py) and `libonnxruntime.so` (from
//! the onnxruntime wheel). ONNX Runtime's CPU kernels ran MiniLM at about
//! sentence-transformers' speed, where candle's ran at half of it
//! (docs/benchmarks/local-model.md).

use super::tokenizer::{ModelError, model_error};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// The library file in the model directory.
pub(super) const RUNTIME_LIB: &str = "libonnxruntime.so";
/// The encoder file in the model directory.
pub(super) const ENCODER: &str = "model.onnx";

/// An encoder session; clones share it (one forward pass at a time, each
/// using the session's threads).
#[derive(Clone)]
pub(super) struct Encoder {
    session: Arc<Mutex<Session>>,
}

/// Token ids and their mask for a batch padded to its longest text.
pub(super) struct Batch {
    pub texts: usize,
    pub tokens: usize,
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
}

impl Encoder {
    /// The encoder in `dir` on `threads` threads.
    pub(super) fn load(dir: &Path, threads: usize) -> Result<Encoder, ModelError> {
        let environment = runtime(&dir.join(RUNTIME_LIB))?;
        let path = dir.join(ENCODER);
        let build = || -> ort::Result<Session> {
            Session::builder(environment)?
                .with_optimization_level(GraphOptimizationLevel::Level3)?
                .with_intra_threads(threads)?
                .with_inter_threads(1)?
                .commit_from_file(&path)
        };
        let session = build().map_err(|e| model_error(&path, e))?;
        Ok(Encoder {
            session: Arc::new(Mutex::new(session)),
        })
    }

    /// `read` of every token's vector (`texts × tokens × hidden`,
    /// row-major, and `hidden`), as the runtime holds them: not copied.
    pub(super) fn hidden<R>(
        &self,
        batch: Batch,
        read: impl FnOnce(&[f32], usize) -> R,
    ) -> ort::Result<R> {
        let shape = [batch.texts, batch.tokens];
        let ids = Tensor::from_array((shape, batch.ids))?;
        let mask = Tensor::from_array((shape, batch.mask))?;
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let outputs = session.run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])?;
        let (shape, values) = outputs["last_hidden_state"].try_extract_tensor::<f32>()?;
        Ok(read(values, shape.last().copied().unwrap_or(0) as usize))
    }
}

/// ONNX Runtime loaded from `lib`, once per process: the first model
/// directory's library serves every model the process loads after it.
fn runtime(lib: &Path) -> Result<&'static Environment, ModelError> {
    static LOADED: OnceLock<Result<Environment, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let builder = ort::init_from(lib).map_err(|e| e.to_string())?;
            builder.build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|reason| model_error(lib, reason))
}
