//! `exp` sixteen lanes at a time, for the softmaxes and the SwiGLU.
//!
//! Computes: `e^x` for f32 lanes: `x = n·ln2 + r` with `n` the nearest
//!   integer to `x·log2(e)` and |r| ≤ ln2/2 (ln2 in two parts, so `r` is
//!   exact to f32), `e^r` by Cephes' degree-7 polynomial for `expf`, and
//!   `2^n` applied by `vscalefps` (which gives +inf past the f32 range and
//!   0 below it, without separate tests).
//! Accuracy: within 2 ulp of the exactly rounded `e^x` over [-104, 88.7]
//!   (`within_two_ulp_of_f64_exp`); 0 below it, +inf above, NaN stays NaN,
//!   −inf gives 0.
//! Needs: AVX-512F (checked at run time); elsewhere the same loops call the
//!   scalar `f32::exp`.
//! Why: `f32::exp` is a libm call per value: at 1034 positions the encoder's
//!   SwiGLU takes ~260 M of them per chunk and its softmaxes ~190 M, and a
//!   decode step after 1,149 positions ~0.7 M in its attention; the profile
//!   of the encoder put `expf` at 2.4% of the time (docs/performance.md).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Whether the AVX-512 forms run here.
pub fn available() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// `row[i] = e^(row[i] − max)`, returning their sum (the softmax's
/// numerator and denominator).
pub fn exp_sub_sum(row: &mut [f32], max: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX-512F checked.
        return unsafe { exp_sub_sum_avx512(row, max) };
    }
    let mut sum = 0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    sum
}

/// `out[i] = silu(gate[i]) · up[i]` = `g / (1 + e^−g) · u`.
pub fn silu_mul(out: &mut [f32], gate: &[f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX-512F checked.
        return unsafe { silu_mul_avx512(out, gate, up) };
    }
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

/// `e^x` in 16 lanes (see the module doc).
///
/// # Safety
/// The CPU has AVX-512F ([`available`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn exp16(x: __m512) -> __m512 {
    // Clamped so that n·ln2 stays exact and vscalefps does the range ends
    // (min/max return their second operand when it is NaN: NaN stays NaN).
    let x = _mm512_max_ps(
        _mm512_set1_ps(-104.0),
        _mm512_min_ps(_mm512_set1_ps(89.0), x),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    // 1 + r + r²·p
    let p = _mm512_fmadd_ps(
        _mm512_mul_ps(r, r),
        p,
        _mm512_add_ps(r, _mm512_set1_ps(1.0)),
    );
    _mm512_scalef_ps(p, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_sub_sum_avx512(row: &mut [f32], max: f32) -> f32 {
    let m = _mm512_set1_ps(max);
    let mut acc = _mm512_setzero_ps();
    let mut chunks = row.chunks_exact_mut(16);
    for c in &mut chunks {
        let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), m));
        _mm512_storeu_ps(c.as_mut_ptr(), e);
        acc = _mm512_add_ps(acc, e);
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        // The last few lanes through the same arithmetic, masked.
        let k: __mmask16 = (1u16 << rest.len()) - 1;
        let e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, rest.as_ptr()), m));
        _mm512_mask_storeu_ps(rest.as_mut_ptr(), k, e);
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(k, e));
    }
    _mm512_reduce_add_ps(acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn silu_mul_avx512(out: &mut [f32], gate: &[f32], up: &[f32]) {
    let n = out.len().min(gate.len()).min(up.len());
    let one = _mm512_set1_ps(1.0);
    let mut i = 0;
    while i < n {
        let k: __mmask16 = if n - i >= 16 {
            0xffff
        } else {
            (1u16 << (n - i)) - 1
        };
        let g = _mm512_maskz_loadu_ps(k, gate.as_ptr().add(i));
        let u = _mm512_maskz_loadu_ps(k, up.as_ptr().add(i));
        let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
        let s = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), k, _mm512_mul_ps(s, u));
        i += 16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// Every 97th f32 in [-104, 88.7] (both signs of zero included) against
    /// f64's `exp` rounded to f32, and the ends.
    #[test]
    fn within_two_ulp_of_f64_exp() {
        if !available() {
            eprintln!("vexp within_two_ulp_of_f64_exp: SKIPPED: this CPU lacks avx512f");
            return;
        }
        let mut xs: Vec<f32> = Vec::new();
        for bits in (0u32..0x42b2_0000).step_by(97) {
            xs.push(f32::from_bits(bits));
        }
        for bits in (0x8000_0000u32..0xc2d0_0000).step_by(97) {
            xs.push(f32::from_bits(bits));
        }
        let mut worst = 0;
        for c in xs.chunks(16) {
            let mut lanes = [0f32; 16];
            lanes[..c.len()].copy_from_slice(c);
            let mut got = [0f32; 16];
            // SAFETY: AVX-512F checked.
            unsafe { _mm512_storeu_ps(got.as_mut_ptr(), exp16(_mm512_loadu_ps(lanes.as_ptr()))) };
            for (&x, &g) in c.iter().zip(&got) {
                let want = (x as f64).exp() as f32;
                if want.is_normal() {
                    let u = ulps(g, want);
                    worst = worst.max(u);
                    assert!(u <= 2, "exp({x}) = {g}, want {want} ({u} ulp)");
                } else if want.is_infinite() {
                    assert_eq!(g, want, "exp({x})");
                } else {
                    // Denormal results: within the smallest normal.
                    assert!(
                        (g - want).abs() <= f32::MIN_POSITIVE,
                        "exp({x}) = {g}, want {want}"
                    );
                }
            }
        }
        eprintln!("vexp: worst {worst} ulp");
        let ends = [f32::NEG_INFINITY, -200.0, 200.0, f32::INFINITY, f32::NAN];
        let mut lanes = [0f32; 16];
        lanes[..5].copy_from_slice(&ends);
        let mut got = [0f32; 16];
        // SAFETY: AVX-512F checked.
        unsafe { _mm512_storeu_ps(got.as_mut_ptr(), exp16(_mm512_loadu_ps(lanes.as_ptr()))) };
        assert_eq!(&got[..4], &[0.0, 0.0, f32::INFINITY, f32::INFINITY]);
        assert!(got[4].is_nan());
    }

    /// The slice forms against the scalar loops on ragged lengths.
    #[test]
    fn slice_forms_match_scalar_exp() {
        let mut seed = 9u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for n in [1usize, 15, 16, 17, 100, 1066] {
            let x: Vec<f32> = (0..n).map(|_| 20.0 * next()).collect();
            let up: Vec<f32> = (0..n).map(|_| next()).collect();
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut row = x.clone();
            let sum = exp_sub_sum(&mut row, max);
            let want: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
            let want_sum: f32 = want.iter().sum();
            for (g, w) in row.iter().zip(&want) {
                assert!((g - w).abs() <= 3e-7 * w.abs().max(1e-30), "{g} vs {w}");
            }
            assert!(
                (sum - want_sum).abs() <= 1e-5 * want_sum,
                "{sum} vs {want_sum}"
            );
            let mut out = vec![0f32; n];
            silu_mul(&mut out, &x, &up);
            for ((o, g), u) in out.iter().zip(&x).zip(&up) {
                let w = g / (1.0 + (-g).exp()) * u;
                assert!(
                    (o - w).abs() <= 1e-6 * (1.0 + w.abs()),
                    "silu({g}) * {u}: {o} vs {w}"
                );
            }
        }
    }
}
