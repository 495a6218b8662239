//! Attention of one new position against the KV cache (CPU, f32).
//!
//! Computes: for one query row per head (grouped-query: `rep` query heads
//!   per KV head), `softmax(q · kᵀ / √d) · v` over the cache, one parallel
//!   pass per query head.
//! Accuracy: within 1e-5 of candle's product-softmax-product on cache views,
//!   checked by `equals_softmax_product_on_cache_views`.
//! Needs: AVX2 + FMA (the same loop compiled 8 wide, chosen when
//!   `gemv::Kernel::Avx2`); AVX-512F (compiled 16 wide, chosen with the
//!   one-row products' AVX-512 kernel, `gemv::Kernel::Avx512`); without them
//!   the baseline (SSE2) build of it runs.
//! Why: through candle it took two products, a softmax and their temporaries
//!   per layer, ~40 ms per generated token after a 1,149-position prompt on
//!   the 3B decoder; the work itself is one read of the cache.

use super::cpu_f32::contiguous_f32;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

struct DecodeAttention;

/// The f32 values of `storage` and, for a [b, heads, s, d] layout whose
/// rows are contiguous, the offsets of row 0 and the strides of batch,
/// head and row.
fn rows<'a>(
    what: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<(&'a [f32], usize, [usize; 3])> {
    let CpuStorage::F32(all) = storage else {
        candle_core::bail!("decode attention: {what} must be f32");
    };
    let st = layout.stride();
    if st.len() != 4 || st[3] != 1 {
        candle_core::bail!("decode attention: {what} rows must be contiguous");
    }
    Ok((all, layout.start_offset(), [st[0], st[1], st[2]]))
}

#[inline(always)]
fn dot<const L: usize>(a: &[f32], b: &[f32]) -> f32 {
    // L independent sums, so the loop vectorizes L wide.
    let mut acc = [0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..L {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// One KV head's query rows (`rep` of them, `d` wide), and its keys and
/// values from row 0 with their row strides.
struct Group<'a> {
    q: &'a [f32],
    k: &'a [f32],
    k_row: usize,
    v: &'a [f32],
    v_row: usize,
    s: usize,
    d: usize,
}

/// softmax(q·kᵀ)·v for the group's query rows into `o` (zeroed, rep × d),
/// the dot products in `L` lanes.
#[inline(always)]
fn attend<const L: usize>(g: &Group, o: &mut [f32]) {
    let (s, d) = (g.s, g.d);
    let rep = g.q.len() / d;
    // Scores [rep, s], each key row read once for all query rows.
    let mut p = vec![0f32; rep * s];
    for j in 0..s {
        let key = &g.k[j * g.k_row..][..d];
        for (r, q) in g.q.chunks_exact(d).enumerate() {
            p[r * s + j] = dot::<L>(q, key);
        }
    }
    let mut inv = vec![0f32; rep];
    for (row, inv) in p.chunks_exact_mut(s).zip(inv.iter_mut()) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        *inv = 1.0 / super::vexp::exp_sub_sum(row, max);
    }
    for j in 0..s {
        let value = &g.v[j * g.v_row..][..d];
        for (r, o) in o.chunks_exact_mut(d).enumerate() {
            let w = p[r * s + j];
            for (o, &x) in o.iter_mut().zip(value) {
                *o += w * x;
            }
        }
    }
    for (o, &inv) in o.chunks_exact_mut(d).zip(&inv) {
        o.iter_mut().for_each(|x| *x *= inv);
    }
}

/// [`attend`] compiled for AVX2 + FMA: the dot products and row updates
/// vectorize 8 wide (the crate's baseline is SSE2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(g: &Group, o: &mut [f32]) {
    attend::<8>(g, o)
}

/// [`attend`] compiled for AVX-512F: the dot products 16 wide in zmm
/// registers, the row updates too.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f")]
unsafe fn attend_avx512(g: &Group, o: &mut [f32]) {
    attend::<16>(g, o)
}

/// Which build of [`attend`] runs.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Build {
    Baseline,
    Avx2,
    Avx512,
}

fn build() -> Build {
    use super::gemv::{kernel, Kernel};
    match kernel() {
        Kernel::Avx512 => Build::Avx512,
        Kernel::Avx2 => Build::Avx2,
        Kernel::Scalar => Build::Baseline,
    }
}

/// [`attend`] in the given build.
fn run(build: Build, g: &Group, o: &mut [f32]) {
    // SAFETY: `build()` names a SIMD build only where the one-row kernel of
    // the same features runs here (`gemv::Kernel::runs_here`).
    #[cfg(target_arch = "x86_64")]
    match build {
        Build::Avx512 => return unsafe { attend_avx512(g, o) },
        Build::Avx2 => return unsafe { attend_avx2(g, o) },
        Build::Baseline => {}
    }
    let _ = build;
    attend::<8>(g, o)
}

impl CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "c3-decode-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let q = contiguous_f32("decode attention", qs, ql)?;
        let (b, kv_heads, rep, t, d) = ql.shape().dims5()?;
        let (kb, kh, s, kd) = kl.shape().dims4()?;
        if t != 1 || (kb, kh, kd) != (b, kv_heads, d) || vl.shape() != kl.shape() || s == 0 {
            candle_core::bail!(
                "decode attention: q {:?} does not fit k {:?} / v {:?}",
                ql.shape(),
                kl.shape(),
                vl.shape()
            );
        }
        let (k, k0, kst) = rows("k", ks, kl)?;
        let (v, v0, vst) = rows("v", vs, vl)?;
        let last = |o: usize, st: [usize; 3]| {
            o + (b - 1) * st[0] + (kv_heads - 1) * st[1] + (s - 1) * st[2] + d
        };
        if last(k0, kst) > k.len() || last(v0, vst) > v.len() {
            candle_core::bail!("decode attention: k/v layout runs past its storage");
        }
        let mut out = vec![0f32; b * kv_heads * rep * d];
        let build = build();
        // One task per KV head: its `rep` query heads go through the keys
        // and values together, so the cache is read once per KV head rather
        // than once per query head.
        out.par_chunks_mut(rep * d)
            .enumerate()
            .for_each(|(grp, o)| {
                let (bi, g) = (grp / kv_heads, grp % kv_heads);
                let group = Group {
                    q: &q[grp * rep * d..(grp + 1) * rep * d],
                    k: &k[k0 + bi * kst[0] + g * kst[1]..],
                    k_row: kst[2],
                    v: &v[v0 + bi * vst[0] + g * vst[1]..],
                    v_row: vst[2],
                    s,
                    d,
                };
                run(build, &group, o);
            });
        Ok((CpuStorage::F32(out), Shape::from((b, kv_heads, rep, 1, d))))
    }
}

/// `q` [b, kv_heads, rep, 1, d] (scaled) against all `s` positions of `k`,
/// `v` [b, kv_heads, s, d] → [b, kv_heads, rep, 1, d]; `None` where the
/// tensors are not f32 on the CPU (the caller then uses candle's ops).
pub fn decode_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Option<candle_core::Result<Tensor>> {
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if !(cpu_f32(q) && cpu_f32(k) && cpu_f32(v)) {
        return None;
    }
    Some(
        q.contiguous()
            .and_then(|q| q.apply_op3_no_bwd(k, v, &DecodeAttention)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against softmax(q·kᵀ)·v by candle's ops, on cache-like views: the
    /// first `s` of `cap` positions of each head.
    #[test]
    fn equals_softmax_product_on_cache_views() {
        let dev = Device::Cpu;
        for &(b, kv, rep, s, cap, d) in &[
            (1, 2, 3, 1, 4, 16),
            (2, 2, 4, 37, 64, 20),
            (1, 1, 1, 5, 5, 8),
        ] {
            let q = Tensor::randn(0f32, 1.0, (b, kv, rep, 1, d), &dev).unwrap();
            let kbuf = Tensor::randn(0f32, 1.0, (b, kv, cap, d), &dev).unwrap();
            let vbuf = Tensor::randn(0f32, 1.0, (b, kv, cap, d), &dev).unwrap();
            let k = kbuf.narrow(2, 0, s).unwrap();
            let v = vbuf.narrow(2, 0, s).unwrap();
            let got = decode_attention(&q, &k, &v).unwrap().unwrap();
            let q2 = q.reshape((b, kv, rep, d)).unwrap();
            let scores = q2.matmul(&k.t().unwrap()).unwrap();
            let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
            let want = probs
                .matmul(&v.contiguous().unwrap())
                .unwrap()
                .reshape((b, kv, rep, 1, d))
                .unwrap();
            let diff = crate::kernels::max_abs_diff(&got, &want);
            assert!(diff < 1e-5, "({b}, {kv}, {rep}, {s}, {cap}, {d}): {diff}");
        }
    }

    /// Each build this CPU runs against the baseline one, on a long cache
    /// and a head width that is not a multiple of 16.
    #[test]
    fn builds_agree() {
        use crate::kernels::gemv::Kernel;
        let mut seed = 1u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for &(rep, s, d) in &[(4usize, 1149usize, 128usize), (3, 37, 72)] {
            let q: Vec<f32> = (0..rep * d).map(|_| next()).collect();
            let k: Vec<f32> = (0..s * d).map(|_| 4.0 * next()).collect();
            let v: Vec<f32> = (0..s * d).map(|_| next()).collect();
            let g = Group {
                q: &q,
                k: &k,
                k_row: d,
                v: &v,
                v_row: d,
                s,
                d,
            };
            let mut want = vec![0f32; rep * d];
            run(Build::Baseline, &g, &mut want);
            for (b, kern) in [(Build::Avx2, Kernel::Avx2), (Build::Avx512, Kernel::Avx512)] {
                if !kern.runs_here() {
                    eprintln!(
                        "decode attention builds_agree: SKIPPED {b:?}: this CPU lacks {}",
                        kern.features()
                    );
                    continue;
                }
                let mut got = vec![0f32; rep * d];
                run(b, &g, &mut got);
                let diff = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(diff < 1e-5, "{b:?} ({rep}, {s}, {d}): {diff}");
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 2, 2, 1, 8), DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 2, 3, 4), DType::F32, &dev).unwrap();
        assert!(decode_attention(&q, &k, &k).unwrap().is_err());
        let k16 = k.to_dtype(DType::F16).unwrap();
        assert!(decode_attention(&q, &k16, &k16).is_none());
    }
}
