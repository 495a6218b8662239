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

/// Bounds of the counts in a config: far above every released model, low
/// enough that a damaged value cannot ask for absurd memory.
const MAX_VOCAB: usize = 1 << 24;
const MAX_WIDTH: usize = 1 << 16;
const MAX_LAYERS: usize = 1024;
const MAX_HEADS: usize = 1024;
const MAX_HEAD_DIM: usize = 1024;
const MAX_POSITIONS: usize = 1 << 24;
/// Latent rows per C3 chunk (the release has 32).
const MAX_LATENTS: usize = 4096;

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
        // Every count from 1 to a bound far above any released model, so a
        // damaged value is named here instead of failing (or allocating)
        // somewhere in the forward pass.
        let counts = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_WIDTH * 16),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("num_key_value_heads", self.num_key_value_heads, MAX_HEADS),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_POSITIONS,
            ),
        ];
        for (name, v, max) in counts {
            if v == 0 || v > max {
                return bad(format!("`{name}` must be from 1 to {max}, found {v}"));
            }
        }
        if let Some(d) = self.head_dim.filter(|&d| d == 0 || d > MAX_HEAD_DIM) {
            return bad(format!(
                "`head_dim` must be from 1 to {MAX_HEAD_DIM}, found {d}"
            ));
        }
        // A negative or zero epsilon divides by zero or by a negative
        // variance (NaN everywhere); one of 1 or more drowns the signal.
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return bad(format!(
                "`rms_norm_eps` must be a number in (0, 1), found {}",
                self.rms_norm_eps
            ));
        }
        // theta <= 1 gives no rotation (1) or growing frequencies (< 1);
        // 0 or a negative one gives NaN or infinite angles.
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad(format!(
                "`rope_theta` must be a finite number > 1, found {}",
                self.rope_theta
            ));
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

fn parse_json<T: for<'de> Deserialize<'de>>(text: &str, path: &Path) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Checkpoint {
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
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    parse_qwen_config(&text, path, allowed)
}

/// [`read_qwen_config`] on the file's text; `path` names it in errors.
pub fn parse_qwen_config(text: &str, path: &Path, allowed: &[&str]) -> Result<Qwen2Config> {
    let cfg: Qwen2Config = parse_json(text, path)?;
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
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    parse_c3_config(&text, path)
}

/// [`read_c3_config`] on the file's text; `path` names it in errors.
pub fn parse_c3_config(text: &str, path: &Path) -> Result<C3Config> {
    let cfg: C3Config = parse_json(text, path)?;
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
    for (name, v, max) in [
        ("latent_token_len", cfg.latent_token_len, MAX_LATENTS),
        (
            "contexts_compression_llm_hidden_size",
            cfg.contexts_compression_llm_hidden_size,
            MAX_WIDTH,
        ),
    ] {
        if v == 0 || v > max {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                msg: format!("`{name}` must be from 1 to {max}, found {v}"),
            });
        }
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
