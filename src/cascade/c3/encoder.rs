//! The C3 encoder: text ++ `<img>` ++ 32 query rows ++ `</img>` through the
//! small Qwen2; the final-normed states at the query rows are the memory.

use super::checkpoint::{fingerprint, C3Checkpoint, QUERY_TENSOR};
use super::projector::Projector;
use crate::cascade::batch::length_groups;
use crate::cascade::interface::{Compressor, Family};
use crate::model::config::Qwen2Config;
use crate::model::weights::Weights;
use crate::model::{Quant, Qwen2};
use crate::tokenize::{special, C3Tokenizer};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};

/// Above this many text tokens C3 loses the end of a chunk (trained on shorter).
pub const TRAINED_TOKENS: usize = 1300;

pub struct C3Encoder {
    llm: Qwen2,
    /// The learned context query, [latent_len, H_enc].
    query: Tensor,
    projector: Projector,
    tokenizer: C3Tokenizer,
    fingerprint: String,
    latent_len: usize,
    /// The checkpoint's on-disk dtype, in which raw states are handed to the store.
    storage_dtype: DType,
}

impl C3Encoder {
    pub fn load(ckpt: &C3Checkpoint, dtype: DType, device: &Device) -> Result<Self> {
        Self::load_quantized(ckpt, dtype, device, None)
    }

    /// [`C3Encoder::load`] with the matrices held in `quant`'s format
    /// (`Quant::I16`: the CPU's integer product, `--encoder-precision`).
    pub fn load_quantized(
        ckpt: &C3Checkpoint,
        dtype: DType,
        device: &Device,
        quant: Option<Quant>,
    ) -> Result<Self> {
        let dec_w = ckpt.decoder_weights(dtype, device)?;
        let enc_w = ckpt.encoder_weights(dtype, device)?;
        Self::from_weights_quantized(
            &ckpt.encoder_config,
            ckpt.latent_len(),
            ckpt.config.llm.hidden_size,
            &enc_w,
            &dec_w,
            ckpt.tokenizer()?,
            quant,
        )
    }

    /// Builds the encoder from already opened weights: `enc_w` holds the
    /// Qwen2 encoder, `dec_w` the C3 parts (`Q`, projector).
    pub fn from_weights(
        enc: &Qwen2Config,
        latent_len: usize,
        dec_hidden: usize,
        enc_w: &Weights,
        dec_w: &Weights,
        tokenizer: C3Tokenizer,
    ) -> Result<Self> {
        Self::from_weights_quantized(enc, latent_len, dec_hidden, enc_w, dec_w, tokenizer, None)
    }

    /// [`C3Encoder::from_weights`] with the encoder's matrices quantized:
    /// `Quant::I16` is the CPU's fast path (`--encoder-precision i16`); the
    /// GGML formats are an experiment measured in `benches/c3.rs`.
    pub fn from_weights_quantized(
        enc: &Qwen2Config,
        latent_len: usize,
        dec_hidden: usize,
        enc_w: &Weights,
        dec_w: &Weights,
        tokenizer: C3Tokenizer,
        quant: Option<Quant>,
    ) -> Result<Self> {
        let query = dec_w.get(QUERY_TENSOR, &[latent_len, enc.hidden_size])?;
        Ok(Self {
            llm: Qwen2::load_quantized_body(enc_w, enc, enc_w.device(), enc_w.dtype(), quant)?,
            projector: Projector::load(dec_w, enc.hidden_size, dec_hidden)?,
            fingerprint: fingerprint(enc, latent_len, dec_w)?,
            storage_dtype: dec_w.stored_dtype(QUERY_TENSOR)?,
            tokenizer,
            query,
            latent_len,
        })
    }

    pub fn tokenizer(&self) -> &C3Tokenizer {
        &self.tokenizer
    }

    /// Most text tokens one chunk may have: the framed sequence must fit the
    /// encoder's positions.
    pub fn max_text_tokens(&self) -> usize {
        self.llm
            .config()
            .max_position_embeddings
            .saturating_sub(self.latent_len + 2)
    }

    /// Raw encoder states [latent_len, H_enc] (model dtype) for text ids.
    pub fn encode_ids(&self, ids: &[u32]) -> Result<Tensor> {
        let x = self.frame(ids)?;
        // Only the query rows are read: the last layer computes just them
        // (and the closing </img> row after them).
        let h = self
            .llm
            .forward_tail(&x.unsqueeze(0)?, None, self.latent_len + 1)?;
        Ok(h.squeeze(0)?.narrow(0, 0, self.latent_len)?)
    }

    /// Raw encoder states of several texts from one forward pass, in order.
    ///
    /// Each framed sequence is padded at its end (with `</img>` rows) to the
    /// longest. Attention is causal, so no real row ever sees a pad row: no
    /// mask is needed, and each sequence's query rows are read at its own
    /// offset. Shared per-forward work makes it pay on the CPU too (docs/performance.md),
    /// and much more on a GPU.
    pub fn encode_batch_ids(&self, batch: &[&[u32]]) -> Result<Vec<Tensor>> {
        match batch {
            [] => return Ok(Vec::new()),
            [one] => return Ok(vec![self.encode_ids(one)?]),
            _ => {}
        }
        let frames = batch
            .iter()
            .map(|ids| self.frame(ids))
            .collect::<Result<Vec<_>>>()?;
        let frame_len = |ids: &[u32]| ids.len() + self.latent_len + 2;
        let longest = batch.iter().map(|ids| frame_len(ids)).max().unwrap_or(0);
        let end = self.llm.embed(&[special::IMG_END])?;
        let hidden = end.dim(1)?;
        let padded = frames
            .into_iter()
            .zip(batch)
            .map(|(f, ids)| {
                let pad = longest - frame_len(ids);
                if pad == 0 {
                    return Ok(f);
                }
                Ok(Tensor::cat(&[&f, &end.broadcast_as((pad, hidden))?], 0)?)
            })
            .collect::<Result<Vec<_>>>()?;
        // Sequence i's query rows start right after its text and <img>.
        let starts: Vec<usize> = batch.iter().map(|ids| ids.len() + 1).collect();
        let first = starts.iter().copied().min().unwrap_or(0);
        let h = self
            .llm
            .forward_tail(&Tensor::stack(&padded, 0)?, None, longest - first)?;
        starts
            .iter()
            .enumerate()
            .map(|(i, &start)| Ok(h.get(i)?.narrow(0, start - first, self.latent_len)?))
            .collect()
    }

    /// The encoder's input rows for text ids: embeddings of the text and
    /// `<img>`, the query rows, the embedding of `</img>`.
    fn frame(&self, ids: &[u32]) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(Error::Input("cannot encode an empty text".into()));
        }
        if ids.len() > self.max_text_tokens() {
            return Err(Error::Input(format!(
                "text has {} tokens, more than the encoder's limit of {} for one chunk; \
                 split it first (`c3 ingest` chunks long input)",
                ids.len(),
                self.max_text_tokens()
            )));
        }
        let mut head = ids.to_vec();
        head.push(special::IMG_START);
        // Slots between <img> and </img> are the query rows, not embeddings.
        Ok(Tensor::cat(
            &[
                &self.llm.embed(&head)?,
                &self.query,
                &self.llm.embed(&[special::IMG_END])?,
            ],
            0,
        )?)
    }

    /// Raw encoder states of a text.
    pub fn encode_text(&self, text: &str) -> Result<Tensor> {
        self.encode_ids(&self.tokenizer.encode_text(text)?)
    }

    /// The dtype raw states are stored in (the checkpoint's on-disk dtype).
    pub fn storage_dtype(&self) -> DType {
        self.storage_dtype
    }

    /// Projected latents [latent_len, H_dec] from raw states.
    pub fn project(&self, raw: &Tensor) -> Result<Tensor> {
        self.projector.project(raw)
    }
}

impl Compressor for C3Encoder {
    fn family(&self) -> Family {
        Family::C3
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn latent_len(&self) -> usize {
        self.latent_len
    }

    fn hidden_size(&self) -> usize {
        self.llm.config().hidden_size
    }

    fn device(&self) -> Device {
        self.llm.device().clone()
    }

    fn quant(&self) -> Option<Quant> {
        self.llm.quant()
    }

    fn compress(&self, texts: &[&str]) -> Result<Vec<Tensor>> {
        let ids = texts
            .iter()
            .map(|t| self.tokenizer.encode_text(t))
            .collect::<Result<Vec<_>>>()?;
        let mut out: Vec<Option<Tensor>> = vec![None; texts.len()];
        for group in length_groups(&ids.iter().map(Vec::len).collect::<Vec<_>>()) {
            let refs: Vec<&[u32]> = group.iter().map(|&i| ids[i].as_slice()).collect();
            for (&i, raw) in group.iter().zip(self.encode_batch_ids(&refs)?) {
                out[i] = Some(raw.to_dtype(self.storage_dtype)?.to_device(&Device::Cpu)?);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}
