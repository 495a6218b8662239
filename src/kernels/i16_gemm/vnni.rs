//! The i16 product's inner blocks with AVX-512 VNNI (`vpdpwssd`).
//!
//! Computes: the parent module's i16 product, 12 × 32 output tiles.
//! Accuracy: bit for bit the AVX2 kernel's (same i32 sums, same flush points,
//!   same f32 additions), checked by `kernels_agree_bit_for_bit`.
//! Needs: AVX-512F + AVX-512BW + AVX-512 VNNI, checked at run time by
//!   `Kernel::runs_here`; elsewhere the AVX2 kernel runs.
//!
//! Same operands as the AVX2 kernel (the packed panels of 16 outputs and
//! the activation blocks of 6 rows, see the parent module), read as 2 row
//! blocks × 2 panels at once: a 12 × 32 tile in 24 zmm accumulators, two
//! weight vectors, and broadcast activations, within the 32 zmm registers.
//! `vpdpwssd` multiplies 32 i16 pairs and adds them into the 16 i32 lanes in
//! one instruction, where AVX2 needs `vpmaddwd` then `vpaddd` for half as
//! many; each weight vector loaded serves 12 rows instead of 6.
//!
//! i32 overflow: `vpdpwssd` adds its two products into the lane without
//! saturation (wrapping, as `vpaddd` after `vpmaddwd` does), so the bound is
//! the AVX2 kernel's: |a·w| ≤ 8191² < 2²⁶, two products per pair, and
//! [`FLUSH_PAIRS`] = 16 pairs keep a lane under 2³¹ before the sums move to
//! f32. The saturating form (`vpdpwssds`) would not be safer, only wrong in
//! another way. With the same flush points and the same f32 additions, the
//! result is bit for bit the AVX2 kernel's (tested).

use super::{scales_of_run, FLUSH_PAIRS, MR, NR};
use std::arch::x86_64::*;

/// Row blocks (of [`MR`] rows) and panels (of [`NR`] outputs) per tile.
const RB: usize = 2;
const PB: usize = 2;

/// Whether this CPU runs these kernels.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// One k block of a pass: `rows` row blocks from `a` (stride `a_stride`
/// i32 per row block) against `panels` panels from `b` (stride `b_stride`),
/// `pairs` k-pairs each, summed into the f32 tiles at `sums`: the tile of
/// row block `i` and panel `j` is at `sums + (j · panel_stride + i) · MR · NR`
/// (the layout of the parent's `panels_product`).
pub(super) struct Block {
    pub a: *const i32,
    pub a_stride: usize,
    pub rows: usize,
    pub b: *const i32,
    pub b_stride: usize,
    pub panels: usize,
    pub pairs: usize,
    pub sums: *mut f32,
    pub panel_stride: usize,
    /// Null, or the first panel's block scales (Q8_0 weights; the parent's
    /// `block_scales`), `ws_stride` f32 per panel.
    pub ws: *const f32,
    pub ws_stride: usize,
}

/// Runs [`Block`] in 2 × 2 tiles, with 1-wide tiles at odd edges.
///
/// # Safety
/// [`available`]; the pointers hold what [`Block`] describes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn block(blk: &Block) {
    let tile = MR * NR;
    let mut i = 0;
    while i < blk.rows {
        let ri = RB.min(blk.rows - i);
        let mut j = 0;
        while j < blk.panels {
            let pj = PB.min(blk.panels - j);
            let a = |d: usize| blk.a.add((i + d) * blk.a_stride);
            let b = |d: usize| blk.b.add((j + d) * blk.b_stride);
            let w = |d: usize| {
                if blk.ws.is_null() {
                    blk.ws
                } else {
                    blk.ws.add((j + d) * blk.ws_stride)
                }
            };
            let acc =
                |di: usize, dj: usize| blk.sums.add(((j + dj) * blk.panel_stride + i + di) * tile);
            match (ri, pj) {
                (2, 2) => kernel::<2, 2>(
                    [a(0), a(1)],
                    [b(0), b(1)],
                    blk.pairs,
                    [[acc(0, 0), acc(0, 1)], [acc(1, 0), acc(1, 1)]],
                    [w(0), w(1)],
                ),
                (2, _) => kernel::<2, 1>(
                    [a(0), a(1)],
                    [b(0)],
                    blk.pairs,
                    [[acc(0, 0)], [acc(1, 0)]],
                    [w(0)],
                ),
                (_, 2) => kernel::<1, 2>(
                    [a(0)],
                    [b(0), b(1)],
                    blk.pairs,
                    [[acc(0, 0), acc(0, 1)]],
                    [w(0), w(1)],
                ),
                _ => kernel::<1, 1>([a(0)], [b(0)], blk.pairs, [[acc(0, 0)]], [w(0)]),
            }
            j += pj;
        }
        i += ri;
    }
}

/// `R` row blocks × `P` panels over `pairs` k-pairs, added into the f32
/// tiles `acc[i][j]` (row-major `MR × NR`), [`FLUSH_PAIRS`] at a time;
/// each run's sums times panel `j`'s block scales `ws[j]` where not null.
///
/// # Safety
/// [`available`]; `a[i]` holds `pairs · MR` and `b[j]` `pairs · NR` i32,
/// `acc[i][j]` `MR · NR` f32, `ws[j]` null or `NR` f32 per run.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn kernel<const R: usize, const P: usize>(
    a: [*const i32; R],
    b: [*const i32; P],
    pairs: usize,
    acc: [[*mut f32; P]; R],
    ws: [*const f32; P],
) {
    let mut done = 0;
    while done < pairs {
        let run = FLUSH_PAIRS.min(pairs - done);
        kernel_run::<R, P>(
            a.map(|p| p.add(done * MR)),
            b.map(|p| p.add(done * NR)),
            run,
            acc,
            ws.map(|w| scales_of_run(w, done)),
        );
        done += run;
    }
}

/// One run of at most [`FLUSH_PAIRS`] k-pairs in i32, then added to `acc`.
/// Not inlined, as in the AVX2 kernel: inlined into the loop above, the
/// compiler would try to keep `acc` in registers across runs too and spill.
///
/// # Safety
/// As [`kernel`], with `run ≤ FLUSH_PAIRS`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline(never)]
// One index per operand array (rows, row-in-block, panel), unrolled at
// compile time: plain indices read clearest.
#[allow(clippy::needless_range_loop)]
unsafe fn kernel_run<const R: usize, const P: usize>(
    a: [*const i32; R],
    b: [*const i32; P],
    run: usize,
    acc: [[*mut f32; P]; R],
    ws: [*const f32; P],
) {
    let mut s = [[[_mm512_setzero_si512(); P]; MR]; R];
    for t in 0..run {
        let mut w = [_mm512_setzero_si512(); P];
        for (j, w) in w.iter_mut().enumerate() {
            *w = _mm512_loadu_si512(b[j].add(t * NR) as *const __m512i);
        }
        for i in 0..R {
            for r in 0..MR {
                let av = _mm512_set1_epi32(*a[i].add(t * MR + r));
                for j in 0..P {
                    s[i][r][j] = _mm512_dpwssd_epi32(s[i][r][j], av, w[j]);
                }
            }
        }
    }
    for i in 0..R {
        for r in 0..MR {
            for j in 0..P {
                let dst = acc[i][j].add(r * NR);
                let mut v = _mm512_cvtepi32_ps(s[i][r][j]);
                // As the AVX2 kernel: the product, then the sum (same bits).
                if !ws[j].is_null() {
                    v = _mm512_mul_ps(v, _mm512_loadu_ps(ws[j]));
                }
                _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), v));
            }
        }
    }
}
