//! A decoder prompt with latent slots: the ids, and where each block's
//! latent rows replace the embeddings of its placeholder ids.

use crate::model::Qwen2;
use crate::{Error, Result};
use candle_core::Tensor;

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
