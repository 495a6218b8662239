//! The C3 encoder: text ++ `<img>` ++ 32 query rows ++ `</img>` through the
//! small Qwen2; the final-normed states at the query rows are the memory.

use super::Compressor;
use crate::model::checkpoint::{fingerprint, QUERY_TENSOR};
use crate::model::config::Qwen2Config;
use crate::model::projector::Projector;
use crate::model::weights::Weights;
use crate::model::{C3Checkpoint, Quant, Qwen2};
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
        let dec_w = ckpt.decoder_weights(dtype, device)?;
        let enc_w = ckpt.encoder_weights(dtype, device)?;
        Self::from_weights(
            &ckpt.encoder_config,
            ckpt.latent_len(),
            ckpt.config.llm.hidden_size,
            &enc_w,
            &dec_w,
            ckpt.tokenizer()?,
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

    /// [`C3Encoder::from_weights`] with the encoder's matrices quantized
    /// (an experiment measured in `benches/c3.rs`: faster, at a latent error
    /// the README reports; the CLI keeps the encoder dense).
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
        let x = Tensor::cat(
            &[
                &self.llm.embed(&head)?,
                &self.query,
                &self.llm.embed(&[special::IMG_END])?,
            ],
            0,
        )?;
        // Only the query rows are read: the last layer computes just them
        // (and the closing </img> row after them).
        let h = self
            .llm
            .forward_tail(&x.unsqueeze(0)?, None, self.latent_len + 1)?;
        Ok(h.squeeze(0)?.narrow(0, 0, self.latent_len)?)
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
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    fn latent_len(&self) -> usize {
        self.latent_len
    }

    fn hidden_size(&self) -> usize {
        self.llm.config().hidden_size
    }

    fn compress(&self, texts: &[&str]) -> Result<Vec<Tensor>> {
        texts
            .iter()
            .map(|t| {
                let raw = self.encode_text(t)?;
                Ok(raw.to_dtype(self.storage_dtype)?.to_device(&Device::Cpu)?)
            })
            .collect()
    }
}
