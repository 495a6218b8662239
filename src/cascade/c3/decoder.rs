//! The C3 decoder: reads latents spliced into its prompt and generates text
//! with the release's rules (greedy, no-repeat 20-grams, its stop tokens).

use super::checkpoint::C3Checkpoint;
use super::projector::Projector;
use super::prompt::{build_prompt, latent_budget, latent_prompt, FRAME_VERSION, REPEAT};
use crate::cascade::interface::{Family, LatentReader};
use crate::cascade::prompt::Prompt;
use crate::cascade::text_frame::{text_prompt, C3_FRAME};
use crate::generate::{clean_text, GenOptions, Generation};
use crate::model::config::Qwen2Config;
use crate::model::weights::Weights;
use crate::model::{KvCache, Quant, Qwen2};
use crate::retrieve::Budget;
use crate::tokenize::{special, C3Tokenizer, TokenBytes};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

pub struct C3Decoder {
    llm: Qwen2,
    projector: Projector,
    tokenizer: C3Tokenizer,
    latent_len: usize,
    enc_hidden: usize,
}

impl C3Decoder {
    pub fn load(ckpt: &C3Checkpoint, dtype: DType, device: &Device) -> Result<Self> {
        Self::load_quantized(ckpt, dtype, device, None)
    }

    /// Loads the decoder with its matrices quantized to `quant` as they are
    /// read (see docs/performance.md); `None` is [`C3Decoder::load`].
    pub fn load_quantized(
        ckpt: &C3Checkpoint,
        dtype: DType,
        device: &Device,
        quant: Option<Quant>,
    ) -> Result<Self> {
        let w = ckpt.decoder_weights(dtype, device)?;
        Self::from_weights_quantized(
            &ckpt.config.llm,
            ckpt.latent_len(),
            ckpt.encoder_config.hidden_size,
            &w,
            ckpt.tokenizer()?,
            quant,
        )
    }

    /// Builds the decoder from already opened weights (Qwen2 + projector).
    pub fn from_weights(
        cfg: &Qwen2Config,
        latent_len: usize,
        enc_hidden: usize,
        w: &Weights,
        tokenizer: C3Tokenizer,
    ) -> Result<Self> {
        Self::from_weights_quantized(cfg, latent_len, enc_hidden, w, tokenizer, None)
    }

    /// [`C3Decoder::from_weights`] with the Qwen2 matrices quantized to `quant`.
    pub fn from_weights_quantized(
        cfg: &Qwen2Config,
        latent_len: usize,
        enc_hidden: usize,
        w: &Weights,
        tokenizer: C3Tokenizer,
        quant: Option<Quant>,
    ) -> Result<Self> {
        Ok(Self {
            llm: Qwen2::load_quantized(w, cfg, w.device(), w.dtype(), quant)?,
            projector: Projector::load(w, enc_hidden, cfg.hidden_size)?,
            tokenizer,
            latent_len,
            enc_hidden,
        })
    }

    /// The decoder's Qwen2 stack (benchmarks drive it step by step).
    pub fn llm(&self) -> &Qwen2 {
        &self.llm
    }

    pub fn tokenizer(&self) -> &C3Tokenizer {
        &self.tokenizer
    }

    pub fn latent_len(&self) -> usize {
        self.latent_len
    }

    pub fn max_positions(&self) -> usize {
        self.llm.config().max_position_embeddings
    }

    /// The reconstruction prompt for `blocks` chunks.
    pub fn repeat_prompt(&self, blocks: usize) -> Result<Prompt> {
        build_prompt(&self.tokenizer, blocks, self.latent_len, REPEAT)
    }

    /// Projects raw encoder states [latent_len, H_enc] to decoder latents.
    pub fn project(&self, raw: &Tensor) -> Result<Tensor> {
        let dims = raw.dims();
        if dims != [self.latent_len, self.enc_hidden] {
            return Err(Error::Input(format!(
                "latent block has shape {dims:?}, expected [{}, {}]",
                self.latent_len, self.enc_hidden
            )));
        }
        self.projector.project(raw)
    }

    /// Prompt embeddings [len, H_dec] with each block's rows replaced by its
    /// projected latents.
    pub fn prompt_embeddings(&self, prompt: &Prompt, latents: &[Tensor]) -> Result<Tensor> {
        prompt.embeddings(&self.llm, latents)
    }

    /// Generates from `prompt` with `latents` (projected, one per block).
    /// `on_token` sees each id as it is chosen; returning `false` stops.
    pub fn generate(
        &self,
        prompt: &Prompt,
        latents: &[Tensor],
        opts: &GenOptions,
        on_token: impl FnMut(u32) -> bool,
    ) -> Result<Generation> {
        self.generate_cached(prompt, latents, &mut KvCache::new(), opts, on_token)
    }

    /// [`C3Decoder::generate`] resumed from the first `cache.len()` prompt
    /// positions already in `cache` (see [`LatentReader::generate_cached`]).
    pub fn generate_cached(
        &self,
        prompt: &Prompt,
        latents: &[Tensor],
        cache: &mut KvCache,
        opts: &GenOptions,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<Generation> {
        let (ids, stop) = prompt.generate_on(
            &self.llm,
            latents,
            cache,
            opts,
            self.max_positions(),
            // The release stops on <|im_end|> only from the second id on.
            |tok, step| tok == special::ENDOFTEXT || (tok == special::IM_END && step >= 1),
            &mut on_token,
        )?;
        Ok(Generation {
            text: clean_output(&self.tokenizer, &ids)?,
            ids,
            prompt_tokens: prompt.ids.len(),
            stop,
        })
    }

    /// The paper's task on one chunk: latents → text.
    pub fn repeat(
        &self,
        raw: &Tensor,
        opts: &GenOptions,
        on_token: impl FnMut(u32) -> bool,
    ) -> Result<Generation> {
        let prompt = self.repeat_prompt(1)?;
        let lat = self.project(raw)?;
        self.generate(&prompt, &[lat], opts, on_token)
    }
}

/// The release's clean-up: decode, strip, drop a trailing `<|im_end|>`,
/// strip again. A final `<|endoftext|>` is the end signal, not content.
pub fn clean_output(tok: &C3Tokenizer, ids: &[u32]) -> Result<String> {
    let body = match ids.last() {
        Some(&special::ENDOFTEXT) => &ids[..ids.len() - 1],
        _ => ids,
    };
    Ok(clean_text(&tok.decode(body)?).to_string())
}

impl LatentReader for C3Decoder {
    fn family(&self) -> Family {
        Family::C3
    }
    fn max_positions(&self) -> usize {
        C3Decoder::max_positions(self)
    }
    fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer().encode_text(text)
    }
    fn token_bytes(&self) -> &dyn TokenBytes {
        self.tokenizer()
    }
    fn end_signal(&self) -> Option<u32> {
        Some(special::ENDOFTEXT)
    }
    fn adapt(&self, raw: &Tensor) -> Result<Tensor> {
        self.project(raw)
    }
    /// One `<img>` block per chunk, documents simply in sequence.
    fn latent_prompt(&self, docs: &[Vec<usize>], question: &str) -> Result<Prompt> {
        let blocks = docs.iter().map(Vec::len).sum();
        latent_prompt(self.tokenizer(), blocks, self.latent_len(), question)
    }
    fn latent_budget(&self, question: &str, limit: usize) -> Result<(Budget, usize)> {
        let (b, block) = latent_budget(self.tokenizer(), self.latent_len(), question, limit)?;
        Ok((b, block - self.latent_len()))
    }
    fn text_prompt(&self, blocks: &[Vec<u32>], question: &str) -> Result<Vec<u32>> {
        let enc = |t: &str| self.tokenizer().encode_text(t);
        text_prompt(&enc, C3_FRAME, blocks, question)
    }
    fn generate_cached(
        &self,
        prompt: &Prompt,
        latents: &[Tensor],
        cache: &mut KvCache,
        opts: &GenOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation> {
        C3Decoder::generate_cached(self, prompt, latents, cache, opts, on_token)
    }
    fn llm(&self) -> &Qwen2 {
        &self.llm
    }
    fn frame_version(&self) -> &'static str {
        FRAME_VERSION
    }
    fn reconstruct(
        &self,
        raw: &Tensor,
        opts: &GenOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation> {
        C3Decoder::repeat(self, raw, opts, on_token)
    }
}
