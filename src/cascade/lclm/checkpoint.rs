//! An LCLM checkpoint directory (`model_config.json`, `encoder/`,
//! `decoder/`, `adapter/`): layout checks, configs, tokenizers, memory token
//! ids, and the fingerprint a store binds to.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::adapter::TENSORS as ADAPTER_TENSORS;
use super::config::{read_model_config, LclmConfig};
use crate::model::config::{read_qwen_config, Qwen2Config, QWEN3};
use crate::model::weights::Weights;
use crate::tokenize::HfTokenizer;
use crate::{Error, Result};

pub const MODEL_CONFIG: &str = "model_config.json";
pub const ENCODER_DIR: &str = "encoder";
pub const DECODER_DIR: &str = "decoder";
pub const ADAPTER_FILE: &str = "adapter/adapter.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";

pub const MEMORY_START: &str = "<|memory_start|>";
pub const MEMORY_END: &str = "<|memory_end|>";
pub const MEMORY: &str = "<|memory|>";

/// The decoder's frame and memory ids, looked up by content (never
/// hard-coded: they depend on the order the tokens were added in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryIds {
    pub memory_start: u32,
    pub memory_end: u32,
    pub memory: u32,
    pub im_start: u32,
    pub im_end: u32,
}

pub struct LclmCheckpoint {
    pub dir: PathBuf,
    pub config: LclmConfig,
    pub encoder_config: Qwen2Config,
    pub decoder_config: Qwen2Config,
}

fn err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// True when `dir` has the LCLM layout.
pub fn is_lclm_dir(dir: &Path) -> bool {
    dir.join(MODEL_CONFIG).is_file()
        && [ENCODER_DIR, DECODER_DIR, "adapter"]
            .iter()
            .all(|d| dir.join(d).is_dir())
}

impl LclmCheckpoint {
    /// Reads and cross-checks every config (no weights are read yet).
    pub fn open(dir: &Path) -> Result<Self> {
        if !is_lclm_dir(dir) {
            return Err(err(
                dir,
                "not an LCLM checkpoint (expected model_config.json, encoder/, decoder/, adapter/)",
            ));
        }
        refuse_training_leftovers(dir)?;
        let config = read_model_config(&dir.join(MODEL_CONFIG))?;
        let encoder_config =
            read_qwen_config(&dir.join(ENCODER_DIR).join("config.json"), &[QWEN3])?;
        let decoder_config =
            read_qwen_config(&dir.join(DECODER_DIR).join("config.json"), &[QWEN3])?;
        // A window is one encoder forward: it must fit the encoder.
        if config.encoder_window_size > encoder_config.max_position_embeddings {
            return Err(err(
                &dir.join(MODEL_CONFIG),
                format!(
                    "`encoder_window_size` {} exceeds the encoder's `max_position_embeddings` {} \
                     ({ENCODER_DIR}/config.json)",
                    config.encoder_window_size, encoder_config.max_position_embeddings
                ),
            ));
        }
        let adapter = dir.join(ADAPTER_FILE);
        if !adapter.is_file() {
            return Err(err(&adapter, "missing adapter weights"));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            encoder_config,
            decoder_config,
        })
    }

    pub fn encoder_weights(&self, dtype: DType, device: &Device) -> Result<Weights> {
        Weights::open(&self.dir.join(ENCODER_DIR), dtype, device)
    }

    pub fn decoder_weights(&self, dtype: DType, device: &Device) -> Result<Weights> {
        Weights::open(&self.dir.join(DECODER_DIR), dtype, device)
    }

    pub fn adapter_weights(&self, dtype: DType, device: &Device) -> Result<Weights> {
        Weights::open_file(&self.dir.join(ADAPTER_FILE), dtype, device)
    }

    pub fn encoder_tokenizer(&self) -> Result<HfTokenizer> {
        HfTokenizer::from_file(&self.dir.join(ENCODER_DIR).join(TOKENIZER))
    }

    pub fn decoder_tokenizer(&self) -> Result<HfTokenizer> {
        HfTokenizer::from_file(&self.dir.join(DECODER_DIR).join(TOKENIZER))
    }

    /// The memory and chat ids of the decoder tokenizer, each inside the
    /// decoder's vocabulary.
    pub fn memory_ids(&self, tok: &HfTokenizer) -> Result<MemoryIds> {
        let path = self.dir.join(DECODER_DIR).join(TOKENIZER);
        let vocab = self.decoder_config.vocab_size;
        let id = |content: &str| -> Result<u32> {
            let id = tok.added_id(content).ok_or_else(|| {
                err(
                    &path,
                    format!("the decoder tokenizer has no added token {content} (an LCLM decoder needs it)"),
                )
            })?;
            if id as usize >= vocab {
                return Err(err(
                    &path,
                    format!("{content} has id {id}, outside the decoder's vocab_size {vocab}"),
                ));
            }
            Ok(id)
        };
        Ok(MemoryIds {
            memory_start: id(MEMORY_START)?,
            memory_end: id(MEMORY_END)?,
            memory: id(MEMORY)?,
            im_start: id("<|im_start|>")?,
            im_end: id("<|im_end|>")?,
        })
    }

    /// Hex blake3 of what gives stored latents their meaning, prefixed with
    /// the family and ratio (`lclm/r4/w1024/…`, see `store::LatentLayout`):
    /// the compression settings, the encoder config, the adapter's tensors
    /// and the encoder's norm weights (the final norm and every layer's
    /// q/k norms, which fine-tuning moves; hashing all 0.6B encoder weights
    /// would read 2.4 GB on every start).
    pub fn fingerprint(&self, encoder: &Weights, adapter: &Weights) -> Result<String> {
        let mut h = blake3::Hasher::new();
        h.update(b"lclm");
        for v in [
            self.config.compression_ratio,
            self.config.encoder_window_size,
        ] {
            h.update(&(v as u64).to_le_bytes());
        }
        let cfg = serde_json::to_vec(&self.encoder_config)
            .map_err(|e| err(&self.dir, format!("cannot serialise encoder config: {e}")))?;
        h.update(&cfg);
        for name in ADAPTER_TENSORS {
            h.update(name.as_bytes());
            h.update(&adapter.raw_bytes(name)?);
        }
        let pre = if encoder.contains("model.norm.weight") {
            "model."
        } else {
            ""
        };
        let mut norms = vec![format!("{pre}norm.weight")];
        for l in 0..self.encoder_config.num_hidden_layers {
            for n in ["q_norm", "k_norm"] {
                norms.push(format!("{pre}layers.{l}.self_attn.{n}.weight"));
            }
        }
        for name in norms {
            h.update(name.as_bytes());
            h.update(&encoder.raw_bytes(&name)?);
        }
        Ok(format!(
            "lclm/r{}/w{}/{}",
            self.config.compression_ratio,
            self.config.encoder_window_size,
            h.finalize().to_hex()
        ))
    }
}

/// LCLM's loader also takes LoRA folders and training checkpoints; the
/// releases have neither, and neither is implemented here.
fn refuse_training_leftovers(dir: &Path) -> Result<()> {
    for sub in ["", ENCODER_DIR, DECODER_DIR, "adapter"] {
        let lora = dir.join(sub).join("adapter_model.safetensors");
        if lora.exists() {
            return Err(err(
                &lora,
                "LoRA adapters are not supported: merge them into the weights first",
            ));
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("checkpoint_") && e.path().is_dir() {
                return Err(err(
                    &e.path(),
                    "training checkpoint folders are not supported: point --model at an \
                     exported checkpoint (model_config.json, encoder/, decoder/, adapter/)",
                ));
            }
        }
    }
    Ok(())
}
