//! Computes: element-wise updates written into an existing f32 CPU tensor
//!   (`dst += src`, `dst *= s`, `dst[idx[i], :] += rows[i, :]`, AdamW's
//!   moments and step), each one pass over contiguous slices split across
//!   rayon's threads.
//! Accuracy: the same f32 operations, in the same order per element, as the
//!   allocating candle expressions they replace (`train/optim.rs` states
//!   them); `train/optim.rs`'s tests check the AdamW step against them.
//! Needs: contiguous f32 tensors on the CPU; [`in_place`] says whether a
//!   tensor qualifies, and callers keep candle's ops for every other one.
//! Why: a training step otherwise allocates several tensors the size of
//!   every trained parameter (a 151,860-row embedding table is 1.2 GB at
//!   hidden 2048): page faults and peak memory, not arithmetic, dominated.

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, InplaceOp3, Layout, Result, Tensor};
use rayon::prelude::*;

/// Elements per rayon task.
const GRAIN: usize = 1 << 16;

/// Whether `t` can be updated by these ops.
pub fn in_place(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.is_contiguous()
}

fn slice_mut<'a>(op: &str, s: &'a mut CpuStorage, l: &Layout) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(all) = s else {
        candle_core::bail!("{op}: f32 destination expected");
    };
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: contiguous destination expected");
    };
    Ok(&mut all[a..b])
}

fn slice<'a>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    super::cpu_f32::contiguous_f32(op, s, l)
}

/// `dst[i] = f(dst[i], i)` over chunks in parallel.
fn each(dst: &mut [f32], f: impl Fn(&mut f32, usize) + Sync) {
    dst.par_chunks_mut(GRAIN)
        .enumerate()
        .for_each(|(c, chunk)| {
            let base = c * GRAIN;
            for (j, x) in chunk.iter_mut().enumerate() {
                f(x, base + j);
            }
        });
}

fn same_len(op: &str, a: usize, b: usize) -> Result<()> {
    if a != b {
        candle_core::bail!("{op}: {a} elements against {b}");
    }
    Ok(())
}

/// `dst += src`.
struct AddAssign;

impl InplaceOp2 for AddAssign {
    fn name(&self) -> &'static str {
        "add-assign"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let src = slice(self.name(), s2, l2)?;
        let dst = slice_mut(self.name(), s1, l1)?;
        same_len(self.name(), dst.len(), src.len())?;
        each(dst, |x, i| *x += src[i]);
        Ok(())
    }
}

/// `dst *= s`.
struct Scale(f32);

impl InplaceOp1 for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }
    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let k = self.0;
        each(slice_mut(self.name(), s, l)?, |x, _| *x *= k);
        Ok(())
    }
}

/// `dst[idx[i], :] += rows[i, :]` for a [V, H] destination.
struct IndexAddRows {
    cols: usize,
}

impl InplaceOp3 for IndexAddRows {
    fn name(&self) -> &'static str {
        "index-add-rows"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let CpuStorage::U32(all) = s2 else {
            candle_core::bail!("index-add-rows: u32 indices expected");
        };
        let Some((a, b)) = l2.contiguous_offsets() else {
            candle_core::bail!("index-add-rows: contiguous indices expected");
        };
        let idx = &all[a..b];
        let rows = slice(self.name(), s3, l3)?;
        let dst = slice_mut(self.name(), s1, l1)?;
        let h = self.cols;
        same_len(self.name(), rows.len(), idx.len() * h)?;
        let v = dst.len() / h.max(1);
        if let Some(&bad) = idx.iter().find(|&&r| r as usize >= v) {
            candle_core::bail!("index-add-rows: row {bad} outside {v} rows");
        }
        // Sequential over the rows: repeated indices add in order, as
        // candle's index_add does.
        for (i, &r) in idx.iter().enumerate() {
            let d = &mut dst[r as usize * h..(r as usize + 1) * h];
            for (x, y) in d.iter_mut().zip(&rows[i * h..(i + 1) * h]) {
                *x += y;
            }
        }
        Ok(())
    }
}

/// AdamW's first moment: `m += (g·clip - m) · w` (torch's `lerp_`).
struct Lerp {
    w: f32,
    clip: f32,
}

impl InplaceOp2 for Lerp {
    fn name(&self) -> &'static str {
        "adam-first-moment"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let g = slice(self.name(), s2, l2)?;
        let m = slice_mut(self.name(), s1, l1)?;
        same_len(self.name(), m.len(), g.len())?;
        let (w, clip) = (self.w, self.clip);
        each(m, |x, i| *x += (g[i] * clip - *x) * w);
        Ok(())
    }
}

/// AdamW's second moment: `v = v · b2 + (g·clip)² · (1 - b2)`.
struct SquareAverage {
    beta2: f32,
    rest: f32,
    clip: f32,
}

impl InplaceOp2 for SquareAverage {
    fn name(&self) -> &'static str {
        "adam-second-moment"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let g = slice(self.name(), s2, l2)?;
        let v = slice_mut(self.name(), s1, l1)?;
        same_len(self.name(), v.len(), g.len())?;
        let (b2, rest, clip) = (self.beta2, self.rest, self.clip);
        each(v, |x, i| {
            let g = g[i] * clip;
            *x = *x * b2 + g * g * rest
        });
        Ok(())
    }
}

/// AdamW's step: `p = p · decay - m / (√v / bc2_sqrt + eps) · step`.
struct AdamStep {
    decay: f32,
    bc2_sqrt: f32,
    eps: f32,
    step: f32,
}

impl InplaceOp3 for AdamStep {
    fn name(&self) -> &'static str {
        "adam-step"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let m = slice(self.name(), s2, l2)?;
        let v = slice(self.name(), s3, l3)?;
        let p = slice_mut(self.name(), s1, l1)?;
        same_len(self.name(), p.len(), m.len())?;
        same_len(self.name(), p.len(), v.len())?;
        let AdamStep {
            decay,
            bc2_sqrt,
            eps,
            step,
        } = *self;
        each(p, |x, i| {
            let denom = v[i].sqrt() / bc2_sqrt + eps;
            *x = *x * decay - m[i] / denom * step;
        });
        Ok(())
    }
}

/// `dst += src` in place (both contiguous f32 CPU tensors of one size).
pub fn add_assign(dst: &Tensor, src: &Tensor) -> Result<()> {
    let src = src.contiguous()?;
    dst.inplace_op2(&src, &AddAssign)
}

/// `dst *= s` in place.
pub fn scale(dst: &Tensor, s: f32) -> Result<()> {
    dst.inplace_op1(&Scale(s))
}

/// `dst[idx[i], :] += rows[i, :]` in place (`dst` [V, H], `rows` [n, H]).
pub fn index_add_rows(dst: &Tensor, idx: &Tensor, rows: &Tensor) -> Result<()> {
    let cols = dst.dim(1)?;
    dst.inplace_op3(
        &idx.contiguous()?,
        &rows.contiguous()?,
        &IndexAddRows { cols },
    )
}

/// One AdamW update of `p` with gradient `g·clip` (`g` is not written),
/// moments `m`, `v`, in place: the first moment lerps toward the gradient
/// by `1 - beta1`, the second averages its square with weight `1 - beta2`,
/// then `p = p·decay - m / (√v / bc2_sqrt + eps) · step`.
#[allow(clippy::too_many_arguments)]
pub fn adamw(
    p: &Tensor,
    g: &Tensor,
    clip: f32,
    m: &Tensor,
    v: &Tensor,
    beta1: f64,
    beta2: f64,
    decay: f64,
    bc2_sqrt: f64,
    eps: f64,
    step: f64,
) -> Result<()> {
    let g = g.contiguous()?;
    let w = (1.0 - beta1) as f32;
    m.inplace_op2(&g, &Lerp { w, clip })?;
    let (beta2, rest) = (beta2 as f32, (1.0 - beta2) as f32);
    v.inplace_op2(&g, &SquareAverage { beta2, rest, clip })?;
    p.inplace_op3(
        m,
        v,
        &AdamStep {
            decay: decay as f32,
            bc2_sqrt: bc2_sqrt as f32,
            eps: eps as f32,
            step: step as f32,
        },
    )
}
