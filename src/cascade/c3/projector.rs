//! `mm_projector`: one Linear (no activation) from encoder space to decoder space.

use crate::model::linear::Linear;
use crate::model::weights::Weights;
use crate::Result;
use candle_core::Tensor;

pub struct Projector {
    lin: Linear,
}

impl Projector {
    pub fn load(w: &Weights, enc_hidden: usize, dec_hidden: usize) -> Result<Self> {
        let weight = w.get("model.mm_projector.weight", &[dec_hidden, enc_hidden])?;
        let bias = w.get("model.mm_projector.bias", &[dec_hidden])?;
        Ok(Self {
            lin: Linear::new(weight, Some(bias)),
        })
    }

    /// raw encoder states [N, H_enc] (any dtype) → latents [N, H_dec] in the
    /// projector's dtype.
    pub fn project(&self, raw: &Tensor) -> Result<Tensor> {
        let w = self.lin.weight().expect("the projector is never quantized");
        let raw = raw.to_device(w.device())?.to_dtype(w.dtype())?;
        Ok(self.lin.forward(&raw)?)
    }
}
