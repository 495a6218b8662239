//! Prompt assembly for `ask`: the spec's frame around either latent blocks
//! (one `<img>` + slots + `</img>` per chunk) or the chunks' stored text.

use crate::decode::prompt::SYSTEM;
use crate::decode::{build_prompt, Prompt};
use crate::retrieve::Budget;
use crate::tokenize::{special, C3Tokenizer};
use crate::Result;

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

/// Chat control ids of the model that reads a text prompt.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub im_start: u32,
    pub im_end: u32,
    /// `<think>`, `</think>`: the answer opens with an empty think block, as
    /// Qwen3's chat template writes it with thinking off.
    pub empty_think: Option<(u32, u32)>,
}

/// The C3 vocabulary's frame ids.
pub const C3_FRAME: Frame = Frame {
    im_start: special::IM_START,
    im_end: special::IM_END,
    empty_think: None,
};

/// The same frame with the chunks' text (already tokenized as plain text)
/// where the latent blocks would be, separated by a newline.
pub fn text_prompt(
    encode: &dyn Fn(&str) -> Result<Vec<u32>>,
    frame: Frame,
    blocks: &[Vec<u32>],
    question: &str,
) -> Result<Vec<u32>> {
    let mut ids = vec![frame.im_start];
    ids.extend(encode(&format!("system\n{SYSTEM}"))?);
    ids.push(frame.im_end);
    ids.push(frame.im_start);
    ids.extend(encode("user\n")?);
    let newline = encode("\n")?;
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            ids.extend(&newline);
        }
        ids.extend(b);
    }
    ids.extend(encode(&format!("\n{question}"))?);
    ids.push(frame.im_end);
    ids.push(frame.im_start);
    ids.extend(encode("assistant\n")?);
    if let Some((open, close)) = frame.empty_think {
        ids.push(open);
        ids.extend(encode("\n\n")?);
        ids.push(close);
        ids.extend(encode("\n\n")?);
    }
    Ok(ids)
}

/// Budget of the text frame (block costs are the texts' token counts).
pub fn text_budget(
    encode: &dyn Fn(&str) -> Result<Vec<u32>>,
    frame: Frame,
    question: &str,
    limit: usize,
) -> Result<Budget> {
    Ok(Budget {
        base: text_prompt(encode, frame, &[], question)?.len(),
        separator: encode("\n")?.len(),
        limit,
    })
}
