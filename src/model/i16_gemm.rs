//! `x · wᵀ` in 16-bit integers, for the encoder's many-row products on AVX2.
//!
//! The encoder is GEMM-bound and f32 FMA is at its ceiling on an AVX2 CPU.
//! `vpmaddwd` multiplies sixteen i16 pairs per instruction where an f32 FMA
//! does eight products, and on Zen 3 it issues as often: the microkernel
//! below ran 1.5–1.9x the f32 FMA microkernel's rate there, and a whole
//! encoder chunk took 0.66–0.99 of the time it takes with OpenBLAS's f32
//! sgemm, ~0.85 typically (README, Performance).
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

use super::cpu_f32::OutPtr;
use std::arch::x86_64::*;

/// The quantization range: 14-bit symmetric.
pub const LEVELS: f32 = 8191.0;
/// Activation clip in row RMS: below it a step is at most RMS/256, about a
/// bf16 rounding of an RMS-sized value. At most k/1024 values of a row can
/// exceed it (their squares would pass the row's sum), so the exact
/// correction for them costs at most ~0.1% of the product.
const CLIP_RMS: f32 = 32.0;
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

/// A weight `[n, k]` quantized per output row and packed in panels of
/// [`NR`] outputs: `[panel][k-pair][NR]`, each i32 holding the even k in its
/// low half and the odd k in its high half (the `vpmaddwd` operand order).
pub struct PackedWeight {
    n: usize,
    k: usize,
    pairs: usize,
    panels: Vec<i32>,
    /// Per output (padded to whole panels with 0): the value of one step.
    scales: Vec<f32>,
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
fn activation_step(row: &[f32]) -> (f32, f32, f32) {
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
        (step_max / LEVELS, LEVELS / step_max, clip)
    } else {
        // All zero, or only outliers: nothing on the grid, all added back.
        (0.0, 0.0, 0.0)
    }
}

/// `row · inv` rounded to the nearest integer (ties to even), two values per
/// i32 lane, written to `dst[j · stride]` for pair `j`. A missing last odd
/// value is 0; values beyond ±LEVELS saturate.
fn quantize_pairs(row: &[f32], inv: f32, dst: &mut [i32], stride: usize) {
    let mut j = 0;
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        let mut q = [0i32; 8];
        // SAFETY: only reached after `available()` (AVX2) was checked.
        unsafe { round8(c, inv, &mut q) };
        for h in 0..4 {
            dst[(j + h) * stride] = pair(q[2 * h] as i16, q[2 * h + 1] as i16);
        }
        j += 4;
    }
    let rest = chunks.remainder();
    for p in rest.chunks(2) {
        let lo = round1(p[0], inv);
        let hi = p.get(1).map_or(0, |&v| round1(v, inv));
        dst[j * stride] = pair(lo, hi);
        j += 1;
    }
}

/// Eight values times `inv`, rounded to nearest even (the default MXCSR
/// mode) and saturated at ±[`LEVELS`] (clipped activations, see
/// [`activation_step`]).
#[target_feature(enable = "avx2")]
unsafe fn round8(x: &[f32], inv: f32, q: &mut [i32; 8]) {
    let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr()), _mm256_set1_ps(inv));
    // Clamped as floats: the conversion turns anything past i32 into i32::MIN.
    let v = _mm256_min_ps(
        _mm256_max_ps(v, _mm256_set1_ps(-LEVELS)),
        _mm256_set1_ps(LEVELS),
    );
    _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, _mm256_cvtps_epi32(v));
}

/// One value quantized as [`round8`] does.
fn round1(v: f32, inv: f32) -> i16 {
    (v * inv).round_ties_even().clamp(-LEVELS, LEVELS) as i16
}

impl PackedWeight {
    /// Packs `w`, row-major `[n, k]` (rows are outputs), a panel per task
    /// on rayon's threads (the encoder's 1.3 G weights take seconds).
    /// Panics without AVX2 (callers check [`available`]).
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
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
                    quantize_pairs(row, inv, &mut panel[c..], NR);
                }
            });
        Self {
            n,
            k,
            pairs,
            panels,
            scales,
        }
    }

    /// Bytes held (what one full pass reads).
    pub fn bytes(&self) -> usize {
        self.panels.len() * 4 + self.scales.len() * 4
    }

    /// `x [m, k]` (row-major) `· wᵀ` → `[m, n]`, on rayon's threads.
    /// Panics without AVX2 (callers check [`available`]).
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert!(available(), "i16 product without AVX2");
        assert_eq!(
            x.len(),
            m * self.k,
            "activations of {m}×{} expected",
            self.k
        );
        let a = QuantRows::new(x, m, self.k);
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
            // SAFETY: AVX2 was checked above; this call writes only columns
            // of panels p0..p1 of the m×n output, which no other range has.
            unsafe { self.panels_product(&a, p0, p1, c) }
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
            *y += r * q as f32 * self.scales[col];
        }
    }

    /// Output columns of panels `p0..p1`, [`MC_BLOCKS`] row blocks and
    /// [`GROUP`] panels at a time. For each block of k, a row block's
    /// activations (≤ 6 KB) stay in L1 while the group's panel slices
    /// (16 KB each) stream from L2 past them; the group's f32 sums (≤ 276 KB)
    /// stay in L2 until they are scaled into the output once.
    #[target_feature(enable = "avx2")]
    unsafe fn panels_product(&self, a: &QuantRows, p0: usize, p1: usize, c: OutPtr) {
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
                    for rb in r0..r1 {
                        let ap = a.blocks.as_ptr().add((rb * a.pairs + kb) * MR);
                        for p in g0..g1 {
                            let b = self.panels.as_ptr().add((p * self.pairs + kb) * NR);
                            let at = ((p - g0) * chunk + rb - r0) * tile;
                            kernel(ap, b, kc, sums.as_mut_ptr().add(at));
                        }
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
                    for j in 0..cols {
                        *dst.add(j) = tile[j] * rs * col_scale[j];
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
    fn new(x: &[f32], m: usize, k: usize) -> Self {
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
                    let (s, inv, clip) = activation_step(row);
                    scale[r] = s;
                    quantize_pairs(row, inv, &mut block[r..], MR);
                    if clip.is_finite() {
                        for (j, &v) in row.iter().enumerate() {
                            if v.abs() > clip {
                                lost.push((j as u32, v - round1(v, inv) as f32 * s));
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
unsafe fn kernel(a: *const i32, b: *const i32, pairs: usize, acc: *mut f32) {
    let mut done = 0;
    while done < pairs {
        let run = FLUSH_PAIRS.min(pairs - done);
        kernel_run(a.add(done * MR), b.add(done * NR), run, acc);
        done += run;
    }
}

/// One run of at most [`FLUSH_PAIRS`] k-pairs summed in i32, then added to
/// `acc`. Not inlined: inlined into the loop above, the compiler keeps
/// `acc` in registers across runs too (24 vectors for 16 registers) and
/// spills inside the hot loop.
///
/// # Safety
/// As [`kernel`], with `run ≤ FLUSH_PAIRS`.
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn kernel_run(mut a: *const i32, mut b: *const i32, run: usize, acc: *mut f32) {
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
        _mm256_storeu_ps(
            dst,
            _mm256_add_ps(_mm256_loadu_ps(dst), _mm256_cvtepi32_ps(*v)),
        );
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
        if !available() {
            return;
        }
        let mut seed = 3;
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 17, 33),
            (13, 40, 301),
            (6, 16, 64),
            (8, 149, 70),
            (1100, 20, 600),
        ] {
            let grid = |seed: &mut u64, rows: usize| -> Vec<f32> {
                let mut v: Vec<f32> = (0..rows * k).map(|_| (lcg(seed) * 300.0).round()).collect();
                for r in 0..rows {
                    v[r * k + r % k] = if r % 2 == 0 { LEVELS } else { -LEVELS };
                }
                v
            };
            let (x, w) = (grid(&mut seed, m), grid(&mut seed, n));
            let got = PackedWeight::pack(&w, n, k).matmul(&x, m);
            let want = product(&x, &w, m, n, k);
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - e).abs() <= e.abs() * 1e-6,
                    "({m}, {n}, {k}) element {i}: {g} != {e}"
                );
            }
        }
    }

    /// k = 4096 of +8191 · +8191 sums to 2.7e11, far past i32: only the
    /// flush into f32 every 16 pairs keeps it right.
    #[test]
    fn long_sums_do_not_overflow() {
        if !available() {
            return;
        }
        let (m, n, k) = (6, 16, 4096);
        let x = vec![LEVELS; m * k];
        let w = vec![LEVELS; n * k];
        let got = PackedWeight::pack(&w, n, k).matmul(&x, m);
        let want = k as f64 * (LEVELS as f64).powi(2);
        for g in got {
            assert!((g as f64 - want).abs() <= want * 1e-6, "{g} != {want}");
        }
    }

    /// Random values: the error stays within the rounding bound (half a
    /// step of each operand, per term) and far under a bf16 rounding.
    #[test]
    fn random_products_stay_within_the_rounding_bound() {
        if !available() {
            return;
        }
        let mut seed = 11;
        let (m, n, k) = (37, 50, 1000);
        let x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed) * 4.0).collect();
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed) * 0.1).collect();
        let got = PackedWeight::pack(&w, n, k).matmul(&x, m);
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
        if !available() {
            return;
        }
        let mut seed = 5;
        let (m, n, k) = (9, 40, 1500);
        let mut x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
        for i in 0..m {
            x[i * k + (i * 37) % k] = 1e4 * if i % 2 == 0 { 1.0 } else { -1.0 };
            x[i * k + (i * 91 + 5) % k] = 300.0;
        }
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
        let got = PackedWeight::pack(&w, n, k).matmul(&x, m);
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
            return;
        }
        let x = [1e12f32, -1e12, 3e9, -3e9, 8191.4, 2.5, -3.5, 0.49];
        let want = [8191, -8191, 8191, -8191, 8191, 2, -4, 0];
        let mut q = [0i32; 8];
        // SAFETY: AVX2 checked above.
        unsafe { round8(&x, 1.0, &mut q) };
        assert_eq!(q, want);
        let scalar: Vec<i32> = x.iter().map(|&v| round1(v, 1.0) as i32).collect();
        assert_eq!(scalar, want);
    }

    /// A NaN in a row makes that row's outputs NaN (as in f32), and leaves
    /// the other rows alone; an all-zero row gives zeros.
    #[test]
    fn nan_rows_stay_nan_and_zero_rows_zero() {
        if !available() {
            return;
        }
        let (m, n, k) = (3, 5, 8);
        let mut x = vec![1f32; m * k];
        x[k + 2] = f32::NAN;
        x[2 * k..].fill(0.0);
        let w = vec![0.5f32; n * k];
        let y = PackedWeight::pack(&w, n, k).matmul(&x, m);
        assert!(y[..n].iter().all(|v| (v - 4.0).abs() < 1e-3), "{y:?}");
        assert!(y[n..2 * n].iter().all(|v| v.is_nan()), "{y:?}");
        assert!(y[2 * n..].iter().all(|v| *v == 0.0), "{y:?}");
    }
}
