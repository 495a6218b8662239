//! Causal softmax over attention scores in one parallel pass (CPU, f32).
//!
//! Computes: for scores `[heads, t, s]` of `t` queries that end at key `s`,
//!   each row's softmax over the keys it may see, zeros past them.
//! Accuracy: within 1e-6 of candle's mask-then-softmax, checked by
//!   `fused_equals_mask_then_softmax`.
//! Needs: nothing beyond the baseline (rows over rayon; `exp` 16 lanes at a
//!   time with AVX-512F: `vexp`); other devices and dtypes keep the unfused
//!   path.
//! Why: the unfused path adds a mask and runs the softmax in two more passes.
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
            let sum = super::vexp::exp_sub_sum(seen, max);
            let inv = 1.0 / sum;
            seen.iter_mut().for_each(|v| *v *= inv);
            masked.fill(0.0);
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Softmax over the last dimension of `scores` `[..., t, s]` (`t` queries
/// at the last `t` of `s` positions), with keys after each query's position
/// masked out. f32 in, f32 out. `full_mask`, when given (see
/// [`expanded_mask`]), is an additive mask of the same shape as `scores`.
pub fn causal_softmax(
    scores: &Tensor,
    t: usize,
    full_mask: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    if scores.device().is_cpu() && scores.dtype() == DType::F32 {
        return scores.contiguous()?.apply_op1_no_bwd(&CausalSoftmax { t });
    }
    if let Some(m) = full_mask.filter(|m| m.dims() == scores.dims()) {
        return candle_nn::ops::softmax_last_dim(&(scores.contiguous()? + m)?);
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

/// The [t, s] mask repeated `lead` times, contiguous: [lead, t, s]. Off the
/// CPU one such tensor per forward serves every layer, and adding it to the
/// scores is a plain elementwise add (a broadcast add takes candle's
/// strided kernels, the largest single cost of a GPU encoder forward).
pub fn expanded_mask(
    lead: usize,
    t: usize,
    s: usize,
    device: &Device,
) -> candle_core::Result<Tensor> {
    mask(t, s, device)?
        .unsqueeze(0)?
        .broadcast_as((lead, t, s))?
        .contiguous()
}

/// [t, s] additive mask: query i (at absolute position s - t + i) sees keys
/// 0..=s - t + i. Built on `device` from two index ranges, so a GPU gets
/// s + t indices rather than a t·s upload per layer.
fn mask(t: usize, s: usize, device: &Device) -> candle_core::Result<Tensor> {
    let keys = Tensor::arange(0u32, s as u32, device)?.unsqueeze(0)?; // [1, s]
    let last_seen = Tensor::arange((s - t) as u32, s as u32, device)?.unsqueeze(1)?; // [t, 1]
    let hidden = keys.broadcast_gt(&last_seen)?; // [t, s], 1 where masked
    let neg = Tensor::full(f32::NEG_INFINITY, (t, s), device)?;
    let zero = Tensor::zeros((t, s), DType::F32, device)?;
    hidden.where_cond(&neg, &zero)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_equals_mask_then_softmax() {
        let dev = Device::Cpu;
        for &(t, s) in &[(1usize, 1usize), (1, 9), (4, 4), (3, 7)] {
            let scores = Tensor::randn(0f32, 2.0, (2, 2 * t, s), &dev).unwrap();
            let fused = causal_softmax(&scores, t, None).unwrap();
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
            let diff = crate::kernels::max_abs_diff(&fused, &want);
            assert!(diff < 1e-6, "t={t} s={s}: {diff}");
        }
    }

    /// The precomputed full-shape mask (the GPU path) gives what the fused
    /// CPU softmax gives.
    #[test]
    fn expanded_mask_then_softmax_equals_fused() {
        let dev = Device::Cpu;
        let (t, s) = (3, 7);
        let scores = Tensor::randn(0f32, 2.0, (2, 2 * t, s), &dev).unwrap();
        let full = expanded_mask(4, t, s, &dev).unwrap();
        assert_eq!(full.dims(), [4, t, s]);
        assert!(full.is_contiguous());
        let masked = (&scores + full.reshape((2, 2 * t, s)).unwrap()).unwrap();
        let got = candle_nn::ops::softmax_last_dim(&masked).unwrap();
        let want = causal_softmax(&scores, t, None).unwrap();
        assert!(crate::kernels::max_abs_diff(&got, &want) < 1e-6);
    }

    #[test]
    fn rows_not_ending_in_t_queries_are_refused() {
        let scores = Tensor::zeros((5, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(causal_softmax(&scores, 2, None).is_err());
    }
}
