//! Causal softmax over attention scores in one parallel pass (CPU, f32).
//!
//! The unfused path adds a `[t, s]` mask of −inf over the whole score tensor
//! and then runs a softmax: two more passes over `[heads, t, s]` floats (51
//! MB per encoder layer at 1034 positions), each single-threaded in candle,
//! plus building the mask. Here each row only reads the keys it may see,
//! writes zeros past them, and rows are split over the rayon pool. Other
//! devices and dtypes keep the unfused path.

use super::cpu_f32::contiguous_f32;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Scores `[..., t, s]` of `t` queries at the last `t` of `s` positions:
/// query `i` sees keys `0..=s - t + i`.
struct CausalSoftmax {
    t: usize,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "c3-causal-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let scores = contiguous_f32("causal softmax", storage, layout)?;
        let dims = layout.dims();
        let s = *dims.last().unwrap_or(&0);
        let t = self.t;
        if s == 0 || t == 0 || t > s || dims.len() < 2 || !dims[dims.len() - 2].is_multiple_of(t) {
            candle_core::bail!("causal softmax: scores {dims:?} do not end in [{t}, s]");
        }
        let mut out = scores.to_vec();
        out.par_chunks_mut(s).enumerate().for_each(|(r, row)| {
            let visible = s - t + r % t + 1;
            let (seen, masked) = row.split_at_mut(visible);
            let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for v in seen.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            seen.iter_mut().for_each(|v| *v *= inv);
            masked.fill(0.0);
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Softmax over the last dimension of `scores` `[..., t, s]` (`t` queries
/// at the last `t` of `s` positions), with keys after each query's position
/// masked out. f32 in, f32 out.
pub fn causal_softmax(scores: &Tensor, t: usize) -> candle_core::Result<Tensor> {
    if scores.device().is_cpu() && scores.dtype() == DType::F32 {
        return scores.contiguous()?.apply_op1_no_bwd(&CausalSoftmax { t });
    }
    let dims = scores.dims().to_vec();
    let s = dims[dims.len() - 1];
    let masked = if t > 1 {
        let lead: usize = dims[..dims.len() - 2].iter().product();
        let rows = dims[dims.len() - 2];
        scores
            .reshape((lead, rows / t, t, s))?
            .broadcast_add(&mask(t, s, scores.device())?)?
            .reshape(dims)?
    } else {
        scores.clone()
    };
    candle_nn::ops::softmax_last_dim(&masked)
}

/// [t, s] additive mask: query i (at absolute position s - t + i) sees keys
/// 0..=s - t + i.
fn mask(t: usize, s: usize, device: &Device) -> candle_core::Result<Tensor> {
    let offset = s - t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..s).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (t, s), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_equals_mask_then_softmax() {
        let dev = Device::Cpu;
        for &(t, s) in &[(1usize, 1usize), (1, 9), (4, 4), (3, 7)] {
            let scores = Tensor::randn(0f32, 2.0, (2, 2 * t, s), &dev).unwrap();
            let fused = causal_softmax(&scores, t).unwrap();
            let want = candle_nn::ops::softmax_last_dim(
                &scores
                    .reshape((2, 2, t, s))
                    .unwrap()
                    .broadcast_add(&mask(t, s, &dev).unwrap())
                    .unwrap()
                    .reshape((2, 2 * t, s))
                    .unwrap(),
            )
            .unwrap();
            let diff = crate::model::max_abs_diff(&fused, &want);
            assert!(diff < 1e-6, "t={t} s={s}: {diff}");
        }
    }

    #[test]
    fn rows_not_ending_in_t_queries_are_refused() {
        let scores = Tensor::zeros((5, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(causal_softmax(&scores, 2).is_err());
    }
}
