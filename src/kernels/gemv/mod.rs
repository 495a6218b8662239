//! One activation row times a quantized matrix: the product every generated
//! token spends its time in.
//!
//! Computes: `y = W · x` for one f32 row `x [k]` and a matrix of GGML blocks
//!   (Q8_0 or Q4_K) `[n, k]`, with `x` quantized per block as candle does
//!   (Q8_0: 8-bit per 32; Q4_K: 8-bit per 256), so the sums are candle's.
//! Accuracy: within 1e-4·(1 + |y|) (Q8_0) and 1e-5·(1 + Σ|w·x|) (Q4_K) of
//!   the exact product of the blocks and the quantized row, checked by the
//!   tests in `q8_0.rs` and `q4k.rs`; the AVX2 and AVX-512 kernels give the
//!   same bits (same i32 lanes, same f32 operations in the same order).
//! Needs: AVX2 + FMA + F16C ([`Kernel::Avx2`]); AVX-512 F/BW/VL + VNNI for
//!   [`Kernel::Avx512`]; without AVX2 each row runs the scalar reference.
//!   Chosen at run time by CPU features; `C3_GEMV_KERNEL` (`scalar`, `avx2`,
//!   `avx512`) forces one for comparisons.
//!
//! The kernels read candle's GGML blocks in place,
//! so the quantized model is held once (many-row products dequantize
//! instead: `Linear::forward`).
//!
//! Why not candle's kernels for one row: on this AVX2 machine they convert
//! f16 scales in software per block and leave the memory stream to the
//! hardware prefetcher, which held them to about half of the memory
//! bandwidth (`cargo bench --bench c3 -- decode/q8_0`: 360 ms per token with
//! candle's, 159 ms with these, bound 139 ms; docs/performance.md). Rows are split over the rayon
//! pool in large contiguous ranges.
//!
//! Why an AVX-512 form: the AVX2 Q8_0 kernel spends ~12 instructions per
//! 32-value block and row (sign tricks, two widening multiply-adds, a scalar
//! f16 scale); `vpdpbusd` does the 32 multiply-adds in one instruction and
//! the scale converts in-vector, ~7 in all, leaving more of each core's time
//! to wait on memory. Q4_K takes 64 bytes of 4-bit values per instruction.

mod q4k;
mod q8_0;

pub use q4k::{q4k_gemv, q4k_gemv_with};
pub use q8_0::{q8_0_gemv, q8_0_gemv_with};

use rayon::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Checks the sizes of `y = W x` for a `format` matrix `w` of `n` rows of
/// `k` values in blocks of `qk` values / `block_bytes` bytes, and returns
/// the bytes per row. Callers (`Linear`) guarantee these; a mismatch is a
/// bug, not bad input.
fn checked_row_bytes(
    format: &str,
    (qk, block_bytes): (usize, usize),
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    y: &[f32],
) -> usize {
    assert!(
        k.is_multiple_of(qk),
        "{format} rows must be whole {qk}-blocks"
    );
    let row_bytes = k / qk * block_bytes;
    assert_eq!(w.len(), n * row_bytes, "{format} matrix size");
    assert_eq!(x.len(), k, "activation length");
    assert_eq!(y.len(), n, "output length");
    row_bytes
}

/// Runs `dot(rows, out)` over contiguous row ranges of `w` (rows of
/// `row_bytes`) in parallel: a few ranges per thread so an uneven finish
/// evens out, in multiples of 4 rows for the 4-row kernels.
fn split_rows<F>(w: &[u8], row_bytes: usize, y: &mut [f32], dot: F)
where
    F: Fn(&[u8], &mut [f32]) + Sync,
{
    let threads = rayon::current_num_threads().max(1);
    let per = y.len().div_ceil(threads * 4).next_multiple_of(4).max(64);
    y.par_chunks_mut(per).enumerate().for_each(|(c, out)| {
        let first = c * per;
        dot(&w[first * row_bytes..(first + out.len()) * row_bytes], out);
    });
}

/// `x` in blocks of `block` values: each block scaled by amax/127 and
/// rounded to nearest (the GGML 8-bit activation format both kernels use).
/// Returns the quantized values and each block's scale.
fn quantize_blocks(x: &[f32], block: usize) -> (Vec<i8>, Vec<f32>) {
    debug_assert!(x.len().is_multiple_of(block));
    let mut qs = vec![0i8; x.len()];
    let mut scales = Vec::with_capacity(x.len() / block);
    for (src, dst) in x.chunks_exact(block).zip(qs.chunks_exact_mut(block)) {
        let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (q, &v) in dst.iter_mut().zip(src) {
            *q = (v * id).round() as i8;
        }
        scales.push(d);
    }
    (qs, scales)
}

/// The one-row kernels (both formats have each).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust, any CPU: the reference the others are tested against.
    Scalar,
    /// AVX2 + FMA + F16C, 256-bit.
    Avx2,
    /// AVX-512 F/BW/VL + VNNI (`vpdpbusd` for Q8_0, 512-bit Q4_K).
    Avx512,
}

impl Kernel {
    pub const ALL: [Kernel; 3] = [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512];

    /// The name reported (bench lines) and accepted by `C3_GEMV_KERNEL`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// The CPU features it needs, as `is_x86_feature_detected!` names them.
    pub fn features(self) -> &'static str {
        match self {
            Kernel::Scalar => "nothing",
            Kernel::Avx2 => "avx2+fma+f16c",
            Kernel::Avx512 => "avx2+fma+f16c+avx512f+avx512bw+avx512vl+avx512vnni",
        }
    }

    /// Whether this CPU runs it.
    pub fn runs_here(self) -> bool {
        match self {
            Kernel::Scalar => true,
            Kernel::Avx2 => avx2_ready(),
            Kernel::Avx512 => avx512_ready(),
        }
    }

    /// The fastest kernel this CPU runs.
    pub fn best() -> Kernel {
        [Kernel::Avx512, Kernel::Avx2]
            .into_iter()
            .find(|k| k.runs_here())
            .unwrap_or(Kernel::Scalar)
    }
}

impl std::str::FromStr for Kernel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        Kernel::ALL
            .into_iter()
            .find(|k| s == k.name())
            .ok_or_else(|| format!("unknown one-row kernel `{s}` (scalar, avx2 or avx512)"))
    }
}

/// The kernel in use, as `Kernel as u8 + 1`; 0 while not yet chosen.
static SELECTED: AtomicU8 = AtomicU8::new(0);

/// The kernel [`q8_0_gemv`] and [`q4k_gemv`] use: [`Kernel::best`], unless
/// `C3_GEMV_KERNEL` or [`set_kernel`] asked for another this CPU runs.
pub fn kernel() -> Kernel {
    if let Some(&k) = (SELECTED.load(Ordering::Relaxed) as usize)
        .checked_sub(1)
        .and_then(|i| Kernel::ALL.get(i))
    {
        return k;
    }
    let best = Kernel::best();
    let k = match std::env::var("C3_GEMV_KERNEL") {
        Err(_) => best,
        Ok(v) => match v.parse::<Kernel>() {
            Ok(k) if k.runs_here() => k,
            Ok(k) => {
                eprintln!(
                    "c3: C3_GEMV_KERNEL={v}: this CPU lacks {}; using {}",
                    k.features(),
                    best.name()
                );
                best
            }
            Err(e) => {
                eprintln!("c3: C3_GEMV_KERNEL: {e}; using {}", best.name());
                best
            }
        },
    };
    SELECTED.store(k as u8 + 1, Ordering::Relaxed);
    k
}

/// Makes every later one-row product use `k` (benchmarks and tests
/// comparing kernels in one process). Panics when this CPU cannot run it.
pub fn set_kernel(k: Kernel) {
    assert!(
        k.runs_here(),
        "one-row kernel {}: this CPU lacks {}",
        k.name(),
        k.features()
    );
    SELECTED.store(k as u8 + 1, Ordering::Relaxed);
}

fn avx2_ready() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static READY: OnceLock<bool> = OnceLock::new();
        *READY.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether the AVX-512 kernels (and the AVX2 parts around them) can run here.
pub(crate) fn avx512_ready() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static READY: OnceLock<bool> = OnceLock::new();
        *READY.get_or_init(|| {
            avx2_ready()
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX2 pieces both kernels use.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// Sum of the 8 lanes.
    #[target_feature(enable = "avx2")]
    pub unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// f16 bits at `p` (unaligned) as f32, through F16C.
    #[target_feature(enable = "f16c")]
    pub unsafe fn f16_at(p: *const u8) -> f32 {
        let bits = std::ptr::read_unaligned(p as *const u16);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }
}

/// The kernels this CPU runs, with a printed line for each it cannot
/// (skipped, not passed).
#[cfg(test)]
fn kernels_here(test: &str) -> Vec<Kernel> {
    Kernel::ALL
        .into_iter()
        .filter(|k| {
            let ok = k.runs_here();
            if !ok {
                eprintln!(
                    "{test}: SKIPPED for {}: this CPU lacks {}",
                    k.name(),
                    k.features()
                );
            }
            ok
        })
        .collect()
}

/// Deterministic values in [-0.5, 0.5) for the kernels' tests.
#[cfg(test)]
fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}
