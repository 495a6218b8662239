//! The `c3` command line: global options and subcommand dispatch.

pub mod input;
pub mod model_cmds;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "c3",
    version,
    about = "Compressed long-context memory (Context Cascade Compression)"
)]
pub struct Cli {
    /// C3 checkpoint directory (config.json, model.safetensors, llm1/, qwen.tiktoken).
    #[arg(long, global = true, env = "C3_MODEL", value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Compute dtype for the model weights.
    #[arg(long, global = true, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
    /// Quantize the decoder's matrices when loading it (smaller and faster
    /// decoding on CPU; see README, Performance). Default: dense, in --dtype.
    #[arg(long, global = true, value_name = "q8_0|q4k")]
    pub decoder_quant: Option<c3::model::Quant>,
    #[command(subcommand)]
    pub command: Command,
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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the token ids of a text as a JSON array.
    Tokenize(model_cmds::TokenizeArgs),
    /// Compress a text (one chunk) into latents, written as a .npy file.
    Encode(model_cmds::EncodeArgs),
    /// Compress a text and reconstruct it from its latents (the paper's task).
    Repeat(model_cmds::RepeatArgs),
}

/// Runs the parsed command; the result is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let ctx = model_cmds::ModelCtx {
        model: cli.model,
        dtype: cli.dtype.dtype(),
        decoder_quant: cli.decoder_quant,
    };
    match cli.command {
        Command::Tokenize(a) => model_cmds::tokenize(&ctx, &a),
        Command::Encode(a) => model_cmds::encode(&ctx, &a),
        Command::Repeat(a) => model_cmds::repeat(&ctx, &a),
    }
}
