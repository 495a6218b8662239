//! The boundary between the rest of c3 and a cascade family: which family a
//! model is ([`Family`]), what ingest needs of an encoder ([`Compressor`])
//! and what the query path needs of a decoder ([`LatentReader`]). Each
//! family implements both traits in its own room; nothing here knows either.

use candle_core::Tensor;
use serde::Serialize;

use super::prompt::Prompt;
use crate::generate::{GenOptions, Generation};
use crate::model::{KvCache, Quant, Qwen2};
use crate::retrieve::Budget;
use crate::tokenize::TokenBytes;
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Context Cascade Compression: 32 query rows per chunk, reconstruction.
    C3,
    /// LCLM: mean-pooled windows (N tokens per latent), trained to answer.
    Lclm,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::C3 => "c3",
            Family::Lclm => "lclm",
        }
    }

    /// Refuses reconstruction (`repeat`, `expand`, `eval`) for a family
    /// that was trained only to answer, before any model is loaded.
    pub fn check_reconstruct(self) -> Result<()> {
        match self {
            Family::C3 => Ok(()),
            Family::Lclm => Err(crate::Error::NoReconstruction { family: "LCLM" }),
        }
    }

    /// The family of a store's model, from its fingerprint (LCLM ones
    /// carry a `lclm/` prefix; C3 ones are bare hex).
    pub fn of_fingerprint(fp: &str) -> Self {
        match fp.starts_with("lclm/") {
            true => Family::Lclm,
            false => Family::C3,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the memory store needs from a compression model: text chunks in,
/// one block of raw encoder states per chunk out. Implemented by both
/// families' encoders; tests may substitute a fake.
pub trait Compressor {
    /// Which family the model is (reports, chunk-size warnings).
    fn family(&self) -> Family;
    /// Stable hash identifying the model (encoder config, `Q`, projector or
    /// adapter): latents from different models must never be mixed in one
    /// store, and a store refuses a model whose fingerprint differs.
    fn fingerprint(&self) -> String;
    /// Most latent rows one chunk gets (C3: always 32 in the release; LCLM:
    /// one window's W / N).
    fn latent_len(&self) -> usize;
    /// Latent rows of a chunk of `tokens` encoder tokens (C3: always
    /// [`Compressor::latent_len`]; LCLM: ⌈tokens / N⌉ per window).
    fn latent_rows(&self, tokens: usize) -> usize {
        let _ = tokens;
        self.latent_len()
    }
    /// Encoder hidden size (H_enc): the width of each stored row.
    fn hidden_size(&self) -> usize;
    /// Compresses each text to its raw encoder states, a `[latent_rows,
    /// H_enc]` tensor in the checkpoint's storage dtype, on the CPU, in the
    /// order given (C3: the query rows; LCLM: the pooled states, before the
    /// adapter). An error leaves nothing half-done: the caller stores all or
    /// none of the returned blocks.
    fn compress(&self, texts: &[&str]) -> Result<Vec<Tensor>>;
    /// Where the model runs (reported by `c3 ingest --json`).
    fn device(&self) -> candle_core::Device {
        candle_core::Device::Cpu
    }
    /// The format the model's matrices are held in (`None`: dense), for
    /// `c3 ingest`'s default batch and its `--json` report.
    fn quant(&self) -> Option<Quant> {
        None
    }
}

/// A decoder that reads stored latents: what `ask`, `expand` and the server
/// need of either family.
pub trait LatentReader {
    fn family(&self) -> Family;
    /// Tokens per latent (LCLM's N); `None` for C3's fixed blocks.
    fn ratio(&self) -> Option<usize> {
        None
    }
    /// The decoder's position limit: prompt plus generated ids never exceed it.
    fn max_positions(&self) -> usize;
    /// Plain-text ids (questions, text mode): never a control id, whatever
    /// the text holds.
    fn encode_text(&self, text: &str) -> Result<Vec<u32>>;
    /// Bytes of each id, for streaming.
    fn token_bytes(&self) -> &dyn TokenBytes;
    /// An id that ends a generation without being text.
    fn end_signal(&self) -> Option<u32>;
    /// Decoder latents of one chunk's stored states (C3: the projector;
    /// LCLM: the adapter). Refuses a block of the wrong shape by name.
    fn adapt(&self, raw: &Tensor) -> Result<Tensor>;
    /// The latent prompt: `docs` holds, per document in order, the latent
    /// rows of its chosen chunks in order.
    fn latent_prompt(&self, docs: &[Vec<usize>], question: &str) -> Result<Prompt>;
    /// Budget of the latent prompt, and the positions one chunk may cost
    /// besides its latent rows (the prompt never exceeds the budget's sum).
    fn latent_budget(&self, question: &str, limit: usize) -> Result<(Budget, usize)>;
    /// Text-mode prompt: the chunks' ids where the latents would be.
    fn text_prompt(&self, blocks: &[Vec<u32>], question: &str) -> Result<Vec<u32>>;
    /// Budget of [`LatentReader::text_prompt`] (block costs are the texts'
    /// token counts).
    fn text_budget(&self, question: &str, limit: usize) -> Result<Budget> {
        // An empty block adds no separator before it; a second one does.
        let one = self.text_prompt(&[vec![]], question)?.len();
        let two = self.text_prompt(&[vec![], vec![]], question)?.len();
        Ok(Budget {
            base: one,
            separator: two - one,
            limit,
        })
    }
    /// Generates from `prompt` with `latents` (adapted, one per block).
    /// `on_token` sees each id as it is chosen; returning `false` stops the
    /// generation after that id (it stays in the result). Generation also
    /// stops at the family's stop ids and at [`LatentReader::max_positions`].
    fn generate(
        &self,
        prompt: &Prompt,
        latents: &[Tensor],
        opts: &GenOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation> {
        self.generate_cached(prompt, latents, &mut KvCache::new(), opts, on_token)
    }
    /// [`LatentReader::generate`] resumed from a stored prefix: `cache`
    /// already holds the keys and values of the prompt's first
    /// `cache.len()` positions (0, or a position inside or at the end of a
    /// block's slots), and `latents` holds only the blocks that end after
    /// them. On return `cache` holds every prompt position, so new blocks
    /// can be stored.
    fn generate_cached(
        &self,
        prompt: &Prompt,
        latents: &[Tensor],
        cache: &mut KvCache,
        opts: &GenOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation>;
    /// The decoder stack that reads the prompt: the prefix cache sizes its
    /// blocks by its geometry and warms itself with its forward.
    fn llm(&self) -> &Qwen2;
    /// Names the latent prompt's frame and how its slots are filled; part
    /// of every prefix-cache key, so a change to the frame that its ids do
    /// not show (a new version) never reads keys and values of the old one.
    fn frame_version(&self) -> &'static str;
    /// The paper's task on one stored chunk: its raw states back to text.
    /// A family trained only to answer refuses with
    /// [`Error::NoReconstruction`](crate::Error::NoReconstruction).
    fn reconstruct(
        &self,
        raw: &Tensor,
        opts: &GenOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation>;
}
