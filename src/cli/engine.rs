//! Loads the encoder of `--model` for `c3 ingest` (and `c3 serve`),
//! whichever family it is.

use anyhow::bail;
use c3::family::{AnyEncoder, Family};

use super::model_cmds::ModelCtx;

/// The encoder of `--model` and the chunk size to use: `chunk_tokens` when
/// given (it must fit a C3 encoder's positions), else the family's default
/// (C3: 1000 tokens; LCLM: its encoder window, so a chunk is one window).
pub fn load(ctx: &ModelCtx, chunk_tokens: Option<usize>) -> anyhow::Result<(AnyEncoder, usize)> {
    let device = ctx.device()?;
    let enc = match ctx.family()? {
        Family::C3 => {
            let ckpt = ctx.checkpoint()?;
            let enc = ctx.encoder(&ckpt, &device)?;
            if let Some(n) = chunk_tokens.filter(|&n| n > enc.max_text_tokens()) {
                bail!(
                    "--chunk-tokens {n} exceeds the encoder's limit of {} tokens",
                    enc.max_text_tokens()
                );
            }
            AnyEncoder::C3(Box::new(enc))
        }
        Family::Lclm => {
            let ckpt = ctx.lclm_checkpoint()?;
            AnyEncoder::Lclm(Box::new(ctx.lclm_encoder(&ckpt, &device)?))
        }
    };
    let n = chunk_tokens.unwrap_or_else(|| enc.default_chunk_tokens());
    Ok((enc, n))
}
