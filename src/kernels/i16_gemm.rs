//! `x · wᵀ` in 16-bit integers, for the encoder's many-row products on AVX2.
//!
//! Computes: `y [m, n] = x [m, k] · wᵀ` (f32 in and out, CPU) with both
//!   operands quantized to 14-bit integers (weights once at load, per output
//!   row; activations per call, per row) and the products summed exactly in
//!   i32; or, for Q8_0 weights, the blocks' exact 8-bit values with their f16
//!   scales applied at each flush.
//! Accuracy: a step is at most about a bf16 rounding of an RMS-sized value
//!   (see below); the golden encoder's latents stay within the bounds of
//!   `tests/encoder_i16.rs`, prefill logits within `tests/prefill_accuracy.rs`.
//!   The AVX2 and VNNI kernels give the same bits (`kernels_agree_bit_for_bit`).
//! Needs: AVX2 (`vpmaddwd`); AVX-512F+BW+VNNI for the faster `vpdpwssd`
//!   kernel ([`vnni`]). Without AVX2 the matrix stays dense (f32 products).
//!   Beside them, where the CPU has AVX-512 BF16, a weight can be packed to
//!   bf16 instead and multiplied by `vdpbf16ps` ([`bf16`]; chosen only when
//!   asked for: `C3_I16_KERNEL=avx512bf16`, `--encoder-precision
//!   bf16-avx512`; docs/performance.md says why it is not the default).
//! Why: the encoder is GEMM-bound and f32 FMA is at its ceiling on an AVX2
//!   CPU (figures in docs/performance.md).
//!
//! The encoder is GEMM-bound and f32 FMA is at its ceiling on an AVX2 CPU.
//! `vpmaddwd` multiplies sixteen i16 pairs per instruction where an f32 FMA
//! does eight products, and on Zen 3 it issues as often: the microkernel
//! below ran 1.5–1.9x the f32 FMA microkernel's rate there, and a whole
//! encoder chunk took 0.66–0.99 of the time it takes with OpenBLAS's f32
//! sgemm, ~0.85 typically (docs/performance.md).
//!
//! Both operands are quantized symmetrically to 14 bits (±8191): the weight
//! once at load, one scale per output row; the activations per call, one
//! scale per row, set by the row's ordinary values: values beyond
//! [`CLIP_RMS`] times their RMS (the outliers trained models have) saturate,
//! and what they lose is added back exactly in f32. A step is then at most
//! about a bf16 rounding of an RMS-sized value, and the products are summed
//! exactly in i32 before being scaled back.
//!
//! i32 overflow: |a·w| ≤ 8191² < 2²⁶, so one `vpmaddwd` lane (two products)
//! stays under 2²⁷ and [`FLUSH_PAIRS`] = 16 of them under 2³¹. The kernel
//! moves its i32 sums into f32 every 16 pairs.
//!
//! Kernels are chosen at run time ([`Kernel`]): where the CPU has AVX-512
//! VNNI, the same operands go through `vpdpwssd` in 12 × 32 tiles
//! ([`vnni`]); elsewhere the AVX2 6 × 16 kernel below. Both give the same
//! bits (same i32 sums, same flush points, same f32 additions).

use super::cpu_f32::OutPtr;
use super::switch::Switch;
use std::arch::x86_64::*;
use std::sync::atomic::{AtomicU8, Ordering};

mod bf16;
mod vnni;

/// The quantization range: 14-bit symmetric.
pub const LEVELS: f32 = 8191.0;
/// Activation clip in row RMS: below it a step is at most RMS/256, about a
/// bf16 rounding of an RMS-sized value. At most k/1024 values of a row can
/// exceed it (their squares would pass the row's sum), so the exact
/// correction for them costs at most ~0.1% of the product.
const CLIP_RMS: f32 = 32.0;
/// Values per Q8_0 block, and its bytes (f16 scale + 32 quants).
const Q8_K: usize = 32;
const Q8_BLOCK_BYTES: usize = 34;
/// The activations' range against Q8_0 weights (see
/// [`PackedWeight::from_q8_0`]).
pub const Q8_ACT_LEVELS: f32 = 32767.0;
/// Output columns per packed panel (two AVX2 vectors of i32 sums).
const NR: usize = 16;
/// Rows per microkernel call (12 accumulators + 2 weight vectors + 2 temps
/// fill the 16 ymm registers).
const MR: usize = 6;
/// k-pairs summed in i32 before moving to f32 (see the module doc).
const FLUSH_PAIRS: usize = 16;
/// k-pairs per cache block: a panel's block (256 × 64 B) stays in L1.
const KC_PAIRS: usize = 256;
/// Panels that share one pass over the activations.
const GROUP: usize = 4;
/// Row blocks per pass (1080 rows: one chunk's 1066 in one pass, and the
/// group's sums, 4 × 180 × 384 B, within L2 for batches too).
const MC_BLOCKS: usize = 180;

/// Whether this CPU runs the kernel (AVX2). Without it the encoder stays f32.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// The microkernel of the product (all read the same packed operands).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `vpmaddwd` + `vpaddd`, 6 × 16 tiles (AVX2).
    Avx2,
    /// `vpdpwssd`, 12 × 32 tiles (AVX-512 F + BW + VNNI).
    Avx512Vnni,
    /// `vdpbf16ps` on weights packed to bf16 and activations rounded to
    /// bf16, 12 × 32 tiles summed in f32 (AVX-512 F + BW + BF16). Not an
    /// i16 kernel: a weight packed for it runs only with it.
    Avx512Bf16,
}

impl Kernel {
    pub const ALL: [Kernel; 3] = [Kernel::Avx2, Kernel::Avx512Vnni, Kernel::Avx512Bf16];

    /// The name reported (`c3 ingest --json`'s `encoder_kernel`).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx2 => "i16-avx2",
            Kernel::Avx512Vnni => "i16-avx512vnni",
            Kernel::Avx512Bf16 => "bf16-avx512",
        }
    }

    /// The CPU features it needs, as `is_x86_feature_detected!` names them.
    pub fn features(self) -> &'static str {
        match self {
            Kernel::Avx2 => "avx2",
            Kernel::Avx512Vnni => "avx512f+avx512bw+avx512vnni",
            Kernel::Avx512Bf16 => "avx512f+avx512bw+avx512bf16",
        }
    }

    /// Whether this CPU runs it (the AVX2 parts around the kernel included).
    pub fn runs_here(self) -> bool {
        available()
            && match self {
                Kernel::Avx2 => true,
                Kernel::Avx512Vnni => vnni::available(),
                Kernel::Avx512Bf16 => bf16::available(),
            }
    }

    /// Whether it multiplies bf16-packed weights (else 16-bit integers).
    pub fn is_bf16(self) -> bool {
        self == Kernel::Avx512Bf16
    }

    /// The fastest i16 kernel this CPU runs (`None` without AVX2): the
    /// default. The bf16 one is not chosen unless asked for: at the golden
    /// encoder's shapes its bf16-rounded activations put the raw states
    /// past the bound the i16 ones meet (`tests/encoder_bf16.rs`).
    pub fn best() -> Option<Kernel> {
        [Kernel::Avx512Vnni, Kernel::Avx2]
            .into_iter()
            .find(|k| k.runs_here())
    }

    fn from_code(c: u8) -> Option<Kernel> {
        Kernel::ALL.get(c.checked_sub(1)? as usize).copied()
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }
}

impl std::str::FromStr for Kernel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        Kernel::ALL
            .into_iter()
            .find(|k| {
                s == k.name()
                    || s == k.name().trim_start_matches("i16-")
                    || (k.is_bf16() && s == "avx512bf16")
            })
            .ok_or_else(|| format!("unknown i16 kernel `{s}` (avx2, avx512vnni or avx512bf16)"))
    }
}

/// The kernel [`PackedWeight::matmul`] uses, 0 while not yet chosen.
static SELECTED: AtomicU8 = AtomicU8::new(0);

/// The kernel in use: [`Kernel::best`], unless `C3_I16_KERNEL` (`avx2`,
/// `avx512vnni`, `avx512bf16`) or [`set_kernel`] asked for another this CPU
/// runs (a benchmark's comparison). `None` without AVX2. Weights packed
/// while the bf16 kernel is selected are packed to bf16.
pub fn kernel() -> Option<Kernel> {
    if let Some(k) = Kernel::from_code(SELECTED.load(Ordering::Relaxed)) {
        return Some(k);
    }
    let best = Kernel::best()?;
    let k = match std::env::var("C3_I16_KERNEL") {
        Err(_) => best,
        Ok(v) => match v.parse::<Kernel>() {
            Ok(k) if k.runs_here() => k,
            Ok(k) => {
                crate::note!(
                    "c3: C3_I16_KERNEL={v}: this CPU lacks {}; using {}",
                    k.features(),
                    best.name()
                );
                best
            }
            Err(e) => {
                crate::note!("c3: C3_I16_KERNEL: {e}; using {}", best.name());
                best
            }
        },
    };
    SELECTED.store(k.code(), Ordering::Relaxed);
    Some(k)
}

/// The kernel a weight packed as 16-bit integers (every Q8_0 prefill
/// product, and the encoder's unless the bf16 kernel is selected) runs
/// with: [`kernel`], or the best i16 kernel when that is the bf16 one.
pub fn int_kernel() -> Option<Kernel> {
    match kernel()? {
        Kernel::Avx512Bf16 => Kernel::best(),
        k => Some(k),
    }
}

/// Whether the decoder's many-row Q8_0 products (a prompt's prefill) go
/// through the i16 product on the blocks' exact values
/// ([`PackedWeight::from_q8_0`]) instead of the f32 GEMM on the dequantized
/// matrix: `C3_PREFILL_I16` (`1` on, `0` off) or [`set_prefill_i16`], else
/// [`PREFILL_I16_DEFAULT`]; never where the CPU lacks the kernel.
pub fn prefill_i16() -> bool {
    PREFILL.on()
}

/// Whether [`prefill_i16`] is on when nothing asks otherwise.
pub const PREFILL_I16_DEFAULT: bool = true;

static PREFILL: Switch = Switch::new("C3_PREFILL_I16", PREFILL_I16_DEFAULT, available, "avx2");

/// Makes later prefills use the i16 product (`on`, where the CPU runs it)
/// or the f32 GEMM (tests and benchmarks comparing the two in one process).
pub fn set_prefill_i16(on: bool) {
    PREFILL.set(on)
}

/// Makes every later product use `k` (benchmarks comparing kernels in one
/// process). Panics when this CPU cannot run it.
pub fn set_kernel(k: Kernel) {
    assert!(
        k.runs_here(),
        "{}: this CPU lacks {}",
        k.name(),
        k.features()
    );
    SELECTED.store(k.code(), Ordering::Relaxed);
}

/// A weight `[n, k]` quantized per output row and packed in panels of
/// [`NR`] outputs: `[panel][k-pair][NR]`, each i32 holding the even k in its
/// low half and the odd k in its high half (the `vpmaddwd` operand order).
pub struct PackedWeight {
    n: usize,
    k: usize,
    pairs: usize,
    panels: Vec<i32>,
    /// Per output (padded to whole panels with 0): the value of one step
    /// (1 for a weight scaled per block).
    scales: Vec<f32>,
    /// For a weight taken from Q8_0 blocks: per panel, per 32 k (one flush
    /// run), the [`NR`] outputs' block scales, multiplied into each run's
    /// sums as they move to f32. Empty for a weight scaled per row.
    block_scales: Vec<f32>,
    /// The activations' quantization range for this weight.
    act_levels: f32,
    /// Whether `panels` holds bf16 pairs (for [`Kernel::Avx512Bf16`]) rather
    /// than i16 pairs; `scales` are then all 1.
    bf16: bool,
}

/// Two i16 values as one i32 lane: `lo` at the even index.
fn pair(lo: i16, hi: i16) -> i32 {
    (lo as u16 as u32 | ((hi as u16 as u32) << 16)) as i32
}

/// The step of a row's quantization and its inverse: 0 for an all-zero row,
/// NaN (and all-zero values) for a row with a NaN or infinity, so the
/// product carries the NaN as the f32 product would.
fn step(row: &[f32]) -> (f32, f32) {
    let mut max_abs = 0f32;
    let mut finite = true;
    for v in row {
        finite &= v.is_finite();
        max_abs = max_abs.max(v.abs());
    }
    if !finite {
        (f32::NAN, 0.0)
    } else if max_abs > 0.0 {
        (max_abs / LEVELS, LEVELS / max_abs)
    } else {
        (0.0, 0.0)
    }
}

/// An activation row's step, its inverse, and the clip (infinite when no
/// value is clipped): values beyond
/// [`CLIP_RMS`] times the row's RMS saturate, so one huge value (trained
/// models have such outliers) does not coarsen the step for all the others;
/// what they lose is added back exactly (see [`QuantRows`]). Non-finite rows
/// are as in [`step`].
fn activation_step(row: &[f32], levels: f32) -> (f32, f32, f32) {
    if row.iter().any(|v| !v.is_finite()) {
        return (f32::NAN, 0.0, f32::INFINITY);
    }
    // The RMS of the values kept, then again without those beyond the clip
    // it gives (one huge value inflates the RMS it is measured against),
    // until nothing kept passes it: one pass for a row without outliers.
    let mut clip = f32::INFINITY;
    let mut top = 0f32;
    for _ in 0..8 {
        let (mut sum_sq, mut kept) = (0f32, 0usize);
        top = 0.0;
        for v in row {
            let a = v.abs();
            if a <= clip {
                sum_sq += a * a;
                kept += 1;
                top = top.max(a);
            }
        }
        let next = CLIP_RMS * (sum_sq / kept.max(1) as f32).sqrt();
        if next >= top {
            break;
        }
        clip = next;
    }
    // `clip` stays infinite when nothing was clipped (no outlier scan).
    let step_max = top.min(clip);
    if step_max > 0.0 {
        (step_max / levels, levels / step_max, clip)
    } else {
        // All zero, or only outliers: nothing on the grid, all added back.
        (0.0, 0.0, 0.0)
    }
}

/// `row · inv` rounded to the nearest integer (ties to even), two values per
/// i32 lane, written to `dst[j · stride]` for pair `j`. A missing last odd
/// value is 0; values beyond ±`levels` saturate.
fn quantize_pairs(row: &[f32], inv: f32, levels: f32, dst: &mut [i32], stride: usize) {
    let mut j = 0;
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        let mut q = [0i32; 8];
        // SAFETY: only reached after `available()` (AVX2) was checked.
        unsafe { round8(c, inv, levels, &mut q) };
        for h in 0..4 {
            dst[(j + h) * stride] = pair(q[2 * h] as i16, q[2 * h + 1] as i16);
        }
        j += 4;
    }
    let rest = chunks.remainder();
    for p in rest.chunks(2) {
        let lo = round1(p[0], inv, levels);
        let hi = p.get(1).map_or(0, |&v| round1(v, inv, levels));
        dst[j * stride] = pair(lo, hi);
        j += 1;
    }
}

/// Eight values times `inv`, rounded to nearest even (the default MXCSR
/// mode) and saturated at ±`levels` (clipped activations, see
/// [`activation_step`]).
#[target_feature(enable = "avx2")]
unsafe fn round8(x: &[f32], inv: f32, levels: f32, q: &mut [i32; 8]) {
    let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr()), _mm256_set1_ps(inv));
    // Clamped as floats: the conversion turns anything past i32 into i32::MIN.
    let v = _mm256_min_ps(
        _mm256_max_ps(v, _mm256_set1_ps(-levels)),
        _mm256_set1_ps(levels),
    );
    _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, _mm256_cvtps_epi32(v));
}

/// `row` rounded to bf16 (to nearest even, NaN kept), two values per i32
/// lane (even k low), written to `dst[j · stride]` for pair `j`; a missing
/// last odd value is 0.
fn bf16_pairs(row: &[f32], dst: &mut [i32], stride: usize) {
    let b = |v: f32| half::bf16::from_f32(v).to_bits();
    for (j, p) in row.chunks(2).enumerate() {
        let hi = p.get(1).map_or(0, |&v| b(v));
        dst[j * stride] = (b(p[0]) as u32 | (hi as u32) << 16) as i32;
    }
}

/// One value quantized as [`round8`] does.
fn round1(v: f32, inv: f32, levels: f32) -> i16 {
    (v * inv).round_ties_even().clamp(-levels, levels) as i16
}

impl PackedWeight {
    /// Packs `w`, row-major `[n, k]` (rows are outputs), a panel per task
    /// on rayon's threads (the encoder's 1.3 G weights take seconds), for
    /// the kernel in use ([`kernel`]: bf16 pairs for the bf16 kernel, else
    /// 14-bit integers). Panics without AVX2 (callers check [`available`]).
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        let kern = kernel().expect("i16 packing without AVX2");
        Self::pack_for(kern, w, n, k)
    }

    /// [`Self::pack`] for the given kernel's operand format.
    pub fn pack_for(kern: Kernel, w: &[f32], n: usize, k: usize) -> Self {
        if kern.is_bf16() {
            return Self::pack_bf16(w, n, k);
        }
        use rayon::prelude::*;
        assert!(available(), "i16 packing without AVX2");
        assert_eq!(w.len(), n * k, "weight of {n}×{k} expected");
        let pairs = k.div_ceil(2);
        let n_panels = n.div_ceil(NR);
        let mut panels = vec![0i32; n_panels * pairs * NR];
        let mut scales = vec![0f32; n_panels * NR];
        panels
            .par_chunks_mut(pairs * NR)
            .zip(scales.par_chunks_mut(NR))
            .enumerate()
            .for_each(|(p, (panel, scale))| {
                for c in 0..NR.min(n - p * NR) {
                    let row = &w[(p * NR + c) * k..(p * NR + c + 1) * k];
                    let (s, inv) = step(row);
                    scale[c] = s;
                    quantize_pairs(row, inv, LEVELS, &mut panel[c..], NR);
                }
            });
        Self {
            n,
            k,
            pairs,
            panels,
            scales,
            block_scales: Vec::new(),
            act_levels: LEVELS,
            bf16: false,
        }
    }

    /// `w` `[n, k]` rounded to bf16 (to nearest even; a bf16 checkpoint's
    /// weights are exact) in the same panels, two k per 32-bit lane, low
    /// half even, as `vdpbf16ps` pairs them.
    fn pack_bf16(w: &[f32], n: usize, k: usize) -> Self {
        use rayon::prelude::*;
        assert_eq!(w.len(), n * k, "weight of {n}×{k} expected");
        let pairs = k.div_ceil(2);
        let n_panels = n.div_ceil(NR);
        let mut panels = vec![0i32; n_panels * pairs * NR];
        let mut scales = vec![0f32; n_panels * NR];
        panels
            .par_chunks_mut(pairs * NR)
            .zip(scales.par_chunks_mut(NR))
            .enumerate()
            .for_each(|(p, (panel, scale))| {
                for c in 0..NR.min(n - p * NR) {
                    scale[c] = 1.0;
                    bf16_pairs(
                        &w[(p * NR + c) * k..(p * NR + c + 1) * k],
                        &mut panel[c..],
                        NR,
                    );
                }
            });
        Self {
            n,
            k,
            pairs,
            panels,
            scales,
            block_scales: Vec::new(),
            act_levels: 0.0,
            bf16: true,
        }
    }

    /// Packs a Q8_0 matrix (`n` rows of `k / 32` GGML blocks: an f16 scale,
    /// then 32 signed bytes) with its values exact: the bytes become the
    /// i16 operands and the block scales are applied at each flush, which
    /// falls on a block's end ([`FLUSH_PAIRS`] = 16 pairs = 32 k). The
    /// decoder's prefill uses it, so its products differ from the f32 ones
    /// on the same dequantized weights only by the activations' rounding.
    ///
    /// With |w| ≤ 128 the activations get the full 15 bits
    /// ([`Q8_ACT_LEVELS`]): |a·w| ≤ 32767 · 128 < 2²², and 16 pairs of two
    /// products stay under 2²⁷ in i32. Panics without AVX2, when `k` is not
    /// a multiple of 32, or when `q` is not `n` rows of blocks.
    pub fn from_q8_0(q: &[u8], n: usize, k: usize) -> Self {
        use rayon::prelude::*;
        assert!(available(), "i16 packing without AVX2");
        assert!(k.is_multiple_of(Q8_K), "Q8_0 rows of {k} values");
        let nb = k / Q8_K;
        let row_bytes = nb * Q8_BLOCK_BYTES;
        assert_eq!(q.len(), n * row_bytes, "Q8_0 matrix of {n}×{k} expected");
        let pairs = k / 2;
        let n_panels = n.div_ceil(NR);
        let mut panels = vec![0i32; n_panels * pairs * NR];
        let mut block_scales = vec![0f32; n_panels * nb * NR];
        let mut scales = vec![0f32; n_panels * NR];
        panels
            .par_chunks_mut(pairs * NR)
            .zip(block_scales.par_chunks_mut(nb * NR))
            .zip(scales.par_chunks_mut(NR))
            .enumerate()
            .for_each(|(p, ((panel, bs), scale))| {
                for c in 0..NR.min(n - p * NR) {
                    scale[c] = 1.0;
                    let row = &q[(p * NR + c) * row_bytes..(p * NR + c + 1) * row_bytes];
                    for (b, blk) in row.chunks_exact(Q8_BLOCK_BYTES).enumerate() {
                        bs[b * NR + c] = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                        for (t, v) in blk[2..].chunks_exact(2).enumerate() {
                            panel[(b * Q8_K / 2 + t) * NR + c] =
                                pair(v[0] as i8 as i16, v[1] as i8 as i16);
                        }
                    }
                }
            });
        Self {
            n,
            k,
            pairs,
            panels,
            scales,
            block_scales,
            act_levels: Q8_ACT_LEVELS,
            bf16: false,
        }
    }

    /// The block scales of panel `p` from k-pair `kb` on (a flush run's
    /// [`NR`] at a time), or null for a weight scaled per row.
    fn block_scales_at(&self, p: usize, kb: usize) -> *const f32 {
        if self.block_scales.is_empty() {
            return std::ptr::null();
        }
        let nb = self.k / Q8_K;
        self.block_scales[(p * nb + kb / FLUSH_PAIRS) * NR..].as_ptr()
    }

    /// Outputs (rows of the weight).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes held (what one full pass reads).
    pub fn bytes(&self) -> usize {
        self.panels.len() * 4 + self.scales.len() * 4
    }

    /// `x [m, k]` (row-major) `· wᵀ` → `[m, n]`, on rayon's threads, with
    /// [`kernel`]. Panics without AVX2 (callers check [`available`]).
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let k = match self.bf16 {
            true => Kernel::Avx512Bf16,
            false => int_kernel().expect("i16 product without AVX2"),
        };
        self.matmul_with(k, x, m)
    }

    /// The kernel [`Self::matmul`] runs this weight with.
    pub fn kernel(&self) -> Option<Kernel> {
        match self.bf16 {
            true => Some(Kernel::Avx512Bf16),
            false => int_kernel(),
        }
    }

    /// [`Self::matmul`] with the given kernel. Panics where it cannot run,
    /// or when the weight was packed for the other operand format.
    pub fn matmul_with(&self, kernel: Kernel, x: &[f32], m: usize) -> Vec<f32> {
        assert!(
            kernel.runs_here(),
            "{}: this CPU lacks {}",
            kernel.name(),
            kernel.features()
        );
        assert_eq!(
            kernel.is_bf16(),
            self.bf16,
            "{}: the weight was packed for the other operand format",
            kernel.name()
        );
        assert_eq!(
            x.len(),
            m * self.k,
            "activations of {m}×{} expected",
            self.k
        );
        let a = match self.bf16 {
            true => QuantRows::bf16(x, m, self.k),
            false => QuantRows::new(x, m, self.k, self.act_levels),
        };
        let n = self.n;
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        let c = OutPtr(out.as_mut_ptr());
        let n_panels = n.div_ceil(NR);
        let threads = rayon::current_num_threads().max(1);
        let per = n_panels.div_ceil(threads);
        let ranges: Vec<(usize, usize)> = (0..n_panels)
            .step_by(per)
            .map(|p| (p, (p + per).min(n_panels)))
            .collect();
        let run = |&(p0, p1): &(usize, usize)| {
            // SAFETY: the kernel's features were checked above; this call
            // writes only columns of panels p0..p1 of the m×n output, which
            // no other range has.
            unsafe { self.panels_product(kernel, &a, p0, p1, c) }
        };
        if ranges.len() == 1 {
            run(&ranges[0]);
        } else {
            use rayon::prelude::*;
            ranges.par_iter().for_each(run);
        }
        // SAFETY: the ranges cover every panel, and each pass writes all
        // its rows of its panels' columns.
        unsafe { out.set_len(m * n) };
        if a.outliers.iter().any(|o| !o.is_empty()) {
            use rayon::prelude::*;
            out.par_chunks_mut(n)
                .zip(&a.outliers)
                .for_each(|(y, lost)| {
                    for &(j, r) in lost {
                        self.add_column(j as usize, r, y);
                    }
                });
        }
        out
    }

    /// `y += r · W[:, j]` with the quantized weight (a clipped outlier's
    /// remainder, added exactly in f32).
    fn add_column(&self, j: usize, r: f32, y: &mut [f32]) {
        let (pair, high) = (j / 2, j % 2 == 1);
        for (col, y) in y.iter_mut().enumerate() {
            let v = self.panels[((col / NR) * self.pairs + pair) * NR + col % NR];
            let q = if high { (v >> 16) as i16 } else { v as i16 };
            let step = if self.block_scales.is_empty() {
                self.scales[col]
            } else {
                let nb = self.k / Q8_K;
                self.block_scales[((col / NR) * nb + j / Q8_K) * NR + col % NR]
            };
            *y += r * q as f32 * step;
        }
    }

    /// Output columns of panels `p0..p1`, [`MC_BLOCKS`] row blocks and
    /// [`GROUP`] panels at a time. For each block of k, a row block's
    /// activations (≤ 6 KB) stay in L1 while the group's panel slices
    /// (16 KB each) stream from L2 past them; the group's f32 sums (≤ 276 KB)
    /// stay in L2 until they are scaled into the output once.
    #[target_feature(enable = "avx2")]
    unsafe fn panels_product(
        &self,
        kernel: Kernel,
        a: &QuantRows,
        p0: usize,
        p1: usize,
        c: OutPtr,
    ) {
        let row_blocks = a.m.div_ceil(MR);
        let tile = MR * NR;
        let chunk = MC_BLOCKS.min(row_blocks);
        let mut sums = vec![0f32; GROUP * chunk * tile];
        // Row passes outermost: a pass's activations (≤ 19 MB at k = 8960)
        // stay in L3 while every group of this thread's panels reads them.
        for r0 in (0..row_blocks).step_by(chunk) {
            let r1 = (r0 + chunk).min(row_blocks);
            let mut g0 = p0;
            while g0 < p1 {
                let g1 = (g0 + GROUP).min(p1);
                sums.fill(0.0);
                let mut kb = 0;
                while kb < self.pairs {
                    let kc = KC_PAIRS.min(self.pairs - kb);
                    match kernel {
                        Kernel::Avx2 => {
                            for rb in r0..r1 {
                                let ap = a.blocks.as_ptr().add((rb * a.pairs + kb) * MR);
                                for p in g0..g1 {
                                    let b = self.panels.as_ptr().add((p * self.pairs + kb) * NR);
                                    let at = ((p - g0) * chunk + rb - r0) * tile;
                                    let ws = self.block_scales_at(p, kb);
                                    avx2_kernel(ap, b, kc, sums.as_mut_ptr().add(at), ws);
                                }
                            }
                        }
                        Kernel::Avx512Bf16 => bf16::block(&vnni::Block {
                            a: a.blocks.as_ptr().add((r0 * a.pairs + kb) * MR),
                            a_stride: a.pairs * MR,
                            rows: r1 - r0,
                            b: self.panels.as_ptr().add((g0 * self.pairs + kb) * NR),
                            b_stride: self.pairs * NR,
                            panels: g1 - g0,
                            pairs: kc,
                            sums: sums.as_mut_ptr(),
                            panel_stride: chunk,
                            ws: std::ptr::null(),
                            ws_stride: 0,
                        }),
                        Kernel::Avx512Vnni => vnni::block(&vnni::Block {
                            a: a.blocks.as_ptr().add((r0 * a.pairs + kb) * MR),
                            a_stride: a.pairs * MR,
                            rows: r1 - r0,
                            b: self.panels.as_ptr().add((g0 * self.pairs + kb) * NR),
                            b_stride: self.pairs * NR,
                            panels: g1 - g0,
                            pairs: kc,
                            sums: sums.as_mut_ptr(),
                            panel_stride: chunk,
                            ws: self.block_scales_at(g0, kb),
                            ws_stride: (self.k / Q8_K) * NR,
                        }),
                    }
                    kb += kc;
                }
                self.write_rows(a, (g0, g1), r0 * MR, &sums, chunk, c);
                g0 = g1;
            }
        }
    }

    /// Scales the sums of panels `g0..g1` (`chunk` row blocks each) into
    /// the output rows from `row0` on.
    #[target_feature(enable = "avx2")]
    unsafe fn write_rows(
        &self,
        a: &QuantRows,
        panels: (usize, usize),
        row0: usize,
        sums: &[f32],
        chunk: usize,
        c: OutPtr,
    ) {
        let (m, n) = (a.m, self.n);
        let rows = (chunk * MR).min(m - row0);
        for p in panels.0..panels.1 {
            let cols = NR.min(n - p * NR);
            let col_scale = &self.scales[p * NR..p * NR + NR];
            let panel_sums = &sums[(p - panels.0) * chunk * MR * NR..];
            for (i, tile) in panel_sums.chunks_exact(NR).take(rows).enumerate() {
                let row = row0 + i;
                let dst = c.at(row * n + p * NR);
                let rs = a.scales[row];
                if cols == NR {
                    for h in 0..2 {
                        let v = _mm256_mul_ps(
                            _mm256_loadu_ps(tile.as_ptr().add(8 * h)),
                            _mm256_mul_ps(
                                _mm256_set1_ps(rs),
                                _mm256_loadu_ps(col_scale.as_ptr().add(8 * h)),
                            ),
                        );
                        _mm256_storeu_ps(dst.add(8 * h), v);
                    }
                } else {
                    // As the vector path rounds: the two steps' product first.
                    for j in 0..cols {
                        *dst.add(j) = tile[j] * (rs * col_scale[j]);
                    }
                }
            }
        }
    }
}

/// Activations `[m, k]` quantized per row, packed as `[row block][k-pair][MR]`
/// so the kernel reads one contiguous stream, with what clipping took off
/// each row's outliers.
struct QuantRows {
    m: usize,
    pairs: usize,
    blocks: Vec<i32>,
    scales: Vec<f32>,
    /// Per row: (k, the value minus its saturated quantization).
    outliers: Vec<Vec<(u32, f32)>>,
}

impl QuantRows {
    /// The rows rounded to bf16 (to nearest even) in the same blocks, for
    /// the bf16 kernel: every scale 1, nothing clipped.
    fn bf16(x: &[f32], m: usize, k: usize) -> Self {
        use rayon::prelude::*;
        let pairs = k.div_ceil(2);
        let row_blocks = m.div_ceil(MR);
        let mut blocks = vec![0i32; row_blocks * pairs * MR];
        blocks
            .par_chunks_mut(pairs * MR)
            .enumerate()
            .for_each(|(rb, block)| {
                for r in 0..MR.min(m - rb * MR) {
                    let row = &x[(rb * MR + r) * k..(rb * MR + r + 1) * k];
                    bf16_pairs(row, &mut block[r..], MR);
                }
            });
        Self {
            m,
            pairs,
            blocks,
            scales: vec![1.0; row_blocks * MR],
            outliers: vec![Vec::new(); m],
        }
    }

    fn new(x: &[f32], m: usize, k: usize, levels: f32) -> Self {
        use rayon::prelude::*;
        let pairs = k.div_ceil(2);
        let row_blocks = m.div_ceil(MR);
        let mut blocks = vec![0i32; row_blocks * pairs * MR];
        let mut scales = vec![0f32; row_blocks * MR];
        let mut outliers = vec![Vec::new(); m];
        blocks
            .par_chunks_mut(pairs * MR)
            .zip(scales.par_chunks_mut(MR))
            .zip(outliers.par_chunks_mut(MR))
            .enumerate()
            .for_each(|(rb, ((block, scale), lost))| {
                for (r, lost) in lost.iter_mut().enumerate() {
                    let row = &x[(rb * MR + r) * k..(rb * MR + r + 1) * k];
                    let (s, inv, clip) = activation_step(row, levels);
                    scale[r] = s;
                    quantize_pairs(row, inv, levels, &mut block[r..], MR);
                    if clip.is_finite() {
                        for (j, &v) in row.iter().enumerate() {
                            if v.abs() > clip {
                                lost.push((j as u32, v - round1(v, inv, levels) as f32 * s));
                            }
                        }
                    }
                }
            });
        Self {
            m,
            pairs,
            blocks,
            scales,
            outliers,
        }
    }
}

/// `MR × NR` sums over `pairs` k-pairs added into `acc` (row-major f32),
/// [`FLUSH_PAIRS`] at a time.
///
/// # Safety
/// AVX2; `a` holds `pairs · MR` and `b` `pairs · NR` readable i32 at the
/// strides of [`QuantRows`] and [`PackedWeight`]; `acc` holds `MR · NR` f32.
#[target_feature(enable = "avx2")]
unsafe fn avx2_kernel(a: *const i32, b: *const i32, pairs: usize, acc: *mut f32, ws: *const f32) {
    let mut done = 0;
    while done < pairs {
        let run = FLUSH_PAIRS.min(pairs - done);
        let (a, b) = (a.add(done * MR), b.add(done * NR));
        // Two forms, so a row-scaled weight (the encoder's) runs the same
        // code as before block scales existed.
        if ws.is_null() {
            kernel_run::<false>(a, b, run, acc, ws);
        } else {
            kernel_run::<true>(a, b, run, acc, scales_of_run(ws, done));
        }
        done += run;
    }
}

/// The block scales of the flush run starting at pair `done` (null stays
/// null: a weight scaled per row).
fn scales_of_run(ws: *const f32, done: usize) -> *const f32 {
    if ws.is_null() {
        ws
    } else {
        ws.wrapping_add(done / FLUSH_PAIRS * NR)
    }
}

/// One run of at most [`FLUSH_PAIRS`] k-pairs summed in i32, then added to
/// `acc`. Not inlined: inlined into the loop above, the compiler keeps
/// `acc` in registers across runs too (24 vectors for 16 registers) and
/// spills inside the hot loop.
///
/// # Safety
/// As [`avx2_kernel`], with `run ≤ FLUSH_PAIRS`; with `SCALED`, `ws` holds
/// [`NR`] block scales, multiplied into the run's sums before they are
/// added (without, it is not read).
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn kernel_run<const SCALED: bool>(
    mut a: *const i32,
    mut b: *const i32,
    run: usize,
    acc: *mut f32,
    ws: *const f32,
) {
    let mut s = [_mm256_setzero_si256(); 2 * MR];
    for _ in 0..run {
        let b0 = _mm256_loadu_si256(b as *const __m256i);
        let b1 = _mm256_loadu_si256(b.add(8) as *const __m256i);
        for r in 0..MR {
            let av = _mm256_set1_epi32(*a.add(r));
            s[2 * r] = _mm256_add_epi32(s[2 * r], _mm256_madd_epi16(av, b0));
            s[2 * r + 1] = _mm256_add_epi32(s[2 * r + 1], _mm256_madd_epi16(av, b1));
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    for (i, v) in s.iter().enumerate() {
        let dst = acc.add(i * 8);
        let mut v = _mm256_cvtepi32_ps(*v);
        if SCALED {
            v = _mm256_mul_ps(v, _mm256_loadu_ps(ws.add((i % 2) * 8)));
        }
        _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    }

    /// The i16 kernels this CPU runs, with a line for each it cannot
    /// (skipped, not passed). The bf16 kernel has its own tests below.
    fn kernels_here(test: &str) -> Vec<Kernel> {
        Kernel::ALL
            .into_iter()
            .filter(|k| !k.is_bf16())
            .filter(|k| {
                let ok = k.runs_here();
                if !ok {
                    crate::note!(
                        "{test}: SKIPPED for {}: this CPU lacks {}",
                        k.name(),
                        k.features()
                    );
                }
                ok
            })
            .collect()
    }

    fn product(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut y = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k)
                    .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                    .sum();
            }
        }
        y
    }

    /// Values already on the integer grid (each row's largest is ±8191) are
    /// quantized without loss, so the product must be the exact one: any
    /// packing, tiling or edge mistake shows. Sizes are not multiples of the
    /// tiles, k is odd or spans several k blocks, panels span several
    /// groups, and rows several passes.
    #[test]
    fn integer_grid_products_are_exact() {
        for kernel in kernels_here("integer_grid_products_are_exact") {
            integer_grid_products_are_exact_with(kernel);
        }
    }

    fn integer_grid_products_are_exact_with(kernel: Kernel) {
        let mut seed = 3;
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 33),
            (13, 40, 301),
            (6, 16, 64),
            (8, 149, 70),
            (1100, 20, 600),
            (25, 100, 513),
            (12, 32, 2),
        ] {
            let grid = |seed: &mut u64, rows: usize| -> Vec<f32> {
                let mut v: Vec<f32> = (0..rows * k).map(|_| (lcg(seed) * 300.0).round()).collect();
                for r in 0..rows {
                    v[r * k + r % k] = if r % 2 == 0 { LEVELS } else { -LEVELS };
                }
                v
            };
            let (x, w) = (grid(&mut seed, m), grid(&mut seed, n));
            let got = PackedWeight::pack(&w, n, k).matmul_with(kernel, &x, m);
            let want = product(&x, &w, m, n, k);
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - e).abs() <= e.abs() * 1e-6,
                    "{kernel:?} ({m}, {n}, {k}) element {i}: {g} != {e}"
                );
            }
        }
    }

    /// k = 4096 of +8191 · +8191 sums to 2.7e11, far past i32: only the
    /// flush into f32 every 16 pairs keeps it right.
    #[test]
    fn long_sums_do_not_overflow() {
        // 12 × 32: one full VNNI tile too.
        let (m, n, k) = (12, 32, 4096);
        let x = vec![LEVELS; m * k];
        let w = vec![-LEVELS; n * k];
        let packed = PackedWeight::pack(&w, n, k);
        let want = -(k as f64) * (LEVELS as f64).powi(2);
        for kernel in kernels_here("long_sums_do_not_overflow") {
            for g in packed.matmul_with(kernel, &x, m) {
                assert!(
                    (g as f64 - want).abs() <= want.abs() * 1e-6,
                    "{kernel:?}: {g} != {want}"
                );
            }
        }
    }

    /// Random values: the error stays within the rounding bound (half a
    /// step of each operand, per term) and far under a bf16 rounding.
    #[test]
    fn random_products_stay_within_the_rounding_bound() {
        for kernel in kernels_here("random_products_stay_within_the_rounding_bound") {
            random_products_stay_within_the_rounding_bound_with(kernel);
        }
    }

    fn random_products_stay_within_the_rounding_bound_with(kernel: Kernel) {
        let mut seed = 11;
        let (m, n, k) = (37, 50, 1000);
        let x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed) * 4.0).collect();
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed) * 0.1).collect();
        let got = PackedWeight::pack(&w, n, k).matmul_with(kernel, &x, m);
        let want = product(&x, &w, m, n, k);
        let max_row = |v: &[f32], r: usize| {
            v[r * k..(r + 1) * k]
                .iter()
                .fold(0f32, |a, b| a.max(b.abs()))
        };
        let (mut err2, mut ref2) = (0f64, 0f64);
        for i in 0..m {
            let sx = max_row(&x, i) as f64 / LEVELS as f64;
            for j in 0..n {
                let sw = max_row(&w, j) as f64 / LEVELS as f64;
                // |x·w − x̂·ŵ| ≤ Σ (|x| sw/2 + |w| sx/2 + sx sw/4)
                let bound: f64 = (0..k)
                    .map(|t| {
                        (x[i * k + t].abs() as f64) * sw / 2.0
                            + (w[j * k + t].abs() as f64) * sx / 2.0
                            + sx * sw / 4.0
                    })
                    .sum();
                let e = (got[i * n + j] as f64 - want[i * n + j]).abs();
                assert!(
                    e <= bound * 1.01 + 1e-6,
                    "({i}, {j}): error {e} over bound {bound}"
                );
                err2 += e * e;
                ref2 += want[i * n + j].powi(2);
            }
        }
        let rel = (err2 / ref2).sqrt();
        // One bf16 rounding of the outputs alone is ~1e-3 relative (rms).
        assert!(rel < 2e-4, "relative rms error {rel}");
    }

    /// Rows with a few values thousands of times their RMS (as trained
    /// models have): clipped, with the remainder added back exactly, the
    /// error stays as small as without them. Without the clip one 10⁴
    /// outlier would coarsen the step for every other value ~100-fold.
    #[test]
    fn outlier_values_do_not_coarsen_their_rows() {
        for kernel in kernels_here("outlier_values_do_not_coarsen_their_rows") {
            outlier_values_do_not_coarsen_their_rows_with(kernel);
        }
    }

    fn outlier_values_do_not_coarsen_their_rows_with(kernel: Kernel) {
        let mut seed = 5;
        let (m, n, k) = (9, 40, 1500);
        let mut x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
        for i in 0..m {
            x[i * k + (i * 37) % k] = 1e4 * if i % 2 == 0 { 1.0 } else { -1.0 };
            x[i * k + (i * 91 + 5) % k] = 300.0;
        }
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
        let got = PackedWeight::pack(&w, n, k).matmul_with(kernel, &x, m);
        let want = product(&x, &w, m, n, k);
        let (mut err2, mut ref2) = (0f64, 0f64);
        for i in 0..m {
            for j in 0..n {
                let e = got[i * n + j] as f64 - want[i * n + j];
                err2 += e * e;
                ref2 += want[i * n + j].powi(2);
            }
        }
        let rel = (err2 / ref2).sqrt();
        // Without the clip: 1.1e-3 (every ordinary value rounds to 0).
        assert!(rel < 2e-4, "relative rms error {rel} with outliers");
    }

    /// Saturation keeps the sign however far past the range a value is,
    /// and rounds ties to even, in the vector and the scalar path alike.
    #[test]
    fn rounding_saturates_and_ties_to_even() {
        if !available() {
            crate::note!("rounding_saturates_and_ties_to_even: SKIPPED: this CPU lacks avx2");
            return;
        }
        let x = [1e12f32, -1e12, 3e9, -3e9, 8191.4, 2.5, -3.5, 0.49];
        let want = [8191, -8191, 8191, -8191, 8191, 2, -4, 0];
        let mut q = [0i32; 8];
        // SAFETY: AVX2 checked above.
        unsafe { round8(&x, 1.0, LEVELS, &mut q) };
        assert_eq!(q, want);
        let scalar: Vec<i32> = x.iter().map(|&v| round1(v, 1.0, LEVELS) as i32).collect();
        assert_eq!(scalar, want);
    }

    /// A NaN in a row makes that row's outputs NaN (as in f32), and leaves
    /// the other rows alone; an all-zero row gives zeros.
    #[test]
    fn nan_rows_stay_nan_and_zero_rows_zero() {
        let (m, n, k) = (3, 5, 8);
        let mut x = vec![1f32; m * k];
        x[k + 2] = f32::NAN;
        x[2 * k..].fill(0.0);
        let w = vec![0.5f32; n * k];
        for kernel in kernels_here("nan_rows_stay_nan_and_zero_rows_zero") {
            let y = PackedWeight::pack(&w, n, k).matmul_with(kernel, &x, m);
            assert!(y[..n].iter().all(|v| (v - 4.0).abs() < 1e-3), "{y:?}");
            assert!(y[n..2 * n].iter().all(|v| v.is_nan()), "{y:?}");
            assert!(y[2 * n..].iter().all(|v| *v == 0.0), "{y:?}");
        }
    }

    /// What `vpdpwssd` does to one lane, and `vpmaddwd` then `vpaddd`
    /// alike: the two i16 × i16 products exact, added to the i32 sum
    /// modulo 2³² (no saturation).
    fn dpwssd_lane(acc: i32, a: i32, b: i32) -> i32 {
        let lo = (a as i16 as i64) * (b as i16 as i64);
        let hi = ((a >> 16) as i16 as i64) * ((b >> 16) as i16 as i64);
        (acc as i64 + lo + hi) as i32
    }

    /// The kernels' arithmetic on one `MR × NR` tile of row block `a` and
    /// panel `b` (as packed) over `pairs`: i32 lanes as [`dpwssd_lane`],
    /// moved to f32 (round to nearest even), times the run's block scale
    /// where `ws` has them (`[run][NR]`), and added to `acc` every
    /// [`FLUSH_PAIRS`] pairs.
    fn tile_reference(a: &[i32], b: &[i32], pairs: usize, acc: &mut [f32], ws: Option<&[f32]>) {
        for r in 0..MR {
            for c in 0..NR {
                for run in (0..pairs).step_by(FLUSH_PAIRS) {
                    let mut s = 0i32;
                    for t in run..(run + FLUSH_PAIRS).min(pairs) {
                        s = dpwssd_lane(s, a[t * MR + r], b[t * NR + c]);
                    }
                    let v = match ws {
                        Some(ws) => s as f32 * ws[run / FLUSH_PAIRS * NR + c],
                        None => s as f32,
                    };
                    acc[r * NR + c] += v;
                }
            }
        }
    }

    /// Random packed operands: i16 values in ±`limit` (up to the full
    /// range, -32768 included).
    fn random_pairs(seed: &mut u64, len: usize, limit: i32) -> Vec<i32> {
        (0..len)
            .map(|_| {
                let mut v = || {
                    let r = ((lcg(seed) + 0.5) * (2 * limit + 1) as f32) as i32 - limit;
                    r.clamp(-limit, limit).clamp(-32768, 32767) as i16
                };
                pair(v(), v())
            })
            .collect()
    }

    /// The instructions against [`dpwssd_lane`] on the edges: sums that
    /// wrap past i32 both ways, and -32768 · -32768 twice (2³¹, which
    /// `vpmaddwd` wraps to i32::MIN).
    #[test]
    fn instructions_match_the_scalar_lane() {
        let m = -32768i16;
        let cases = [
            (i32::MAX, pair(1, 1), pair(1, 1)),
            (i32::MIN, pair(-1, 0), pair(1, 0)),
            (0, pair(m, m), pair(m, m)),
            (5, pair(m, 32767), pair(m, -32768)),
            (-7, pair(8191, -8191), pair(8191, 8191)),
        ];
        let kernels = kernels_here("instructions_match_the_scalar_lane");
        for (acc, a, b) in cases {
            let want = dpwssd_lane(acc, a, b);
            let mut got = [0i32; 16];
            if kernels.contains(&Kernel::Avx2) {
                // SAFETY: AVX2 checked.
                unsafe {
                    let v = _mm256_add_epi32(
                        _mm256_set1_epi32(acc),
                        _mm256_madd_epi16(_mm256_set1_epi32(a), _mm256_set1_epi32(b)),
                    );
                    _mm256_storeu_si256(got.as_mut_ptr() as *mut __m256i, v);
                }
                assert_eq!(
                    got[..8],
                    [want; 8],
                    "vpmaddwd + vpaddd ({acc}, {a:#x}, {b:#x})"
                );
            }
            if kernels.contains(&Kernel::Avx512Vnni) {
                // SAFETY: AVX-512 VNNI checked.
                unsafe { dpwssd_once(acc, a, b, &mut got) };
                assert_eq!(got, [want; 16], "vpdpwssd ({acc}, {a:#x}, {b:#x})");
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dpwssd_once(acc: i32, a: i32, b: i32, out: &mut [i32; 16]) {
        let v = _mm512_dpwssd_epi32(
            _mm512_set1_epi32(acc),
            _mm512_set1_epi32(a),
            _mm512_set1_epi32(b),
        );
        _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, v);
    }

    /// Every kernel tile shape against [`tile_reference`], bit for bit, on
    /// run lengths that end mid-flush and on full-range values whose i32
    /// sums wrap (the reference wraps as the instructions do), onto f32
    /// tiles that already hold sums.
    #[test]
    fn kernels_match_the_scalar_reference_bit_for_bit() {
        let kernels = kernels_here("kernels_match_the_scalar_reference_bit_for_bit");
        let mut seed = 17;
        for &pairs in &[1, 5, 16, 17, 40, 256] {
            for (limit, scaled) in [(8191, false), (32768, false), (32767, true)] {
                // Two row blocks, two panels, start values in the tiles.
                let a: Vec<Vec<i32>> = (0..2)
                    .map(|_| random_pairs(&mut seed, pairs * MR, limit))
                    .collect();
                let b: Vec<Vec<i32>> = (0..2)
                    .map(|_| random_pairs(&mut seed, pairs * NR, limit))
                    .collect();
                let start: Vec<f32> = (0..4 * MR * NR).map(|_| lcg(&mut seed) * 1e6).collect();
                // Block scales per panel (Q8_0 weights), or none.
                let ws: Vec<Vec<f32>> = (0..2)
                    .map(|_| {
                        let n = if scaled {
                            pairs.div_ceil(FLUSH_PAIRS) * NR
                        } else {
                            0
                        };
                        (0..n).map(|_| lcg(&mut seed) * 0.01).collect()
                    })
                    .collect();
                let wsp = |j: usize| {
                    if scaled {
                        ws[j].as_ptr()
                    } else {
                        std::ptr::null()
                    }
                };
                let mut want = start.clone();
                for (i, a) in a.iter().enumerate() {
                    for (j, b) in b.iter().enumerate() {
                        let t = (i * 2 + j) * MR * NR;
                        let w = scaled.then_some(&ws[j][..]);
                        tile_reference(a, b, pairs, &mut want[t..t + MR * NR], w);
                    }
                }
                let tile = |v: &mut Vec<f32>, i: usize, j: usize| -> *mut f32 {
                    // SAFETY: within the 4 tiles.
                    unsafe { v.as_mut_ptr().add((i * 2 + j) * MR * NR) }
                };
                let what = format!("pairs {pairs}, values ±{limit}, block scales {scaled}");
                if kernels.contains(&Kernel::Avx2) {
                    let mut got = start.clone();
                    for (i, a) in a.iter().enumerate() {
                        for (j, b) in b.iter().enumerate() {
                            // SAFETY: AVX2 checked; sizes as the kernel needs.
                            unsafe {
                                avx2_kernel(
                                    a.as_ptr(),
                                    b.as_ptr(),
                                    pairs,
                                    tile(&mut got, i, j),
                                    wsp(j),
                                )
                            };
                        }
                    }
                    assert_eq!(bits(&got), bits(&want), "AVX2, {what}");
                }
                if kernels.contains(&Kernel::Avx512Vnni) {
                    let (a0, a1) = (a[0].as_ptr(), a[1].as_ptr());
                    let (b0, b1) = (b[0].as_ptr(), b[1].as_ptr());
                    // The full tile, then the edge tiles covering the same
                    // four (as `vnni::block` uses them at odd edges).
                    for shape in ["2x2", "1x2", "2x1", "1x1"] {
                        let mut got = start.clone();
                        let t = |got: &mut Vec<f32>, i, j| tile(got, i, j);
                        // SAFETY: AVX-512 VNNI checked; sizes as the kernels need.
                        unsafe {
                            match shape {
                                "2x2" => {
                                    let acc = [
                                        [t(&mut got, 0, 0), t(&mut got, 0, 1)],
                                        [t(&mut got, 1, 0), t(&mut got, 1, 1)],
                                    ];
                                    vnni::kernel::<2, 2>(
                                        [a0, a1],
                                        [b0, b1],
                                        pairs,
                                        acc,
                                        [wsp(0), wsp(1)],
                                    );
                                }
                                "1x2" => {
                                    for (i, ap) in [a0, a1].into_iter().enumerate() {
                                        let acc = [[t(&mut got, i, 0), t(&mut got, i, 1)]];
                                        vnni::kernel::<1, 2>(
                                            [ap],
                                            [b0, b1],
                                            pairs,
                                            acc,
                                            [wsp(0), wsp(1)],
                                        );
                                    }
                                }
                                "2x1" => {
                                    for (j, bp) in [b0, b1].into_iter().enumerate() {
                                        let acc = [[t(&mut got, 0, j)], [t(&mut got, 1, j)]];
                                        vnni::kernel::<2, 1>([a0, a1], [bp], pairs, acc, [wsp(j)]);
                                    }
                                }
                                _ => {
                                    for (i, ap) in [a0, a1].into_iter().enumerate() {
                                        for (j, bp) in [b0, b1].into_iter().enumerate() {
                                            let acc = [[t(&mut got, i, j)]];
                                            vnni::kernel::<1, 1>([ap], [bp], pairs, acc, [wsp(j)]);
                                        }
                                    }
                                }
                            }
                        }
                        assert_eq!(bits(&got), bits(&want), "VNNI {shape}, {what}");
                    }
                }
            }
        }
    }

    /// Whole products give the same bits with every kernel: odd sizes,
    /// several k blocks, panel groups with odd ends, two row passes, and
    /// clipped outliers.
    #[test]
    fn kernels_agree_bit_for_bit() {
        let kernels = kernels_here("kernels_agree_bit_for_bit");
        if kernels.len() < 2 {
            crate::note!(
                "kernels_agree_bit_for_bit: SKIPPED: one kernel runs here, nothing to compare"
            );
            return;
        }
        let mut seed = 23;
        for &(m, n, k) in &[
            (13, 40, 301),
            (1100, 100, 640),
            (37, 5, 1000),
            (12, 64, 32),
            (40, 37, 1056),
        ] {
            let mut x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
            for i in (0..m).step_by(3) {
                x[i * k + (i * 31) % k] = 500.0;
            }
            let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
            let mut packed = vec![("rows", PackedWeight::pack(&w, n, k))];
            if k % Q8_K == 0 {
                packed.push((
                    "q8_0",
                    PackedWeight::from_q8_0(&random_q8_0(&mut seed, n, k), n, k),
                ));
            }
            for (what, packed) in &packed {
                let outs: Vec<Vec<u32>> = kernels
                    .iter()
                    .map(|&kn| bits(&packed.matmul_with(kn, &x, m)))
                    .collect();
                for (kn, out) in kernels.iter().zip(&outs) {
                    assert!(
                        out == &outs[0],
                        "{what} ({m}, {n}, {k}): {kn:?} differs from {:?}",
                        kernels[0]
                    );
                }
            }
        }
    }

    /// `n` rows of `k / 32` random Q8_0 blocks: f16 scales of either sign
    /// and size, quants over the whole i8 range (-128 included, which
    /// candle never writes but a GGUF file may hold).
    fn random_q8_0(seed: &mut u64, n: usize, k: usize) -> Vec<u8> {
        let mut q = Vec::with_capacity(n * k / Q8_K * Q8_BLOCK_BYTES);
        for b in 0..n * k / Q8_K {
            let d = lcg(seed) * 0.02 * (1 + b % 5) as f32;
            q.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
            q.extend((0..Q8_K).map(|t| {
                let v = ((lcg(seed) + 0.5) * 256.0) as i32 - 128;
                let v = if t == b % Q8_K {
                    -128
                } else {
                    v.clamp(-128, 127)
                };
                v as i8 as u8
            }));
        }
        q
    }

    /// The Q8_0 blocks as f32 `[n, k]`.
    fn dequantize_q8_0(q: &[u8], n: usize, k: usize) -> Vec<f32> {
        let mut w = Vec::with_capacity(n * k);
        for blk in q.chunks_exact(Q8_BLOCK_BYTES) {
            let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            w.extend(blk[2..].iter().map(|&v| v as i8 as f32 * d));
        }
        w
    }

    /// Q8_0 weights with activations already on the 15-bit grid: nothing
    /// is rounded but each run's i32 → f32 move and the f32 sums, so the
    /// product must match the dequantized one within f32 summation error
    /// (a packing, block-scale or edge mistake is off by whole terms).
    /// Ragged rows and outputs, k over several k blocks, a clipped outlier.
    #[test]
    fn q8_0_products_match_the_dequantized_product() {
        for kernel in kernels_here("q8_0_products_match_the_dequantized_product") {
            let mut seed = 29;
            for &(m, n, k) in &[
                (1, 1, 32),
                (7, 17, 64),
                (13, 40, 608),
                (1100, 20, 1056),
                (25, 100, 2048),
            ] {
                let q = random_q8_0(&mut seed, n, k);
                let w = dequantize_q8_0(&q, n, k);
                let mut x: Vec<f32> = (0..m * k)
                    .map(|_| (lcg(&mut seed) * 4000.0).round())
                    .collect();
                for r in 0..m {
                    x[r * k + (r * 7) % k] = if r % 2 == 0 {
                        Q8_ACT_LEVELS
                    } else {
                        -Q8_ACT_LEVELS
                    };
                }
                if m > 3 && k > 1024 {
                    // Past 32 × RMS (which needs k > 32²): clipped, the rest
                    // added back in f32.
                    x[3 * k + 5] = 3.0e6;
                }
                let got = PackedWeight::from_q8_0(&q, n, k).matmul_with(kernel, &x, m);
                for i in 0..m {
                    for j in 0..n {
                        let terms = (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64);
                        let want: f64 = terms.clone().sum();
                        let size: f64 = terms.map(f64::abs).sum();
                        let e = (got[i * n + j] as f64 - want).abs();
                        assert!(
                            e <= size * 1e-5,
                            "{kernel:?} ({m}, {n}, {k}) [{i}, {j}]: {} != {want} (size {size})",
                            got[i * n + j]
                        );
                    }
                }
            }
        }
    }

    /// candle's own Q8_0 bytes (`QTensor::quantize`) read as candle reads
    /// them: ordinary activations against `QTensor::dequantize`'s weights,
    /// within the activations' 15-bit rounding.
    #[test]
    fn candle_q8_0_tensors_match_their_dequantized_weights() {
        use candle_core::quantized::{GgmlDType, QTensor};
        use candle_core::{Device, Tensor};
        let kernels = kernels_here("candle_q8_0_tensors_match_their_dequantized_weights");
        let (m, n, k) = (45, 70, 320);
        let mut seed = 31;
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed) * 0.2).collect();
        let x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed) * 3.0).collect();
        let wt = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&wt, GgmlDType::Q8_0).unwrap();
        let wd: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = product(&x, &wd, m, n, k);
        let packed = PackedWeight::from_q8_0(&q.data().unwrap(), n, k);
        for kernel in kernels {
            let got = packed.matmul_with(kernel, &x, m);
            let (mut err2, mut ref2) = (0f64, 0f64);
            for (g, e) in got.iter().zip(&want) {
                err2 += (*g as f64 - e).powi(2);
                ref2 += e * e;
            }
            let rel = (err2 / ref2).sqrt();
            assert!(rel < 5e-5, "{kernel:?}: relative rms error {rel}");
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Whether the bf16 kernel runs here, with a line naming what is
    /// missing where it does not.
    fn bf16_here(test: &str) -> bool {
        let k = Kernel::Avx512Bf16;
        if !k.runs_here() {
            eprintln!(
                "{test}: SKIPPED for {}: this CPU lacks {}",
                k.name(),
                k.features()
            );
        }
        k.runs_here()
    }

    /// A bf16 value as f32, denormals read as 0 (the instruction's DAZ).
    fn bf16_daz(bits: u32) -> f32 {
        let v = f32::from_bits(bits << 16);
        if v.is_subnormal() {
            0.0f32.copysign(v)
        } else {
            v
        }
    }

    /// An f32 result with denormals flushed to 0 (the instruction's FTZ).
    fn ftz(v: f32) -> f32 {
        if v.is_subnormal() {
            0.0f32.copysign(v)
        } else {
            v
        }
    }

    /// What `vdpbf16ps` does to one lane (Intel SDM): the odd pair's
    /// product, then the even pair's, each added to the f32 sum with one
    /// rounding to nearest even (a product of two bf16 is exact in f32),
    /// denormal inputs read as 0 and denormal results flushed to 0.
    fn dpbf16_lane(acc: f32, a: i32, b: i32) -> f32 {
        let (a, b) = (a as u32, b as u32);
        let hi = bf16_daz(a >> 16) * bf16_daz(b >> 16);
        let lo = bf16_daz(a & 0xffff) * bf16_daz(b & 0xffff);
        ftz(ftz(ftz(acc) + hi) + lo)
    }

    fn bf16_bits(v: f32) -> u32 {
        half::bf16::from_f32(v).to_bits() as u32
    }

    fn bf16_pair(lo: f32, hi: f32) -> i32 {
        (bf16_bits(lo) | bf16_bits(hi) << 16) as i32
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn dpbf16_once(acc: f32, a: i32, b: i32) -> [f32; 16] {
        let v = _mm512_dpbf16_ps(
            _mm512_set1_ps(acc),
            std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(a)),
            std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(b)),
        );
        let mut out = [0f32; 16];
        _mm512_storeu_ps(out.as_mut_ptr(), v);
        out
    }

    /// The instruction against [`dpbf16_lane`] where the order of the two
    /// additions, their rounding, DAZ and FTZ each show.
    #[test]
    fn vdpbf16ps_matches_the_scalar_lane() {
        if !bf16_here("vdpbf16ps_matches_the_scalar_lane") {
            return;
        }
        let tiny = f32::from_bits(1 << 16); // a bf16 denormal
        let e = 2f32.powi(-24);
        let cases = [
            // 1 + 2^-24 + 2^-24: two roundings give 1, one would not.
            (1.0, bf16_pair(e, e), bf16_pair(1.0, 1.0)),
            // Order: (2^24 − 1 + 1) then − 2^24 or the other way round.
            (16777215.0, bf16_pair(-1.0, 1.0), bf16_pair(16777216.0, 1.0)),
            (
                -16777215.0,
                bf16_pair(1.0, -1.0),
                bf16_pair(16777216.0, 1.0),
            ),
            (0.0, bf16_pair(tiny, 1.0), bf16_pair(1.0, 1.0)),
            (
                0.0,
                bf16_pair(2f32.powi(-70), 0.0),
                bf16_pair(2f32.powi(-70), 0.0),
            ),
            (1.5, bf16_pair(-3.0, 2.5), bf16_pair(0.5, -0.25)),
            (f32::MAX, bf16_pair(f32::MAX, 1.0), bf16_pair(2.0, 1.0)),
        ];
        for (acc, a, b) in cases {
            let want = dpbf16_lane(acc, a, b);
            // SAFETY: AVX-512 BF16 checked above.
            let got = unsafe { dpbf16_once(acc, a, b) };
            for g in got {
                assert_eq!(
                    g.to_bits(),
                    want.to_bits(),
                    "vdpbf16ps({acc}, {a:#x}, {b:#x}) = {g}, model {want}"
                );
            }
        }
    }

    /// Every bf16 tile shape against [`dpbf16_lane`] chained over the
    /// pairs, bit for bit, on tiles that already hold sums, with run
    /// lengths across any flush interval (there is none).
    #[test]
    // Tile, row and column indices into three operand arrays.
    #[allow(clippy::needless_range_loop)]
    fn bf16_kernel_matches_the_scalar_model() {
        if !bf16_here("bf16_kernel_matches_the_scalar_model") {
            return;
        }
        let mut seed = 41;
        for &pairs in &[1usize, 7, 16, 17, 100, 256] {
            let mut rand_pairs = |len: usize, scale: f32| -> Vec<i32> {
                (0..len)
                    .map(|_| bf16_pair(lcg(&mut seed) * scale, lcg(&mut seed) * scale))
                    .collect()
            };
            let a: Vec<Vec<i32>> = (0..2).map(|_| rand_pairs(pairs * MR, 8.0)).collect();
            let b: Vec<Vec<i32>> = (0..2).map(|_| rand_pairs(pairs * NR, 0.1)).collect();
            let start: Vec<f32> = (0..4 * MR * NR).map(|_| lcg(&mut seed) * 10.0).collect();
            let mut want = start.clone();
            for i in 0..2 {
                for j in 0..2 {
                    let t = (i * 2 + j) * MR * NR;
                    for r in 0..MR {
                        for c in 0..NR {
                            let v = &mut want[t + r * NR + c];
                            for p in 0..pairs {
                                *v = dpbf16_lane(*v, a[i][p * MR + r], b[j][p * NR + c]);
                            }
                        }
                    }
                }
            }
            let (a0, a1) = (a[0].as_ptr(), a[1].as_ptr());
            let (b0, b1) = (b[0].as_ptr(), b[1].as_ptr());
            for shape in ["2x2", "1x2", "2x1", "1x1"] {
                let mut got = start.clone();
                let t = |got: &mut Vec<f32>, i: usize, j: usize| -> *mut f32 {
                    // SAFETY: within the 4 tiles.
                    unsafe { got.as_mut_ptr().add((i * 2 + j) * MR * NR) }
                };
                // SAFETY: AVX-512 BF16 checked; sizes as the kernels need.
                unsafe {
                    match shape {
                        "2x2" => {
                            let acc = [
                                [t(&mut got, 0, 0), t(&mut got, 0, 1)],
                                [t(&mut got, 1, 0), t(&mut got, 1, 1)],
                            ];
                            bf16::kernel::<2, 2>([a0, a1], [b0, b1], pairs, acc);
                        }
                        "1x2" => {
                            for (i, ap) in [a0, a1].into_iter().enumerate() {
                                let acc = [[t(&mut got, i, 0), t(&mut got, i, 1)]];
                                bf16::kernel::<1, 2>([ap], [b0, b1], pairs, acc);
                            }
                        }
                        "2x1" => {
                            for (j, bp) in [b0, b1].into_iter().enumerate() {
                                let acc = [[t(&mut got, 0, j)], [t(&mut got, 1, j)]];
                                bf16::kernel::<2, 1>([a0, a1], [bp], pairs, acc);
                            }
                        }
                        _ => {
                            for (i, ap) in [a0, a1].into_iter().enumerate() {
                                for (j, bp) in [b0, b1].into_iter().enumerate() {
                                    bf16::kernel::<1, 1>([ap], [bp], pairs, [[t(&mut got, i, j)]]);
                                }
                            }
                        }
                    }
                }
                assert_eq!(bits(&got), bits(&want), "bf16 {shape}, pairs {pairs}");
            }
        }
    }

    /// Whole bf16 products (odd sizes, odd k, several k blocks, panel
    /// groups, two row passes) against the f64 product of the operands
    /// rounded to bf16: only the f32 summation may differ. A packing, edge
    /// or tiling mistake is off by whole terms.
    #[test]
    fn bf16_products_match_the_rounded_operands() {
        if !bf16_here("bf16_products_match_the_rounded_operands") {
            return;
        }
        let mut seed = 43;
        let round = |v: &[f32]| -> Vec<f32> {
            v.iter()
                .map(|&x| half::bf16::from_f32(x).to_f32())
                .collect()
        };
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 33),
            (13, 40, 301),
            (1100, 20, 600),
            (25, 100, 1513),
        ] {
            let x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed) * 4.0).collect();
            let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed) * 0.1).collect();
            let packed = PackedWeight::pack_for(Kernel::Avx512Bf16, &w, n, k);
            let got = packed.matmul_with(Kernel::Avx512Bf16, &x, m);
            let (xr, wr) = (round(&x), round(&w));
            for i in 0..m {
                for j in 0..n {
                    let terms = (0..k).map(|t| xr[i * k + t] as f64 * wr[j * k + t] as f64);
                    let want: f64 = terms.clone().sum();
                    let size: f64 = terms.map(f64::abs).sum();
                    let e = (got[i * n + j] as f64 - want).abs();
                    assert!(
                        e <= size * 1e-6 + 1e-30,
                        "({m}, {n}, {k}) [{i}, {j}]: {} != {want}",
                        got[i * n + j]
                    );
                }
            }
        }
        // A NaN row stays NaN, an all-zero row gives zeros.
        let (m, n, k) = (3, 5, 8);
        let mut x = vec![1f32; m * k];
        x[k + 2] = f32::NAN;
        x[2 * k..].fill(0.0);
        let packed = PackedWeight::pack_for(Kernel::Avx512Bf16, &vec![0.5f32; n * k], n, k);
        let y = packed.matmul_with(Kernel::Avx512Bf16, &x, m);
        assert!(y[..n].iter().all(|v| *v == 4.0), "{y:?}");
        assert!(y[n..2 * n].iter().all(|v| v.is_nan()), "{y:?}");
        assert!(y[2 * n..].iter().all(|v| *v == 0.0), "{y:?}");
    }
}
