//! The decoder prompt frame (MPT style, no newline after `<|im_end|>`), with
//! one `<img>` + latent slots + `</img>` block per chunk.

use crate::model::Qwen2;
use crate::tokenize::{special, C3Tokenizer};
use crate::{Error, Result};
use candle_core::Tensor;

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
    /// Slots of each block (C3: always its latent length; LCLM: the
    /// chunk's pooled rows).
    pub latent_lens: Vec<usize>,
}

impl Prompt {
    /// Latent positions in the prompt.
    pub fn latent_positions(&self) -> usize {
        self.latent_lens.iter().sum()
    }

    /// Embeddings [len, H] of the prompt through `llm`, each block's slots
    /// replaced by its latents (one tensor [slots, H] per block, in order).
    pub fn embeddings(&self, llm: &Qwen2, latents: &[Tensor]) -> Result<Tensor> {
        if latents.len() != self.latent_starts.len() {
            return Err(Error::Input(format!(
                "{} latent blocks for a prompt with {} slots",
                latents.len(),
                self.latent_starts.len()
            )));
        }
        let mut parts = Vec::with_capacity(2 * latents.len() + 1);
        let mut at = 0;
        for ((&start, &len), lat) in self
            .latent_starts
            .iter()
            .zip(&self.latent_lens)
            .zip(latents)
        {
            if lat.dims().first() != Some(&len) {
                return Err(Error::Input(format!(
                    "latent block of shape {:?} for {len} slots",
                    lat.dims()
                )));
            }
            if start > at {
                parts.push(llm.embed(&self.ids[at..start])?);
            }
            parts.push(lat.to_dtype(llm.dtype())?);
            at = start + len;
        }
        if at < self.ids.len() {
            parts.push(llm.embed(&self.ids[at..])?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
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
        latent_lens: vec![latent_len; latent_starts.len()],
        latent_starts,
    })
}
