//! The C3 decoder prompt frame (MPT style, no newline after `<|im_end|>`),
//! with one `<img>` + latent slots + `</img>` block per chunk: the paper's
//! reconstruction prompt and `ask`'s latent prompt.

use crate::cascade::prompt::Prompt;
use crate::cascade::text_frame::SYSTEM;
use crate::retrieve::Budget;
use crate::tokenize::{special, C3Tokenizer};
use crate::Result;

/// The frame below and how its slots are filled (projected latents in
/// place of the `<imgpad>` embeddings); bump it when either changes, so a
/// prefix cache never serves keys and values of another frame.
pub const FRAME_VERSION: &str = "c3-mpt-img/1";

/// The paper's reconstruction instruction (trailing space included).
pub const REPEAT: &str = "Repeat the text: ";

/// Builds `<|im_start|>system\n{SYSTEM}<|im_end|><|im_start|>user\n`
/// `<img>{slots}</img>` (blocks joined by `\n`) `\n{instruction}<|im_end|>`
/// `<|im_start|>assistant\n`. Text pieces are encoded as plain text, so an
/// instruction can never smuggle in a control id.
pub fn build_prompt(
    tok: &C3Tokenizer,
    blocks: usize,
    latent_len: usize,
    instruction: &str,
) -> Result<Prompt> {
    let mut ids = vec![special::IM_START];
    ids.extend(tok.encode_text(&format!("system\n{SYSTEM}"))?);
    ids.push(special::IM_END);
    ids.push(special::IM_START);
    ids.extend(tok.encode_text("user\n")?);
    let newline = tok.encode_text("\n")?;
    let mut latent_starts = Vec::with_capacity(blocks);
    for b in 0..blocks {
        if b > 0 {
            ids.extend(&newline);
        }
        ids.push(special::IMG_START);
        latent_starts.push(ids.len());
        ids.extend(std::iter::repeat_n(special::IMG_PAD, latent_len));
        ids.push(special::IMG_END);
    }
    ids.extend(tok.encode_text(&format!("\n{instruction}"))?);
    ids.push(special::IM_END);
    ids.push(special::IM_START);
    ids.extend(tok.encode_text("assistant\n")?);
    Ok(Prompt {
        ids,
        latent_lens: vec![latent_len; latent_starts.len()],
        latent_starts,
    })
}

/// The latent frame with the question in place of "Repeat the text: ".
pub fn latent_prompt(
    tok: &C3Tokenizer,
    blocks: usize,
    latent_len: usize,
    question: &str,
) -> Result<Prompt> {
    build_prompt(tok, blocks, latent_len, question)
}

/// Budget of the latent frame: each block is `<img>` + slots + `</img>`.
pub fn latent_budget(
    tok: &C3Tokenizer,
    latent_len: usize,
    question: &str,
    limit: usize,
) -> Result<(Budget, usize)> {
    let base = latent_prompt(tok, 0, latent_len, question)?.ids.len();
    let separator = tok.encode_text("\n")?.len();
    Ok((
        Budget {
            base,
            separator,
            limit,
        },
        latent_len + 2,
    ))
}
