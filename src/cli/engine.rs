//! Loads the encoder of `--model` for `c3 ingest`, whichever family it is.

use anyhow::bail;
use c3::encode::C3Encoder;
use c3::family::Family;
use c3::lclm::LclmEncoder;

use super::model_cmds::ModelCtx;

/// An ingest encoder; its tokenizer sizes the chunks.
pub enum IngestEncoder {
    C3(Box<C3Encoder>),
    Lclm(Box<LclmEncoder>),
}

/// The encoder of `--model` and the chunk size to use: `chunk_tokens` when
/// given (it must fit a C3 encoder's positions), else the family's default
/// (C3: 1000 tokens; LCLM: its encoder window, so a chunk is one window).
pub fn load(ctx: &ModelCtx, chunk_tokens: Option<usize>) -> anyhow::Result<(IngestEncoder, usize)> {
    let device = ctx.device()?;
    match ctx.family()? {
        Family::C3 => {
            let ckpt = ctx.checkpoint()?;
            let enc = ctx.encoder(&ckpt, &device)?;
            let n = chunk_tokens.unwrap_or(c3::chunk::DEFAULT_CHUNK_TOKENS);
            if n > enc.max_text_tokens() {
                bail!(
                    "--chunk-tokens {n} exceeds the encoder's limit of {} tokens",
                    enc.max_text_tokens()
                );
            }
            Ok((IngestEncoder::C3(Box::new(enc)), n))
        }
        Family::Lclm => {
            let ckpt = ctx.lclm_checkpoint()?;
            let enc = ctx.lclm_encoder(&ckpt, &device)?;
            let n = chunk_tokens.unwrap_or(ckpt.config.encoder_window_size);
            Ok((IngestEncoder::Lclm(Box::new(enc)), n))
        }
    }
}
