//! The chat frame of a text prompt (text mode, and answer models that read
//! text): `<|im_start|>system\n{SYSTEM}<|im_end|><|im_start|>user\n`, the
//! chunks' text, the question, `<|im_end|><|im_start|>assistant\n`. Text
//! pieces are encoded as plain text, so no chunk or question can smuggle in
//! a control id.

use crate::retrieve::Budget;
use crate::tokenize::special;
use crate::Result;

/// The system line of every C3-style prompt (the release's).
pub const SYSTEM: &str =
    "You should follow the instructions carefully and explain your answers in detail.";

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
