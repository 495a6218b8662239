//! Command line of `c3-tui`: the global options of `c3` (without a model
//! the TUI only browses; r and a need one), plus its own.

use c3::options::GlobalOptions;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "c3-tui",
    version,
    about = "Browse a c3 memory store: documents, chunks, latents; reconstruct and ask",
    args_override_self = true
)]
pub struct Args {
    #[command(flatten)]
    pub global: GlobalOptions,
    /// Most tokens to generate [default: reconstructions 1.25 x the chunk's tokens + 64, answers 512].
    #[arg(long, value_name = "N")]
    pub max_new_tokens: Option<usize>,
}
