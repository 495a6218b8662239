//! The options `c3` and `c3-tui` share: where the model and the store are,
//! and how the model is loaded.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct GlobalOptions {
    /// C3 checkpoint directory (config.json, model.safetensors, llm1/, qwen.tiktoken).
    #[arg(long, global = true, env = "C3_MODEL", value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Compute dtype for the model weights.
    #[arg(long, global = true, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Memory store directory [default: the platform data dir, e.g. ~/.local/share/c3/store].
    #[arg(long, global = true, env = "C3_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Quantize the decoder's matrices when loading it (smaller and faster
    /// decoding on CPU; see README, Performance). Default: dense, in --dtype.
    #[arg(long, global = true, value_name = "q8_0|q4k")]
    pub decoder_quant: Option<crate::model::Quant>,
}

impl GlobalOptions {
    /// `--store`, or the default store.
    pub fn store_dir(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(default_store_dir)
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum DTypeArg {
    F32,
    F16,
    Bf16,
}

impl DTypeArg {
    pub fn dtype(self) -> candle_core::DType {
        match self {
            DTypeArg::F32 => candle_core::DType::F32,
            DTypeArg::F16 => candle_core::DType::F16,
            DTypeArg::Bf16 => candle_core::DType::BF16,
        }
    }
}

/// Default store: the platform data dir, e.g. `~/.local/share/c3/store`.
pub fn default_store_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("c3")
        .join("store")
}
