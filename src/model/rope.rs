//! Rotary position tables, always in f32: bf16 tables lose the angle above
//! a few hundred positions.

use candle_core::{DType, Device, Result, Tensor};

pub struct Rope {
    /// [table_len, head_dim / 2]
    cos: Tensor,
    sin: Tensor,
    inv_freq: Vec<f32>,
    /// The model's position limit (the tables may be shorter).
    max_positions: usize,
}

/// Positions with precomputed tables. A Qwen3-4B config allows 262,144
/// positions (134 MB of f32 tables at head_dim 128); prompts past this many
/// positions get their angles computed per call instead.
const TABLE_POSITIONS: usize = 32_768;

/// f32 position times f32 frequency, as the reference computes it.
fn angles(inv_freq: &[f32], from: usize, len: usize, device: &Device) -> Result<Tensor> {
    let mut a = Vec::with_capacity(len * inv_freq.len());
    for p in from..from + len {
        for f in inv_freq {
            a.push(p as f32 * f);
        }
    }
    Tensor::from_vec(a, (len, inv_freq.len()), device)
}

impl Rope {
    pub fn new(head_dim: usize, theta: f64, max_positions: usize, device: &Device) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32)
            .collect();
        let a = angles(&inv_freq, 0, max_positions.min(TABLE_POSITIONS), device)?;
        Ok(Self {
            cos: a.cos()?,
            sin: a.sin()?,
            inv_freq,
            max_positions,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// cos and sin [t, head_dim / 2] of positions `start..start+t`.
    fn tables(&self, start: usize, t: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        if start + t <= self.cos.dims()[0] {
            return Ok((self.cos.narrow(0, start, t)?, self.sin.narrow(0, start, t)?));
        }
        let a = angles(&self.inv_freq, start, t, device)?;
        Ok((a.cos()?, a.sin()?))
    }

    /// Applies rotate-half RoPE to `x` [B, heads, T, head_dim] at positions
    /// `start..start+T`, in f32, returning `x`'s dtype.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let t = x.dim(2)?;
        let (cos, sin) = self.tables(start, t, x.device())?;
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?.contiguous()?;
        candle_nn::rotary_emb::rope(&xf, &cos, &sin)?.to_dtype(dtype)
    }
}
