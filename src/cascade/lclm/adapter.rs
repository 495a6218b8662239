//! LCLM's MLP adapter: each pooled encoder state becomes one decoder input
//! row, `fc2(gelu(fc1(rmsnorm(x))))`, row by row with no mixing.

use candle_core::Tensor;

use crate::model::linear::Linear;
use crate::model::qwen2::rms_norm;
use crate::model::weights::Weights;
use crate::{Error, Result};

/// Fixed by LCLM's code, not read from any config.
pub const ADAPTER_EPS: f64 = 1e-6;
/// The adapter's tensors: loaded strictly, as LCLM does.
pub const TENSORS: [&str; 5] = [
    "norm.weight",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
];

pub struct Adapter {
    norm: Tensor,
    fc1: Linear,
    fc2: Linear,
    enc_hidden: usize,
}

impl Adapter {
    /// Loads and shape-checks the five tensors of `w`; any other tensor in
    /// the file is refused by name.
    pub fn load(w: &Weights, enc_hidden: usize, dec_hidden: usize) -> Result<Self> {
        if let Some(extra) = w.names().find(|n| !TENSORS.contains(n)) {
            return Err(Error::Checkpoint {
                path: w.dir().to_path_buf(),
                msg: format!(
                    "unexpected tensor `{extra}` (an LCLM \"mlp\" adapter has exactly {})",
                    TENSORS.join(", ")
                ),
            });
        }
        let (h, d) = (enc_hidden, dec_hidden);
        Ok(Self {
            norm: w.get("norm.weight", &[h])?,
            fc1: Linear::new(
                w.get("fc1.weight", &[d, h])?,
                Some(w.get("fc1.bias", &[d])?),
            ),
            fc2: Linear::new(
                w.get("fc2.weight", &[d, d])?,
                Some(w.get("fc2.bias", &[d])?),
            ),
            enc_hidden,
        })
    }

    /// Decoder rows [n, H_dec] for pooled states [n, H_enc].
    pub fn forward(&self, pooled: &Tensor) -> Result<Tensor> {
        let dims = pooled.dims();
        if dims.len() != 2 || dims[1] != self.enc_hidden {
            return Err(Error::Input(format!(
                "pooled states have shape {dims:?}, expected [n, {}]",
                self.enc_hidden
            )));
        }
        let x = pooled.to_dtype(self.norm.dtype())?;
        let y = self.fc1.forward(&rms_norm(&x, &self.norm, ADAPTER_EPS)?)?;
        // Exact erf GELU (torch's nn.GELU() default), not the tanh form.
        Ok(self.fc2.forward(&y.gelu_erf()?)?)
    }
}
