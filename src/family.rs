//! The two cascade families side by side: which one a checkpoint directory
//! is, and the one interface the query path reads latents through
//! ([`LatentReader`]). Each family's specifics live in its own modules
//! (`encode` + `decode` for C3, `lclm` for LCLM); this file only says how
//! each plugs in.

use std::path::Path;

use candle_core::Tensor;
use serde::Serialize;

use crate::decode::{C3Decoder, GenOptions, Generation, Prompt};
use crate::lclm::LclmDecoder;
use crate::query::prompt::{self as qprompt, C3_FRAME};
use crate::retrieve::Budget;
use crate::tokenize::{special, TokenBytes};
use crate::{Error, Result};

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

/// Which family the checkpoint at `dir` is: `model_config.json` +
/// `encoder/` + `decoder/` + `adapter/` is LCLM, `config.json` + `llm1/` is C3.
pub fn detect(dir: &Path) -> Result<Family> {
    if crate::lclm::is_lclm_dir(dir) {
        return Ok(Family::Lclm);
    }
    if dir.join("config.json").is_file() && dir.join(crate::model::checkpoint::ENCODER_DIR).is_dir()
    {
        return Ok(Family::C3);
    }
    let what = if dir.is_dir() {
        "is neither a C3 checkpoint (config.json + llm1/) nor an LCLM one \
         (model_config.json + encoder/ + decoder/ + adapter/)"
    } else {
        "is not a directory (expected a C3 or LCLM checkpoint)"
    };
    Err(Error::Checkpoint {
        path: dir.to_path_buf(),
        msg: what.into(),
    })
}

/// A decoder that reads stored latents: what `ask` needs of either family.
pub trait LatentReader {
    fn family(&self) -> Family;
    /// Tokens per latent (LCLM's N); `None` for C3's fixed blocks.
    fn ratio(&self) -> Option<usize> {
        None
    }
    fn max_positions(&self) -> usize;
    /// Plain-text ids (questions, text mode): never a control id.
    fn encode_text(&self, text: &str) -> Result<Vec<u32>>;
    /// Bytes of each id, for streaming.
    fn token_bytes(&self) -> &dyn TokenBytes;
    /// An id that ends a generation without being text.
    fn end_signal(&self) -> Option<u32>;
    /// Decoder latents of one chunk's stored states.
    fn adapt(&self, raw: &Tensor) -> Result<Tensor>;
    /// The latent prompt: `docs` holds, per document in order, the latent
    /// rows of its chosen chunks in order.
    fn latent_prompt(&self, docs: &[Vec<usize>], question: &str) -> Result<Prompt>;
    /// Budget of the latent prompt, and the positions one chunk may cost
    /// besides its latent rows (the prompt never exceeds the budget's sum).
    fn latent_budget(&self, question: &str, limit: usize) -> Result<(Budget, usize)>;
    /// Text-mode prompt: the chunks' ids where the latents would be.
    fn text_prompt(&self, blocks: &[Vec<u32>], question: &str) -> Result<Vec<u32>>;
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
    fn generate(
        &self,
        prompt: &Prompt,
        latents: &[Tensor],
        opts: &GenOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation>;
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
        qprompt::latent_prompt(self.tokenizer(), blocks, self.latent_len(), question)
    }
    fn latent_budget(&self, question: &str, limit: usize) -> Result<(Budget, usize)> {
        let (b, block) =
            qprompt::latent_budget(self.tokenizer(), self.latent_len(), question, limit)?;
        Ok((b, block - self.latent_len()))
    }
    fn text_prompt(&self, blocks: &[Vec<u32>], question: &str) -> Result<Vec<u32>> {
        let enc = |t: &str| self.tokenizer().encode_text(t);
        qprompt::text_prompt(&enc, C3_FRAME, blocks, question)
    }
    fn generate(
        &self,
        prompt: &Prompt,
        latents: &[Tensor],
        opts: &GenOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation> {
        C3Decoder::generate(self, prompt, latents, opts, on_token)
    }
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
    fn generate(
        &self,
        prompt: &Prompt,
        latents: &[Tensor],
        opts: &GenOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation> {
        LclmDecoder::generate(self, prompt, latents, opts, on_token)
    }
}

/// A loaded decoder of either family.
pub enum AnyDecoder {
    C3(Box<C3Decoder>),
    Lclm(Box<LclmDecoder>),
}

impl AnyDecoder {
    pub fn reader(&self) -> &dyn LatentReader {
        match self {
            AnyDecoder::C3(d) => &**d,
            AnyDecoder::Lclm(d) => &**d,
        }
    }

    /// The C3 decoder, for reconstruction (LCLM has none).
    pub fn c3(&self) -> Option<&C3Decoder> {
        match self {
            AnyDecoder::C3(d) => Some(&**d),
            AnyDecoder::Lclm(_) => None,
        }
    }
}

/// Loads the decoder of the checkpoint at `dir` (either family, matrices
/// quantized to `quant`) and the fingerprint of the latents it reads.
pub fn load_decoder(
    dir: &Path,
    dtype: candle_core::DType,
    device: &candle_core::Device,
    quant: Option<crate::model::Quant>,
) -> Result<(AnyDecoder, String)> {
    match detect(dir)? {
        Family::C3 => {
            let ckpt = crate::model::C3Checkpoint::open(dir)?;
            let w = ckpt.decoder_weights(dtype, device)?;
            let fp = ckpt.fingerprint(&w)?;
            let dec = C3Decoder::from_weights_quantized(
                &ckpt.config.llm,
                ckpt.latent_len(),
                ckpt.encoder_config.hidden_size,
                &w,
                ckpt.tokenizer()?,
                quant,
            )?;
            Ok((AnyDecoder::C3(Box::new(dec)), fp))
        }
        Family::Lclm => {
            let ckpt = crate::lclm::LclmCheckpoint::open(dir)?;
            // Mapping the encoder reads only the norms the fingerprint hashes.
            let fp = ckpt.fingerprint(
                &ckpt.encoder_weights(dtype, device)?,
                &ckpt.adapter_weights(dtype, device)?,
            )?;
            let dec = LclmDecoder::load(&ckpt, dtype, device, quant)?;
            Ok((AnyDecoder::Lclm(Box::new(dec)), fp))
        }
    }
}

/// A loaded encoder of either family (ingest).
pub enum AnyEncoder {
    C3(Box<crate::encode::C3Encoder>),
    Lclm(Box<crate::lclm::LclmEncoder>),
}

impl AnyEncoder {
    pub fn compressor(&self) -> &dyn crate::encode::Compressor {
        match self {
            AnyEncoder::C3(e) => &**e,
            AnyEncoder::Lclm(e) => &**e,
        }
    }

    /// The family's chunk size when none is given: C3's 1000 tokens, or
    /// LCLM's encoder window (a chunk is then one window).
    pub fn default_chunk_tokens(&self) -> usize {
        match self {
            AnyEncoder::C3(_) => crate::chunk::DEFAULT_CHUNK_TOKENS,
            AnyEncoder::Lclm(e) => e.config().encoder_window_size,
        }
    }
}
