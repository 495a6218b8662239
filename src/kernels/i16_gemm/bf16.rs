//! The product's inner blocks with AVX-512 BF16 (`vdpbf16ps`).
//!
//! Computes: the parent module's product for a weight packed to bf16
//!   (`PackedWeight::pack_for(Kernel::Avx512Bf16, ..)`) and activations
//!   rounded to bf16, 12 × 32 output tiles summed in f32.
//! Accuracy: each lane is the instruction's f32 chain (see [`kernel`]),
//!   checked bit for bit against a scalar model of it
//!   (`bf16_kernel_matches_the_scalar_model`); the operands' bf16 rounding
//!   (8 significant bits against the i16 kernels' 14) is what costs accuracy:
//!   `tests/encoder_bf16.rs` measures it through the golden encoder.
//! Needs: AVX-512F + AVX-512BW + AVX-512 BF16, checked at run time by
//!   `Kernel::runs_here`; chosen only when asked for (`C3_I16_KERNEL`).
//!
//! Same operand layout as the integer kernels (panels of 16 outputs, two k
//! per 32-bit lane; activation blocks of 6 rows), the same 2 × 2 tiles of
//! [`vnni`](super::vnni) in 24 zmm accumulators. `vdpbf16ps` multiplies 32
//! bf16 pairs and adds them into 16 f32 lanes in one instruction, as
//! `vpdpwssd` does for i16, but its sums are f32 already: no flush into f32
//! every 16 pairs (a load, convert, add and store per accumulator), and the
//! accumulators stay in registers over a whole k block.

use super::vnni::Block;
use super::{MR, NR};
use std::arch::x86_64::*;

/// Whether this CPU runs these kernels.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512bf16")
}

/// Runs [`Block`] (its `ws` must be null: bf16 weights carry no block
/// scales) in 2 × 2 tiles, with 1-wide tiles at odd edges.
///
/// # Safety
/// [`available`]; the pointers hold what [`Block`] describes.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn block(blk: &Block) {
    debug_assert!(blk.ws.is_null());
    let tile = MR * NR;
    let mut i = 0;
    while i < blk.rows {
        let ri = 2.min(blk.rows - i);
        let mut j = 0;
        while j < blk.panels {
            let pj = 2.min(blk.panels - j);
            let a = |d: usize| blk.a.add((i + d) * blk.a_stride);
            let b = |d: usize| blk.b.add((j + d) * blk.b_stride);
            let acc =
                |di: usize, dj: usize| blk.sums.add(((j + dj) * blk.panel_stride + i + di) * tile);
            match (ri, pj) {
                (2, 2) => kernel::<2, 2>(
                    [a(0), a(1)],
                    [b(0), b(1)],
                    blk.pairs,
                    [[acc(0, 0), acc(0, 1)], [acc(1, 0), acc(1, 1)]],
                ),
                (2, _) => {
                    kernel::<2, 1>([a(0), a(1)], [b(0)], blk.pairs, [[acc(0, 0)], [acc(1, 0)]])
                }
                (_, 2) => kernel::<1, 2>([a(0)], [b(0), b(1)], blk.pairs, [[acc(0, 0), acc(0, 1)]]),
                _ => kernel::<1, 1>([a(0)], [b(0)], blk.pairs, [[acc(0, 0)]]),
            }
            j += pj;
        }
        i += ri;
    }
}

/// `R` row blocks × `P` panels over `pairs` k-pairs: each f32 lane of the
/// tiles `acc[i][j]` (row-major `MR × NR`) goes on from its value by one
/// `vdpbf16ps` per pair.
///
/// # Safety
/// [`available`]; `a[i]` holds `pairs · MR` and `b[j]` `pairs · NR` i32,
/// `acc[i][j]` `MR · NR` f32.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[inline(never)]
// One index per operand array (rows, row-in-block, panel), unrolled at
// compile time: plain indices read clearest.
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn kernel<const R: usize, const P: usize>(
    a: [*const i32; R],
    b: [*const i32; P],
    pairs: usize,
    acc: [[*mut f32; P]; R],
) {
    let mut s = [[[_mm512_setzero_ps(); P]; MR]; R];
    for i in 0..R {
        for r in 0..MR {
            for j in 0..P {
                s[i][r][j] = _mm512_loadu_ps(acc[i][j].add(r * NR));
            }
        }
    }
    for t in 0..pairs {
        let mut w = [_mm512_setzero_si512(); P];
        for (j, w) in w.iter_mut().enumerate() {
            *w = _mm512_loadu_si512(b[j].add(t * NR) as *const __m512i);
        }
        for i in 0..R {
            for r in 0..MR {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a[i].add(t * MR + r)));
                for j in 0..P {
                    let wv: __m512bh = std::mem::transmute(w[j]);
                    s[i][r][j] = _mm512_dpbf16_ps(s[i][r][j], av, wv);
                }
            }
        }
    }
    for i in 0..R {
        for r in 0..MR {
            for j in 0..P {
                _mm512_storeu_ps(acc[i][j].add(r * NR), s[i][r][j]);
            }
        }
    }
}
