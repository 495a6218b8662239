//! Qwen2 / Qwen2.5 / Qwen3 chat models from GGUF files (llama.cpp's format,
//! e.g. q4_k_m or q8_0), run through candle-transformers' quantized model
//! code: text-mode answer models (`--answer-model FILE.gguf`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_qwen2, quantized_qwen3};

use crate::{Error, Result};

enum Weights {
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
}

/// A loaded GGUF language model. candle's quantized models keep their KV
/// cache inside, so a run needs `&mut` and starts with [`GgufLm::reset`].
pub struct GgufLm {
    weights: Weights,
    /// `qwen2` or `qwen3` (`general.architecture`).
    pub arch: String,
    /// `{arch}.context_length`.
    pub context_length: usize,
    /// Rows of the output matrix.
    pub vocab: usize,
}

/// What [`GgufLm::open`] reads besides the weights.
pub struct GgufHeader {
    pub metadata: HashMap<String, Value>,
    pub chat_template: Option<String>,
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

impl GgufLm {
    /// Loads `path`; its metadata (for the tokenizer and chat template) comes
    /// back beside the model.
    pub fn open(path: &Path, device: &Device) -> Result<(GgufLm, GgufHeader)> {
        let mut f = std::fs::File::open(path).map_err(Error::io(path))?;
        let mut ct =
            Content::read(&mut f).map_err(|e| bad(path, format!("not a GGUF file: {e}")))?;
        let md = |k: &str| ct.metadata.get(k);
        let arch = md("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| bad(path, "no general.architecture in the GGUF metadata"))?;
        if arch != "qwen2" && arch != "qwen3" {
            return Err(bad(
                path,
                format!(
                    "general.architecture is {arch:?}: c3 answers with Qwen2, Qwen2.5 or Qwen3 \
                     GGUF files (\"qwen2\", \"qwen3\")"
                ),
            ));
        }
        let context_length = md(&format!("{arch}.context_length"))
            .and_then(|v| v.to_u64().ok())
            .ok_or_else(|| {
                bad(
                    path,
                    format!("no {arch}.context_length in the GGUF metadata"),
                )
            })? as usize;
        let vocab = ct
            .tensor_infos
            .get("output.weight")
            .or_else(|| ct.tensor_infos.get("token_embd.weight"))
            .map(|t| t.shape.dims()[0])
            .ok_or_else(|| bad(path, "no token_embd.weight tensor"))?;
        let chat_template = md("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .cloned();
        let metadata = ct.metadata.clone();
        // candle builds Qwen3's RoPE table in `general.dtype` (f16 when
        // absent): f16 angles drift at long positions, so ask for f32.
        ct.metadata
            .insert("general.dtype".to_string(), Value::U32(0));
        let load_err =
            |e: candle_core::Error| bad(path, format!("loading the {arch} weights: {e}"));
        let weights = if arch == "qwen2" {
            Weights::Qwen2(
                quantized_qwen2::ModelWeights::from_gguf(ct, &mut f, device).map_err(load_err)?,
            )
        } else {
            Weights::Qwen3(
                quantized_qwen3::ModelWeights::from_gguf(ct, &mut f, device).map_err(load_err)?,
            )
        };
        Ok((
            GgufLm {
                weights,
                arch,
                context_length,
                vocab,
            },
            GgufHeader {
                metadata,
                chat_template,
            },
        ))
    }

    /// Forgets the KV cache (before a new prompt).
    pub fn reset(&mut self) {
        match &mut self.weights {
            Weights::Qwen2(w) => w.clear_kv_cache(),
            Weights::Qwen3(w) => w.clear_kv_cache(),
        }
    }

    /// Feeds `ids` at positions `pos..` and gives the logits after the last.
    pub fn forward(&mut self, ids: &[u32], pos: usize, device: &Device) -> Result<Vec<f32>> {
        let x = Tensor::new(ids, device)?.unsqueeze(0)?;
        let logits = match &mut self.weights {
            Weights::Qwen2(w) => w.forward(&x, pos)?,
            Weights::Qwen3(w) => w.forward(&x, pos)?,
        };
        Ok(logits
            .squeeze(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?)
    }
}
