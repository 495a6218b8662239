//! A C3 checkpoint directory: decoder config + weights, `llm1/` encoder,
//! `qwen.tiktoken`. Cross-checks the two halves and fingerprints the model.

use crate::model::config::{read_c3_config, read_qwen2_config, C3Config, Qwen2Config};
use crate::model::synthetic::rand;
use crate::model::weights::Weights;
use crate::tokenize::C3Tokenizer;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const TOKENIZER_FILE: &str = "qwen.tiktoken";
pub const ENCODER_DIR: &str = "llm1";
pub const QUERY_TENSOR: &str = "model.Q.weight";
pub const PROJ_WEIGHT: &str = "model.mm_projector.weight";
pub const PROJ_BIAS: &str = "model.mm_projector.bias";

pub struct C3Checkpoint {
    pub dir: PathBuf,
    pub config: C3Config,
    pub encoder_config: Qwen2Config,
}

impl C3Checkpoint {
    /// Reads and cross-checks both configs (no weights are touched yet).
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Checkpoint {
                path: dir.to_path_buf(),
                msg: "not a directory (expected a C3 checkpoint: config.json, \
                      model.safetensors, llm1/, qwen.tiktoken)"
                    .into(),
            });
        }
        let config = read_c3_config(&dir.join("config.json"))?;
        let enc_path = dir.join(ENCODER_DIR).join("config.json");
        let encoder_config = read_qwen2_config(&enc_path)?;
        if encoder_config.hidden_size != config.contexts_compression_llm_hidden_size {
            return Err(Error::Checkpoint {
                path: enc_path,
                msg: format!(
                    "encoder `hidden_size` {} does not match the decoder's \
                     `contexts_compression_llm_hidden_size` {}",
                    encoder_config.hidden_size, config.contexts_compression_llm_hidden_size
                ),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            encoder_config,
        })
    }

    pub fn latent_len(&self) -> usize {
        self.config.latent_token_len
    }

    pub fn tokenizer(&self) -> Result<C3Tokenizer> {
        C3Tokenizer::from_tiktoken_file(&self.dir.join(TOKENIZER_FILE))
    }

    pub fn decoder_weights(&self, dtype: DType, device: &Device) -> Result<Weights> {
        Weights::open(&self.dir, dtype, device)
    }

    pub fn encoder_weights(&self, dtype: DType, device: &Device) -> Result<Weights> {
        Weights::open(&self.dir.join(ENCODER_DIR), dtype, device)
    }

    /// The files that decide what the decoder computes: its weights (the
    /// projector's too) and configuration (the prefix cache keys by them).
    pub fn decoder_files(&self) -> Result<Vec<std::path::PathBuf>> {
        let mut files = crate::model::weights::weight_files(&self.dir)?;
        files.push(self.dir.join("config.json"));
        Ok(files)
    }

    /// This checkpoint's fingerprint (see [`fingerprint`]).
    pub fn fingerprint(&self, decoder_weights: &Weights) -> Result<String> {
        fingerprint(&self.encoder_config, self.latent_len(), decoder_weights)
    }
}

/// Hex blake3 of what determines the latents' meaning: the encoder config,
/// `Q` and the projector, hashed from their stored bytes (so it does not
/// depend on the dtype they are loaded in).
pub fn fingerprint(
    encoder: &Qwen2Config,
    latent_len: usize,
    decoder_weights: &Weights,
) -> Result<String> {
    let mut h = blake3::Hasher::new();
    let cfg = serde_json::to_vec(encoder).map_err(|e| Error::Checkpoint {
        path: decoder_weights.dir().to_path_buf(),
        msg: format!("cannot serialise encoder config: {e}"),
    })?;
    h.update(&cfg);
    h.update(&(latent_len as u64).to_le_bytes());
    for name in [QUERY_TENSOR, PROJ_WEIGHT, PROJ_BIAS] {
        h.update(name.as_bytes());
        h.update(&decoder_weights.raw_bytes(name)?);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Random C3 parts (`Q`, projector) added to decoder tensors, for benchmarks
/// at the release geometry without a download.
pub fn add_random_c3_parts(
    m: &mut HashMap<String, Tensor>,
    cfg: &C3Config,
    dtype: DType,
    device: &Device,
) -> Result<()> {
    let (q, e, d) = (
        cfg.latent_token_len,
        cfg.contexts_compression_llm_hidden_size,
        cfg.llm.hidden_size,
    );
    m.insert(QUERY_TENSOR.into(), rand(&[q, e], dtype, device)?);
    m.insert(PROJ_WEIGHT.into(), rand(&[d, e], dtype, device)?);
    m.insert(PROJ_BIAS.into(), rand(&[d], dtype, device)?);
    Ok(())
}
