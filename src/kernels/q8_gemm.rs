//! `x · wᵀ` for Q8_0 weights with 8-bit activations (`vpdpbusd`): the
//! decoder's prefill where the CPU has AVX-512 VNNI (`C3_PREFILL_Q8=0`: the
//! i16 product instead).
//!
//! Computes: `y [m, n] = x [m, k] · wᵀ` (f32 in and out, CPU), `w` given as
//!   GGML Q8_0 blocks (an f16 scale, then 32 signed bytes), its bytes used
//!   exactly; the activations quantized per row and per block of 32 values to
//!   8 bits (scale = the block's largest |x| / 127, rounded to nearest even),
//!   as llama.cpp quantizes them for its own q8_0 products. Each block's four
//!   byte products per lane are summed exactly in i32, then multiplied by both
//!   blocks' scales and added in f32, block after block.
//! Accuracy: an activation step is 1/254 of its block's largest value, where
//!   the i16 prefill keeps 15 bits; `tests/prefill_q8.rs` measures what that
//!   does to logits and teacher-forced agreement on the golden decoder.
//!   The kernel gives the bits of the scalar model below (`model_product`).
//! Needs: AVX-512F + AVX-512BW + AVX-512 VNNI ([`available`]); elsewhere it
//!   is not offered and the i16 prefill runs.
//! Why: `vpdpbusd` does 64 multiply-adds per instruction where `vpdpwssd`
//!   does 32, at the same issue rate on Zen 4 (the `limits` bench's
//!   register-only ceilings: 936 against 468 GOP/s on 2 cores), and the
//!   prefill's weights are 8-bit already.
//!
//! `vpdpbusd` multiplies unsigned bytes by signed ones. The weights are the
//! signed operand as stored; an activation `q` in −127..=127 is stored as
//! `q + 128` (1..=255), so each block's sum carries `128 · Σ w` too, which is
//! subtracted in i32 before the scales (the weight's per-block sums are
//! computed once at packing). i32 range: |(q + 128) · w| ≤ 255 · 128, and a
//! block's 32 products stay under 2²⁰.

use super::cpu_f32::OutPtr;
use super::switch::Switch;
use std::arch::x86_64::*;

/// Values per Q8_0 block, and its bytes (f16 scale + 32 quants).
const QK: usize = 32;
const BLOCK_BYTES: usize = 34;
/// Quads (4 consecutive k, one i32 lane) per block.
const QUADS: usize = QK / 4;
/// Output columns per packed panel (one zmm of i32 sums).
const NR: usize = 16;
/// Rows per microkernel tile; with 2 panels: 8 i32 sums and 8 f32 sums in
/// registers, beside the weights, scales and corrections (24 of 32 zmm).
const MR: usize = 6;
/// Blocks of k per cache block: a panel's slice (8 × 8 × 64 B = 4 KB) and a
/// group's (16 KB) stay in L1 while the row tiles pass.
const KC_BLOCKS: usize = 8;
/// Panels per pass over a row chunk.
const GROUP: usize = 4;
/// Rows per pass: their activation slice (192 × 256 B) and the group's f32
/// sums (192 × 64 × 4 B) stay in L2.
const MC: usize = 192;

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// The name reported where this kernel runs a prefill's products.
pub const NAME: &str = "q8-avx512vnni";

/// Whether this kernel is on where nothing asks otherwise: the prefill's
/// teacher-forced agreement is unchanged with it on the quantization tests,
/// at about twice the i16 product's rate (docs/performance.md).
pub const DEFAULT: bool = true;

static ON: Switch = Switch::new(
    "C3_PREFILL_Q8",
    DEFAULT,
    available,
    "avx512f+avx512bw+avx512vnni",
);

/// Whether a Q8_0 prefill's many-row products use this kernel:
/// `C3_PREFILL_Q8` (`1` on, `0` off) or [`set_on`], else [`DEFAULT`]; never
/// where the CPU lacks it (an explicit request there is named in a note).
pub fn on() -> bool {
    ON.on()
}

/// Turns the kernel on or off for later prefills (on only where the CPU
/// runs it): tests and benchmarks comparing kernels in one process.
pub fn set_on(want: bool) {
    ON.set(want)
}

/// A Q8_0 weight `[n, k]` in panels of [`NR`] outputs: `[panel][quad][NR]`,
/// each i32 four consecutive signed bytes (lowest byte the lowest k), with
/// per panel and block the [`NR`] outputs' f32 scales and `128 · Σ w`.
pub struct Q8Packed {
    n: usize,
    k: usize,
    quads: Vec<i32>,
    scales: Vec<f32>,
    corr: Vec<i32>,
}

impl Q8Packed {
    /// Packs `q`: `n` rows of `k / 32` GGML Q8_0 blocks, a panel per task on
    /// rayon's threads. Errors when `k` is not a multiple of 32 or `q` is
    /// not `n` rows of blocks.
    pub fn from_q8_0(q: &[u8], n: usize, k: usize) -> Result<Self, String> {
        use rayon::prelude::*;
        if k == 0 || !k.is_multiple_of(QK) {
            return Err(format!(
                "Q8_0 rows of {k} values (a multiple of 32 expected)"
            ));
        }
        let nb = k / QK;
        let row_bytes = nb * BLOCK_BYTES;
        if q.len() != n * row_bytes {
            return Err(format!(
                "Q8_0 matrix of {n}×{k} is {} bytes, got {}",
                n * row_bytes,
                q.len()
            ));
        }
        let panels = n.div_ceil(NR);
        let mut quads = vec![0i32; panels * nb * QUADS * NR];
        let mut scales = vec![0f32; panels * nb * NR];
        let mut corr = vec![0i32; panels * nb * NR];
        let full = available();
        quads
            .par_chunks_mut(nb * QUADS * NR)
            .zip(scales.par_chunks_mut(nb * NR))
            .zip(corr.par_chunks_mut(nb * NR))
            .enumerate()
            .for_each(|(p, ((quads, scales), corr))| {
                let rows = &q[p * NR * row_bytes..((p + 1) * NR).min(n) * row_bytes];
                if full && rows.len() == NR * row_bytes {
                    // SAFETY: the CPU has the features (`available`); a full
                    // panel's 16 rows are in `rows`.
                    unsafe { pack_panel(rows, row_bytes, nb, quads, scales, corr) };
                } else {
                    pack_panel_scalar(rows, row_bytes, quads, scales, corr);
                }
            });
        Ok(Self {
            n,
            k,
            quads,
            scales,
            corr,
        })
    }

    /// Outputs (rows of the weight).
    pub fn n(&self) -> usize {
        self.n
    }

    /// `x [m, k]` (row-major) `· wᵀ` → `[m, n]`, on rayon's threads.
    /// Panics where [`available`] is false or `x` is not `m × k`.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert!(
            available(),
            "{NAME}: this CPU lacks avx512f+avx512bw+avx512vnni"
        );
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
        let panels = n.div_ceil(NR);
        let threads = rayon::current_num_threads().max(1);
        // Whole groups per thread where there are enough of them.
        let per = panels.div_ceil(threads).next_multiple_of(2).max(2);
        let ranges: Vec<(usize, usize)> = (0..panels)
            .step_by(per)
            .map(|p| (p, (p + per).min(panels)))
            .collect();
        let run = |&(p0, p1): &(usize, usize)| {
            // SAFETY: `available` was checked above; each range writes only
            // the columns of its own panels.
            unsafe { self.panels_product(&a, p0, p1, c) }
        };
        if ranges.len() == 1 {
            run(&ranges[0]);
        } else {
            use rayon::prelude::*;
            ranges.par_iter().for_each(run);
        }
        // SAFETY: the ranges cover every panel and each writes all m rows of
        // its columns.
        unsafe { out.set_len(m * n) };
        out
    }

    /// Output columns of panels `p0..p1`, [`MC`] rows and [`GROUP`] panels
    /// at a time, k in blocks of [`KC_BLOCKS`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn panels_product(&self, a: &QuantRows, p0: usize, p1: usize, c: OutPtr) {
        let nb = self.k / QK;
        let tiles = a.m.div_ceil(MR);
        let chunk = MC / MR;
        let mut sums = vec![0f32; chunk * MR * GROUP * NR];
        for t0 in (0..tiles).step_by(chunk) {
            let t1 = (t0 + chunk).min(tiles);
            let mut g0 = p0;
            while g0 < p1 {
                let g1 = (g0 + GROUP).min(p1);
                sums.fill(0.0);
                let sp = sums.as_mut_ptr();
                let mut b0 = 0;
                while b0 < nb {
                    let blocks = KC_BLOCKS.min(nb - b0);
                    for t in t0..t1 {
                        let tile = Tile {
                            a: a.quads.as_ptr().add((t * nb + b0) * QUADS * MR),
                            da: a.scales.as_ptr().add((t * nb + b0) * MR),
                            blocks,
                        };
                        let mut p = g0;
                        while p < g1 {
                            let panel = |p: usize| Panel {
                                w: self.quads.as_ptr().add((p * nb + b0) * QUADS * NR),
                                ws: self.scales.as_ptr().add((p * nb + b0) * NR),
                                corr: self.corr.as_ptr().add((p * nb + b0) * NR),
                                sums: sp.add(((t - t0) * GROUP + p - g0) * MR * NR),
                            };
                            if p + 1 < g1 {
                                tile_product::<2>(&tile, [panel(p), panel(p + 1)]);
                                p += 2;
                            } else {
                                tile_product::<1>(&tile, [panel(p)]);
                                p += 1;
                            }
                        }
                    }
                    b0 += blocks;
                }
                // The sums of these rows and panels into the output.
                let n = self.n;
                for t in t0..t1 {
                    for r in 0..MR.min(a.m - t * MR) {
                        let row = t * MR + r;
                        for p in g0..g1 {
                            let cols = NR.min(n - p * NR);
                            let src = sums
                                .as_ptr()
                                .add((((t - t0) * GROUP + p - g0) * MR + r) * NR);
                            std::ptr::copy_nonoverlapping(src, c.at(row * n + p * NR), cols);
                        }
                    }
                }
                g0 = g1;
            }
        }
    }
}

/// One panel's rows (up to [`NR`], `row_bytes` each) into its quads,
/// scales and corrections, one value at a time (a partial last panel).
fn pack_panel_scalar(
    rows: &[u8],
    row_bytes: usize,
    quads: &mut [i32],
    scales: &mut [f32],
    corr: &mut [i32],
) {
    for (c, row) in rows.chunks_exact(row_bytes).enumerate() {
        for (b, blk) in row.chunks_exact(BLOCK_BYTES).enumerate() {
            scales[b * NR + c] = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            let mut sum = 0i32;
            for (t, v) in blk[2..].chunks_exact(4).enumerate() {
                quads[(b * QUADS + t) * NR + c] = i32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                sum += v.iter().map(|&x| x as i8 as i32).sum::<i32>();
            }
            corr[b * NR + c] = 128 * sum;
        }
    }
}

/// [`pack_panel_scalar`] for a full panel: per block, each quad's 16 rows
/// in one gather, the scales in another, the sums by `vpdpbusd` with ones.
///
/// # Safety
/// [`available`]; `rows` holds [`NR`] rows of `row_bytes`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn pack_panel(
    rows: &[u8],
    row_bytes: usize,
    nb: usize,
    quads: &mut [i32],
    scales: &mut [f32],
    corr: &mut [i32],
) {
    let offs = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(row_bytes as i32),
    );
    let ones = _mm512_set1_epi8(1);
    for b in 0..nb {
        let base = rows.as_ptr().add(b * BLOCK_BYTES);
        let d = _mm512_i32gather_epi32::<1>(offs, base as *const i32);
        let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d));
        _mm512_storeu_ps(scales.as_mut_ptr().add(b * NR), d);
        let mut sum = _mm512_setzero_si512();
        for t in 0..QUADS {
            let w = _mm512_i32gather_epi32::<1>(offs, base.add(2 + 4 * t) as *const i32);
            _mm512_storeu_si512(
                quads.as_mut_ptr().add((b * QUADS + t) * NR) as *mut __m512i,
                w,
            );
            sum = _mm512_dpbusd_epi32(sum, ones, w);
        }
        _mm512_storeu_si512(
            corr.as_mut_ptr().add(b * NR) as *mut __m512i,
            _mm512_slli_epi32::<7>(sum),
        );
    }
}

/// One row tile's activations for a k block: `blocks · QUADS · MR` i32 from
/// `a` (`[block][quad][MR]`), `blocks · MR` scales from `da`.
struct Tile {
    a: *const i32,
    da: *const f32,
    blocks: usize,
}

/// One panel's weights, scales and corrections for the same k block, and
/// the tile's `MR × NR` f32 sums for it.
struct Panel {
    w: *const i32,
    ws: *const f32,
    corr: *const i32,
    sums: *mut f32,
}

/// `MR` rows × `P` panels over the tile's blocks, added into the panels'
/// sums: per block, the i32 sums of four byte products per lane, less
/// `128 · Σ w`, converted and multiplied by both scales (`ws · da`, one
/// rounding), then fused-added into the f32 sums in block order (the model:
/// [`model_product`]).
///
/// # Safety
/// [`available`]; the pointers hold what [`Tile`] and [`Panel`] describe.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline(never)]
// Small fixed index ranges unrolled at compile time: plain indices read clearest.
#[allow(clippy::needless_range_loop)]
unsafe fn tile_product<const P: usize>(t: &Tile, p: [Panel; P]) {
    let mut f = [[_mm512_setzero_ps(); P]; MR];
    for r in 0..MR {
        for j in 0..P {
            f[r][j] = _mm512_loadu_ps(p[j].sums.add(r * NR));
        }
    }
    for b in 0..t.blocks {
        // Each sum starts at −128 · Σ w, what the `+ 128` of the unsigned
        // activations adds (exact in i32, so the same bits as subtracting).
        let mut s = [[_mm512_setzero_si512(); P]; MR];
        for j in 0..P {
            let corr = _mm512_loadu_si512(p[j].corr.add(b * NR) as *const __m512i);
            let start = _mm512_sub_epi32(_mm512_setzero_si512(), corr);
            for r in 0..MR {
                s[r][j] = start;
            }
        }
        let a = t.a.add(b * QUADS * MR);
        for q in 0..QUADS {
            let mut w = [_mm512_setzero_si512(); P];
            for j in 0..P {
                w[j] = _mm512_loadu_si512(p[j].w.add((b * QUADS + q) * NR) as *const __m512i);
            }
            for r in 0..MR {
                let av = _mm512_set1_epi32(*a.add(q * MR + r));
                for j in 0..P {
                    s[r][j] = _mm512_dpbusd_epi32(s[r][j], av, w[j]);
                }
            }
        }
        for j in 0..P {
            let ws = _mm512_loadu_ps(p[j].ws.add(b * NR));
            for r in 0..MR {
                let scale = _mm512_mul_ps(ws, _mm512_set1_ps(*t.da.add(b * MR + r)));
                let v = _mm512_cvtepi32_ps(s[r][j]);
                f[r][j] = _mm512_fmadd_ps(v, scale, f[r][j]);
            }
        }
    }
    for r in 0..MR {
        for j in 0..P {
            _mm512_storeu_ps(p[j].sums.add(r * NR), f[r][j]);
        }
    }
}

/// Activations `[m, k]` quantized per row and block of 32: `[row tile]
/// [block][quad][MR]` i32 of four bytes `q + 128`, and `[row tile][block]
/// [MR]` scales. Rows past `m` are zeros (bytes 128, scale 0).
struct QuantRows {
    m: usize,
    quads: Vec<i32>,
    scales: Vec<f32>,
}

impl QuantRows {
    fn new(x: &[f32], m: usize, k: usize) -> Self {
        use rayon::prelude::*;
        let nb = k / QK;
        let tiles = m.div_ceil(MR);
        let mut quads = vec![i32::from_le_bytes([128; 4]); tiles * nb * QUADS * MR];
        let mut scales = vec![0f32; tiles * nb * MR];
        quads
            .par_chunks_mut(nb * QUADS * MR)
            .zip(scales.par_chunks_mut(nb * MR))
            .enumerate()
            .for_each(|(t, (quads, scales))| {
                let mut bytes = [0u8; QK];
                for r in 0..MR.min(m - t * MR) {
                    let row = &x[(t * MR + r) * k..(t * MR + r + 1) * k];
                    for (b, v) in row.chunks_exact(QK).enumerate() {
                        // SAFETY: the product checked `available` first.
                        scales[b * MR + r] = unsafe { quantize_block_avx512(v, &mut bytes) };
                        for (q, four) in bytes.chunks_exact(4).enumerate() {
                            quads[(b * QUADS + q) * MR + r] =
                                i32::from_le_bytes([four[0], four[1], four[2], four[3]]);
                        }
                    }
                }
            });
        Self { m, quads, scales }
    }
}

/// One block of 32 activations to bytes `q + 128` with `q = x / d` rounded
/// to nearest even, `d = max |x| / 127`; returns `d`. An all-zero block has
/// `d = 0`; a block with a NaN or an infinity gets `d = NaN` (and zero
/// quants), so the row's outputs are NaN as the f32 product's would be.
fn quantize_block(v: &[f32], out: &mut [u8; QK]) -> f32 {
    let mut max = 0f32;
    let mut finite = true;
    for &x in v {
        finite &= x.is_finite();
        max = max.max(x.abs());
    }
    if !finite {
        out.fill(128);
        return f32::NAN;
    }
    if max == 0.0 {
        out.fill(128);
        return 0.0;
    }
    let d = max / 127.0;
    let inv = 127.0 / max;
    for (o, &x) in out.iter_mut().zip(v) {
        let q = (x * inv).round_ties_even().clamp(-127.0, 127.0) as i32;
        *o = (q + 128) as u8;
    }
    d
}

/// [`quantize_block`] 16 lanes at a time, with the same bits (the same
/// `x · inv` rounded by `vcvtps2dq` in the default nearest-even mode); a
/// non-finite or all-zero block goes the scalar way.
///
/// # Safety
/// [`available`]; `v` holds 32 values.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_block_avx512(v: &[f32], out: &mut [u8; QK]) -> f32 {
    let x0 = _mm512_loadu_ps(v.as_ptr());
    let x1 = _mm512_loadu_ps(v.as_ptr().add(16));
    let a0 = _mm512_abs_ps(x0);
    let a1 = _mm512_abs_ps(x1);
    // NaN compares unordered, infinity above f32::MAX: either is "not finite".
    let big = _mm512_set1_ps(f32::MAX);
    if _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(a0, big) | _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(a1, big) != 0
    {
        return quantize_block(v, out);
    }
    let max = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
    if max == 0.0 {
        return quantize_block(v, out);
    }
    let inv = _mm512_set1_ps(127.0 / max);
    let off = _mm512_set1_epi32(128);
    let q0 = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x0, inv)), off);
    let q1 = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x1, inv)), off);
    _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(
        out.as_mut_ptr().add(16) as *mut __m128i,
        _mm512_cvtepi32_epi8(q1),
    );
    max / 127.0
}

/// The kernel's arithmetic in scalar code, for tests: the same quantized
/// activations, exact i32 block sums, `ws · da` rounded once, and one fused
/// multiply-add per block in block order.
#[cfg(test)]
fn model_product(q: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    let nb = k / QK;
    let mut y = vec![0f32; m * n];
    let mut bytes = [0u8; QK];
    for i in 0..m {
        let row = &x[i * k..(i + 1) * k];
        let blocks: Vec<(f32, [u8; QK])> = row
            .chunks_exact(QK)
            .map(|v| (quantize_block(v, &mut bytes), bytes))
            .collect();
        for j in 0..n {
            let mut acc = 0f32;
            for (b, (da, qa)) in blocks.iter().enumerate() {
                let blk = &q[(j * nb + b) * BLOCK_BYTES..(j * nb + b + 1) * BLOCK_BYTES];
                let ws = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                let s: i32 = (0..QK)
                    .map(|t| (qa[t] as i32 - 128) * blk[2 + t] as i8 as i32)
                    .sum();
                acc = (s as f32).mul_add(ws * da, acc);
            }
            y[i * n + j] = acc;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// Random Q8_0 rows: full-range bytes (−128 included), scales of mixed
    /// sizes.
    fn random_q8(n: usize, k: usize, seed: &mut u64) -> Vec<u8> {
        let mut q = Vec::with_capacity(n * k / QK * BLOCK_BYTES);
        for _ in 0..n * k / QK {
            let d = half::f16::from_f32((1 + lcg(seed) % 1000) as f32 * 1e-5);
            q.extend_from_slice(&d.to_le_bytes());
            for _ in 0..QK {
                q.push(lcg(seed) as u8);
            }
        }
        q
    }

    fn random_x(m: usize, k: usize, seed: &mut u64) -> Vec<f32> {
        (0..m * k)
            .map(|i| {
                let v = (lcg(seed) % 20001) as f32 / 10000.0 - 1.0;
                // An outlier now and then, as trained models' activations have.
                if i % 97 == 5 {
                    v * 40.0
                } else {
                    v
                }
            })
            .collect()
    }

    fn skipped(test: &str) -> bool {
        if available() {
            return false;
        }
        crate::note!("{test}: SKIPPED: this CPU lacks avx512f+avx512bw+avx512vnni");
        true
    }

    #[test]
    fn kernel_matches_the_scalar_model_bit_for_bit() {
        if skipped("kernel_matches_the_scalar_model_bit_for_bit") {
            return;
        }
        let mut seed = 7;
        // Ragged rows (tiles of 4, chunks of 192), panels (pairs, groups of
        // 4, a partial last one) and k (cache blocks of 8 blocks).
        for &(m, n, k) in &[
            (1, 1, 32),
            (3, 17, 64),
            (5, 40, 288),
            (13, 100, 96),
            (197, 70, 320),
            (4, 16, 32),
        ] {
            let q = random_q8(n, k, &mut seed);
            let x = random_x(m, k, &mut seed);
            let p = Q8Packed::from_q8_0(&q, n, k).unwrap();
            let got = p.matmul(&x, m);
            let want = model_product(&q, n, k, &x, m);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{m}×{n}×{k}: output {i} (row {}, col {}): {g} against the model's {w}",
                    i / n,
                    i % n
                );
            }
        }
    }

    #[test]
    fn product_is_within_the_activation_rounding() {
        if skipped("product_is_within_the_activation_rounding") {
            return;
        }
        let mut seed = 11;
        let (m, n, k) = (9, 33, 256);
        let q = random_q8(n, k, &mut seed);
        let x = random_x(m, k, &mut seed);
        let got = Q8Packed::from_q8_0(&q, n, k).unwrap().matmul(&x, m);
        let nb = k / QK;
        for i in 0..m {
            for j in 0..n {
                // Exact product with the dequantized weights, and the bound
                // half a step per activation gives: Σ |w| · d_block / 2.
                let (mut exact, mut bound) = (0f64, 0f64);
                for b in 0..nb {
                    let blk = &q[(j * nb + b) * BLOCK_BYTES..(j * nb + b + 1) * BLOCK_BYTES];
                    let ws = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32() as f64;
                    let xs = &x[i * k + b * QK..i * k + (b + 1) * QK];
                    let d = xs.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / 127.0;
                    for t in 0..QK {
                        let w = ws * (blk[2 + t] as i8 as f64);
                        exact += w * xs[t] as f64;
                        bound += w.abs() * d / 2.0;
                    }
                }
                let g = got[i * n + j] as f64;
                assert!(
                    (g - exact).abs() <= bound * 1.01 + 1e-6,
                    "row {i} col {j}: {g} against {exact}, bound {bound}"
                );
            }
        }
    }

    #[test]
    fn a_non_finite_activation_spoils_only_its_row() {
        if skipped("a_non_finite_activation_spoils_only_its_row") {
            return;
        }
        let mut seed = 3;
        let (m, n, k) = (6, 20, 64);
        let q = random_q8(n, k, &mut seed);
        let mut x = random_x(m, k, &mut seed);
        x[2 * k + 40] = f32::INFINITY;
        x[4 * k + 3] = f32::NAN;
        let y = Q8Packed::from_q8_0(&q, n, k).unwrap().matmul(&x, m);
        for i in 0..m {
            let bad = i == 2 || i == 4;
            assert!(
                y[i * n..(i + 1) * n].iter().all(|v| v.is_nan() == bad),
                "row {i}: {:?}",
                &y[i * n..(i + 1) * n]
            );
        }
    }

    #[test]
    fn bad_shapes_are_refused_with_their_sizes() {
        let e = Q8Packed::from_q8_0(&[0; 34], 1, 48).err().unwrap();
        assert!(e.contains("48"), "{e}");
        let e = Q8Packed::from_q8_0(&[0; 33], 1, 32).err().unwrap();
        assert!(e.contains("34") && e.contains("33"), "{e}");
    }
}
