//! LCLM's encoder: memory ids in windows of W tokens, each window a separate
//! causal forward through the Qwen3 encoder (positions from 0), its final
//! states mean-pooled over consecutive groups of N rows.

use candle_core::{DType, Device, Tensor};

use super::adapter::Adapter;
use super::checkpoint::LclmCheckpoint;
use super::config::LclmConfig;
use crate::cascade::batch::length_groups;
use crate::cascade::interface::{Compressor, Family};
use crate::model::{Quant, Qwen2};
use crate::tokenize::HfTokenizer;
use crate::{Error, Result};

pub struct LclmEncoder {
    llm: Qwen2,
    adapter: Adapter,
    tokenizer: HfTokenizer,
    config: LclmConfig,
    fingerprint: String,
    /// The encoder's on-disk dtype, in which pooled states are stored.
    storage_dtype: DType,
}

/// What one text becomes.
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Final encoder states [T, H_enc], windows concatenated.
    pub hidden: Tensor,
    /// Mean-pooled states [ceil(T/N), H_enc].
    pub pooled: Tensor,
}

impl LclmEncoder {
    /// Loads encoder and adapter (matrices in `quant`'s format if given:
    /// `Quant::I16` is the CPU's integer product).
    pub fn load(
        ckpt: &LclmCheckpoint,
        dtype: DType,
        device: &Device,
        quant: Option<Quant>,
    ) -> Result<Self> {
        let enc_w = ckpt.encoder_weights(dtype, device)?;
        let ad_w = ckpt.adapter_weights(dtype, device)?;
        let storage_dtype = enc_w
            .stored_dtype("embed_tokens.weight")
            .or_else(|_| enc_w.stored_dtype("model.embed_tokens.weight"))?;
        Ok(Self {
            llm: Qwen2::load_quantized_body(&enc_w, &ckpt.encoder_config, device, dtype, quant)?,
            adapter: Adapter::load(
                &ad_w,
                ckpt.encoder_config.hidden_size,
                ckpt.decoder_config.hidden_size,
            )?,
            tokenizer: ckpt.encoder_tokenizer()?,
            config: ckpt.config,
            fingerprint: ckpt.fingerprint(&enc_w, &ad_w)?,
            storage_dtype,
        })
    }

    pub fn tokenizer(&self) -> &HfTokenizer {
        &self.tokenizer
    }

    pub fn config(&self) -> LclmConfig {
        self.config
    }

    pub fn storage_dtype(&self) -> DType {
        self.storage_dtype
    }

    /// Plain BPE ids of memory text (no added token is ever matched).
    pub fn encode_text_ids(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode_text(text)
    }

    /// States and pooled latents of memory ids.
    pub fn encode_ids(&self, ids: &[u32]) -> Result<Encoded> {
        if ids.is_empty() {
            return Err(Error::Input(
                "cannot encode an empty memory text (it has no latents)".into(),
            ));
        }
        let windows = self.config.windows(ids.len());
        let refs: Vec<&[u32]> = windows.iter().map(|&(s, n)| &ids[s..s + n]).collect();
        let hidden = self.window_states(&refs)?;
        let pooled = hidden
            .iter()
            .map(|h| self.pool(h))
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoded {
            ids: ids.to_vec(),
            hidden: Tensor::cat(&hidden, 0)?,
            pooled: Tensor::cat(&pooled, 0)?,
        })
    }

    /// Final states [len, H] of each window, several windows per forward
    /// where they have similar lengths. A shorter window is padded at its
    /// end: attention is causal, so its real rows never see the pad rows.
    fn window_states(&self, windows: &[&[u32]]) -> Result<Vec<Tensor>> {
        let mut out: Vec<Option<Tensor>> = vec![None; windows.len()];
        let lens: Vec<usize> = windows.iter().map(|w| w.len()).collect();
        for group in length_groups(&lens) {
            let longest = group.iter().map(|&i| lens[i]).max().unwrap_or(0);
            let rows = group
                .iter()
                .map(|&i| {
                    let mut ids = windows[i].to_vec();
                    // Any in-vocabulary id will do: nothing reads these rows.
                    ids.resize(longest, windows[i][0]);
                    self.llm.embed(&ids)
                })
                .collect::<Result<Vec<_>>>()?;
            let h = self.llm.forward(&Tensor::stack(&rows, 0)?, None)?;
            for (b, &i) in group.iter().enumerate() {
                out[i] = Some(h.get(b)?.narrow(0, 0, lens[i])?);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Mean over consecutive groups of N rows of one window, each group
    /// divided by its own size (the last may be shorter).
    fn pool(&self, h: &Tensor) -> Result<Tensor> {
        let n = self.config.compression_ratio;
        let (len, hidden) = h.dims2()?;
        let h = h.to_dtype(DType::F32)?;
        let full = len / n;
        let mut parts = Vec::with_capacity(2);
        if full > 0 {
            parts.push(
                h.narrow(0, 0, full * n)?
                    .reshape((full, n, hidden))?
                    .mean(1)?,
            );
        }
        if len % n != 0 {
            parts.push(h.narrow(0, full * n, len % n)?.mean_keepdim(0)?);
        }
        Ok(Tensor::cat(&parts, 0)?.to_dtype(self.llm.dtype())?)
    }

    /// Decoder rows [n, H_dec] of pooled states [n, H_enc].
    pub fn adapt(&self, pooled: &Tensor) -> Result<Tensor> {
        self.adapter.forward(pooled)
    }
}

impl Compressor for LclmEncoder {
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// Most latents one chunk (one window) gives: W / N.
    fn latent_len(&self) -> usize {
        self.config.rows_per_window()
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

    fn family(&self) -> Family {
        Family::Lclm
    }

    fn latent_rows(&self, tokens: usize) -> usize {
        self.config.latent_rows(tokens)
    }

    fn compress(&self, texts: &[&str]) -> Result<Vec<Tensor>> {
        // All windows of all texts go through one length grouping, so a
        // batch of chunks shares forwards as C3's chunks do.
        let ids = texts
            .iter()
            .map(|t| self.encode_text_ids(t))
            .collect::<Result<Vec<_>>>()?;
        if ids.iter().any(Vec::is_empty) {
            return Err(Error::Input(
                "cannot encode an empty memory text (it has no latents)".into(),
            ));
        }
        let mut windows: Vec<&[u32]> = Vec::new();
        let mut owner = Vec::new();
        for (t, ids) in ids.iter().enumerate() {
            for (s, n) in self.config.windows(ids.len()) {
                windows.push(&ids[s..s + n]);
                owner.push(t);
            }
        }
        let states = self.window_states(&windows)?;
        let mut per_text: Vec<Vec<Tensor>> = vec![Vec::new(); texts.len()];
        for (h, &t) in states.iter().zip(&owner) {
            per_text[t].push(self.pool(h)?);
        }
        per_text
            .into_iter()
            .map(|p| {
                Ok(Tensor::cat(&p, 0)?
                    .to_dtype(self.storage_dtype)?
                    .to_device(&Device::Cpu)?)
            })
            .collect()
    }
}
