//! LCLM's decoder: Qwen3 reading adapted latents in `<|memory|>` slots of a
//! ChatML user turn, generating with LCLM's rules (greedy, repetition
//! penalty over the generated ids, stop on `<|im_end|>`, emitted).

use candle_core::{DType, Device, Tensor};

use super::adapter::Adapter;
use super::checkpoint::{LclmCheckpoint, MemoryIds};
use super::config::LclmConfig;
use crate::cascade::interface::{Family, LatentReader};
use crate::cascade::prompt::Prompt;
use crate::generate::{clean_text, GenOptions, Generation};
use crate::model::{KvCache, Quant, Qwen2};
use crate::retrieve::Budget;
use crate::tokenize::HfTokenizer;
use crate::tokenize::TokenBytes;
use crate::{Error, Result};

/// The `<|memory|>` user-turn frame of [`LclmDecoder::prompt`] and how its
/// slots are filled (adapted latents in place of the `<|memory|>`
/// embeddings); bump it when either changes, so a prefix cache never serves
/// keys and values of another frame.
pub const FRAME_VERSION: &str = "lclm-chatml-memory/1";

/// LCLM's CLI decodes greedily with this penalty (`generate_text`).
pub const DEFAULT_REPETITION_PENALTY: f32 = 1.1;

pub struct LclmDecoder {
    llm: Qwen2,
    adapter: Adapter,
    tokenizer: HfTokenizer,
    ids: MemoryIds,
    config: LclmConfig,
}

impl LclmDecoder {
    /// Loads decoder and adapter; `quant` (q8_0 / q4k) applies to the
    /// decoder's matrices, quantized one matrix at a time as they are read.
    pub fn load(
        ckpt: &LclmCheckpoint,
        dtype: DType,
        device: &Device,
        quant: Option<Quant>,
    ) -> Result<Self> {
        let w = ckpt.decoder_weights(dtype, device)?;
        let ad = ckpt.adapter_weights(dtype, device)?;
        let tokenizer = ckpt.decoder_tokenizer()?;
        Ok(Self {
            ids: ckpt.memory_ids(&tokenizer)?,
            llm: Qwen2::load_quantized(&w, &ckpt.decoder_config, device, dtype, quant)?,
            adapter: Adapter::load(
                &ad,
                ckpt.encoder_config.hidden_size,
                ckpt.decoder_config.hidden_size,
            )?,
            tokenizer,
            config: ckpt.config,
        })
    }

    pub fn llm(&self) -> &Qwen2 {
        &self.llm
    }

    pub fn tokenizer(&self) -> &HfTokenizer {
        &self.tokenizer
    }

    pub fn memory_ids(&self) -> MemoryIds {
        self.ids
    }

    pub fn config(&self) -> LclmConfig {
        self.config
    }

    pub fn max_positions(&self) -> usize {
        self.llm.config().max_position_embeddings
    }

    /// Decoder rows [n, H_dec] of stored pooled states [n, H_enc].
    pub fn adapt(&self, pooled: &Tensor) -> Result<Tensor> {
        self.adapter.forward(pooled)
    }

    /// `<|im_start|>user\n` + one `<|memory_start|>…<|memory_end|>` span per
    /// entry of `spans` (each a list of blocks' latent counts; spans joined
    /// by a newline) + ` {question}<|im_end|>\n<|im_start|>assistant\n`.
    /// The frame is built from ids and only the text pieces are BPE-encoded
    /// (plain text: nothing in the question becomes a control id).
    pub fn prompt(&self, spans: &[Vec<usize>], question: &str) -> Result<Prompt> {
        memory_prompt(&self.tokenizer, self.ids, spans, question)
    }

    /// Prompt positions without any span, and what each extra span costs
    /// besides its latents (markers and the newline before it).
    pub fn frame_cost(&self, question: &str) -> Result<(usize, usize)> {
        let base = self.prompt(&[], question)?.ids.len();
        let one = self.prompt(&[vec![]], question)?.ids.len();
        let two = self.prompt(&[vec![], vec![]], question)?.ids.len();
        Ok((base, (two - one).max(one - base)))
    }

    /// Generates from `prompt` with `latents` (adapted, one per block).
    /// `on_token` sees each id as it is chosen; returning `false` stops.
    /// LCLM's generation has no n-gram bans; `opts.no_repeat_ngram` is not
    /// used.
    pub fn generate(
        &self,
        prompt: &Prompt,
        latents: &[Tensor],
        opts: &GenOptions,
        on_token: impl FnMut(u32) -> bool,
    ) -> Result<Generation> {
        self.generate_cached(prompt, latents, &mut KvCache::new(), opts, on_token)
    }

    /// [`LclmDecoder::generate`] resumed from the first `cache.len()`
    /// prompt positions already in `cache` (see
    /// [`LatentReader::generate_cached`]).
    pub fn generate_cached(
        &self,
        prompt: &Prompt,
        latents: &[Tensor],
        cache: &mut KvCache,
        opts: &GenOptions,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<Generation> {
        let opts = GenOptions {
            no_repeat_ngram: 0,
            repetition_penalty: Some(
                opts.repetition_penalty
                    .unwrap_or(DEFAULT_REPETITION_PENALTY),
            ),
            ..opts.clone()
        };
        let stop_id = self.ids.im_end;
        let (ids, stop) = prompt.generate_on(
            &self.llm,
            latents,
            cache,
            &opts,
            self.max_positions(),
            |tok, _| tok == stop_id,
            &mut on_token,
        )?;
        Ok(Generation {
            text: clean_text(&self.tokenizer.decode(&ids)?).to_string(),
            ids,
            prompt_tokens: prompt.ids.len(),
            stop,
        })
    }

    /// One-shot: memory text's pooled states (one span) and a question.
    pub fn answer(
        &self,
        pooled: &Tensor,
        question: &str,
        opts: &GenOptions,
        on_token: impl FnMut(u32) -> bool,
    ) -> Result<Generation> {
        let n = pooled.dim(0)?;
        let prompt = self.prompt(&[vec![n]], question)?;
        let lat = self.adapt(pooled)?;
        self.generate(&prompt, &[lat], opts, on_token)
    }
}

/// [`LclmDecoder::prompt`] from the decoder's tokenizer `t` and memory ids
/// `m` (benchmarks build it without a checkpoint).
pub fn memory_prompt(
    t: &HfTokenizer,
    m: MemoryIds,
    spans: &[Vec<usize>],
    question: &str,
) -> Result<Prompt> {
    let mut ids = vec![m.im_start];
    ids.extend(t.encode_text("user\n")?);
    let newline = t.encode_text("\n")?;
    let (mut starts, mut lens) = (Vec::new(), Vec::new());
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            ids.extend(&newline);
        }
        ids.push(m.memory_start);
        for &n in span {
            starts.push(ids.len());
            lens.push(n);
            ids.extend(std::iter::repeat_n(m.memory, n));
        }
        ids.push(m.memory_end);
    }
    ids.extend(t.encode_text(&format!(" {question}"))?);
    ids.push(m.im_end);
    ids.extend(&newline);
    ids.push(m.im_start);
    ids.extend(t.encode_text("assistant\n")?);
    Ok(Prompt {
        ids,
        latent_starts: starts,
        latent_lens: lens,
    })
}

impl LatentReader for LclmDecoder {
    fn family(&self) -> Family {
        Family::Lclm
    }
    fn ratio(&self) -> Option<usize> {
        Some(self.config().compression_ratio)
    }
    fn max_positions(&self) -> usize {
        LclmDecoder::max_positions(self)
    }
    fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer().encode_text(text)
    }
    fn token_bytes(&self) -> &dyn TokenBytes {
        self.tokenizer()
    }
    fn end_signal(&self) -> Option<u32> {
        None
    }
    fn adapt(&self, raw: &Tensor) -> Result<Tensor> {
        LclmDecoder::adapt(self, raw)
    }
    /// One memory span per document, its chunks' latents in order.
    fn latent_prompt(&self, docs: &[Vec<usize>], question: &str) -> Result<Prompt> {
        self.prompt(docs, question)
    }
    /// A chunk is charged its latents plus a whole span's markers, as if it
    /// were alone in its document; chunks of one document share a span, so
    /// the real prompt is shorter by those markers.
    fn latent_budget(&self, question: &str, limit: usize) -> Result<(Budget, usize)> {
        let (base, span) = self.frame_cost(question)?;
        Ok((
            Budget {
                base,
                separator: 0,
                limit,
            },
            span,
        ))
    }
    /// The same user turn with the chunks' text (newline-separated) where
    /// the span would be, then ` {question}`.
    fn text_prompt(&self, blocks: &[Vec<u32>], question: &str) -> Result<Vec<u32>> {
        let t = self.tokenizer();
        let m = self.memory_ids();
        let newline = t.encode_text("\n")?;
        let mut ids = vec![m.im_start];
        ids.extend(t.encode_text("user\n")?);
        for (i, b) in blocks.iter().enumerate() {
            if i > 0 {
                ids.extend(&newline);
            }
            ids.extend(b);
        }
        ids.extend(t.encode_text(&format!(" {question}"))?);
        ids.push(m.im_end);
        ids.extend(&newline);
        ids.push(m.im_start);
        ids.extend(t.encode_text("assistant\n")?);
        Ok(ids)
    }
    fn generate_cached(
        &self,
        prompt: &Prompt,
        latents: &[Tensor],
        cache: &mut KvCache,
        opts: &GenOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation> {
        LclmDecoder::generate_cached(self, prompt, latents, cache, opts, on_token)
    }
    fn llm(&self) -> &Qwen2 {
        &self.llm
    }
    fn frame_version(&self) -> &'static str {
        FRAME_VERSION
    }
    fn reconstruct(
        &self,
        _raw: &Tensor,
        _opts: &GenOptions,
        _on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation> {
        // Always the refusal; the line after it only satisfies the type.
        Family::Lclm.check_reconstruct()?;
        Err(Error::Input("LCLM has no reconstruction prompt".into()))
    }
}
