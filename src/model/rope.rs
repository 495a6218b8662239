//! Rotary position tables, always in f32: bf16 tables lose the angle above
//! a few hundred positions.

use candle_core::{DType, Device, Result, Tensor};

pub struct Rope {
    /// [max_positions, head_dim / 2]
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    pub fn new(head_dim: usize, theta: f64, max_positions: usize, device: &Device) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32)
            .collect();
        // f32 position times f32 frequency, as the reference computes it.
        let mut angles = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for f in &inv_freq {
                angles.push(p as f32 * f);
            }
        }
        let angles = Tensor::from_vec(angles, (max_positions, half), device)?;
        Ok(Self {
            cos: angles.cos()?,
            sin: angles.sin()?,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Applies rotate-half RoPE to `x` [B, heads, T, head_dim] at positions
    /// `start..start+T`, in f32, returning `x`'s dtype.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let t = x.dim(2)?;
        let cos = self.cos.narrow(0, start, t)?;
        let sin = self.sin.narrow(0, start, t)?;
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?.contiguous()?;
        candle_nn::rotary_emb::rope(&xf, &cos, &sin)?.to_dtype(dtype)
    }
}
