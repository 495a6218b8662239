//! Command line of `c3-tui`: the same global options as `c3`.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "c3-tui",
    version,
    about = "Browse a c3 memory store: documents, chunks, latents; reconstruct and ask",
    args_override_self = true
)]
pub struct Args {
    /// C3 checkpoint directory; without it the TUI only browses (r and a need it).
    #[arg(long, env = "C3_MODEL", value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Compute dtype for the model weights.
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Memory store directory [default: the platform data dir, e.g. ~/.local/share/c3/store].
    #[arg(long, env = "C3_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Quantize the decoder's matrices when loading it (q8_0 or q4k), as `c3 --decoder-quant`.
    #[arg(long, value_name = "q8_0|q4k")]
    pub decoder_quant: Option<c3::model::Quant>,
    /// Most tokens to generate [default: reconstructions 1.25 x the chunk's tokens + 64, answers 512].
    #[arg(long, value_name = "N")]
    pub max_new_tokens: Option<usize>,
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

/// The store `c3` uses when `--store` is not given.
pub fn default_store_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("c3")
        .join("store")
}
