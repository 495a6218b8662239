//! Checkpoint configs: the Qwen fields every stack shares (Qwen2 and Qwen3
//! differ only in configuration here), plus the C3 extras.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The Qwen2 / Qwen3 fields the forward pass needs. Every number comes from
/// `config.json`; nothing about the geometry is hard-coded. Qwen3 differs by
/// configuration only: an explicit `head_dim`, no q/k/v biases
/// (`attention_bias`), and per-head RMS norms of q and k (`model_type`
/// "qwen3").
///
/// The optional fields are left out of the serialised form when absent, so
/// the fingerprints of existing C3 stores (which hash this struct) do not move.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Qwen2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    pub model_type: String,
    /// Explicit per-head width (Qwen3); absent: hidden / heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Whether q/k/v have biases; absent: true for Qwen2, false for Qwen3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_bias: Option<bool>,
}

/// The Qwen `model_type`s this forward pass implements.
pub const QWEN2: &str = "qwen2";
pub const QWEN3: &str = "qwen3";

fn default_act() -> String {
    "silu".into()
}

/// The decoder's config: Qwen2 fields plus the C3 compression fields.
#[derive(Debug, Clone, Deserialize)]
pub struct C3Config {
    #[serde(flatten)]
    pub llm: Qwen2Config,
    pub latent_token_len: usize,
    pub contexts_compression_llm_hidden_size: usize,
    #[serde(default)]
    pub use_im_start_end: bool,
    pub im_patch_token: u32,
    pub im_start_token: u32,
    pub im_end_token: u32,
}

impl Qwen2Config {
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Qwen3 normalises every q and k head before RoPE.
    pub fn qk_norm(&self) -> bool {
        self.model_type == QWEN3
    }

    /// Whether q, k and v carry biases.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias.unwrap_or(self.model_type != QWEN3)
    }

    /// Rejects values this implementation does not support, naming the field.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |msg: String| {
            Err(Error::Checkpoint {
                path: path.to_path_buf(),
                msg,
            })
        };
        if self.hidden_act != "silu" {
            return bad(format!(
                "unsupported `hidden_act` {:?} (only \"silu\")",
                self.hidden_act
            ));
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return bad("unsupported `rope_scaling` (only plain RoPE)".into());
        }
        if self.use_sliding_window {
            return bad("unsupported `use_sliding_window: true`".into());
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, v) in positive {
            if v == 0 {
                return bad(format!("`{name}` must be positive"));
            }
        }
        if self.head_dim == Some(0) {
            return bad("`head_dim` must be positive".into());
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "`hidden_size` {} is not divisible by `num_attention_heads` {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "`num_attention_heads` {} is not divisible by `num_key_value_heads` {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head dim {} must be even for RoPE",
                self.head_dim()
            ));
        }
        Ok(())
    }
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        msg: format!("invalid config: {e}"),
    })
}

/// Reads an encoder config (`llm1/config.json`, model_type "qwen2").
pub fn read_qwen2_config(path: &Path) -> Result<Qwen2Config> {
    read_qwen_config(path, &[QWEN2])
}

/// Reads a plain Qwen config whose `model_type` is one of `allowed`.
pub fn read_qwen_config(path: &Path, allowed: &[&str]) -> Result<Qwen2Config> {
    let cfg: Qwen2Config = read_json(path)?;
    if !allowed.contains(&cfg.model_type.as_str()) {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            msg: format!(
                "unknown `model_type` {:?} (expected {})",
                cfg.model_type,
                allowed
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        });
    }
    cfg.validate(path)?;
    Ok(cfg)
}

/// Reads the decoder config (`config.json`, model_type "C3").
pub fn read_c3_config(path: &Path) -> Result<C3Config> {
    let cfg: C3Config = read_json(path)?;
    if cfg.llm.model_type != "C3" {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            msg: format!(
                "unknown `model_type` {:?} (a C3 checkpoint has \"C3\")",
                cfg.llm.model_type
            ),
        });
    }
    cfg.llm.validate(path)?;
    if cfg.latent_token_len == 0 {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            msg: "`latent_token_len` must be positive".into(),
        });
    }
    for (name, id) in [
        ("im_patch_token", cfg.im_patch_token),
        ("im_start_token", cfg.im_start_token),
        ("im_end_token", cfg.im_end_token),
    ] {
        if id as usize >= cfg.llm.vocab_size {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                msg: format!(
                    "`{name}` {id} is outside the vocabulary ({})",
                    cfg.llm.vocab_size
                ),
            });
        }
    }
    Ok(cfg)
}
