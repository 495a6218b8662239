//! Loads the C3 encoder for `c3 ingest`.

use anyhow::bail;
use c3::encode::C3Encoder;

use super::model_cmds::ModelCtx;

/// The encoder of `--model`; its tokenizer sizes the chunks. `chunk_tokens`
/// must fit the encoder's positions.
pub fn load(ctx: &ModelCtx, chunk_tokens: usize) -> anyhow::Result<C3Encoder> {
    let ckpt = ctx.checkpoint()?;
    let enc = ctx.encoder(&ckpt, &ctx.device()?)?;
    if chunk_tokens > enc.max_text_tokens() {
        bail!(
            "--chunk-tokens {chunk_tokens} exceeds the encoder's limit of {} tokens",
            enc.max_text_tokens()
        );
    }
    Ok(enc)
}
