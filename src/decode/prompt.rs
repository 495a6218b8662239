//! The decoder prompt frame (MPT style, no newline after `<|im_end|>`), with
//! one `<img>` + latent slots + `</img>` block per chunk.

use crate::tokenize::{special, C3Tokenizer};
use crate::Result;

pub const SYSTEM: &str =
    "You should follow the instructions carefully and explain your answers in detail.";
/// The paper's reconstruction instruction (trailing space included).
pub const REPEAT: &str = "Repeat the text: ";

/// Prompt ids plus where each block's latent rows go.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// Index in `ids` of the first latent slot of each block.
    pub latent_starts: Vec<usize>,
    pub latent_len: usize,
}

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
        latent_starts,
        latent_len,
    })
}
