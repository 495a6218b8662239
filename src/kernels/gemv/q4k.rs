//! Q4K (GGML k-quant layout: per row, super-blocks of 256 values holding an
//! f16 scale `d`, an f16 `dmin`, 12 bytes of eight 6-bit scales and eight
//! 6-bit mins, then 128 bytes of 4-bit values). Value `i` of sub-block `j`
//! is `d * sc[j] * q - dmin * m[j]`, so a row's dot product is
//! `Σ d·dx·Σ_j sc[j]·(q·x)_j − Σ dmin·dx·Σ_j m[j]·(Σx)_j`: the first term in
//! integers per super-block, the second from per-32 sums of the activations.
//!
//! Computes / Accuracy / Needs: as the parent module states for Q4_K
//!   (`exact_against_dequantized_weights_and_quantized_row`,
//!   `kernels_agree_bit_for_bit`).

use super::{checked_row_bytes, kernel, quantize_blocks, split_rows, Kernel};
use half::f16;

/// Bytes of one Q4K super-block.
pub const Q4K_BLOCK_BYTES: usize = 144;
const QK: usize = 256;
const SUB: usize = 32;

/// The activation row in 8 bits, one f32 scale per 256 values, with the sum
/// of each 32 quantized values (for the mins term).
pub struct Q8KRow {
    qs: Vec<i8>,
    scales: Vec<f32>,
    sums: Vec<i32>,
    /// For the AVX-512 kernel (else empty): `qs` with each 128 values
    /// reordered as sub-blocks 0, 2, 1, 3 of 32, the order in which one
    /// 64-byte load of 4-bit values yields them (low nibbles: sub-blocks
    /// 0 and 2, high nibbles: 1 and 3).
    qs_paired: Vec<i8>,
}

impl Q8KRow {
    #[cfg(test)]
    fn new(x: &[f32]) -> Self {
        Self::for_kernel(x, Kernel::Scalar)
    }

    fn for_kernel(x: &[f32], kern: Kernel) -> Self {
        let (qs, scales) = quantize_blocks(x, QK);
        let sums = qs
            .chunks_exact(SUB)
            .map(|c| c.iter().map(|&v| v as i32).sum())
            .collect();
        let qs_paired = match kern {
            Kernel::Avx512 => qs
                .chunks_exact(4 * SUB)
                .flat_map(|c| {
                    [
                        &c[..SUB],
                        &c[2 * SUB..3 * SUB],
                        &c[SUB..2 * SUB],
                        &c[3 * SUB..],
                    ]
                })
                .flatten()
                .copied()
                .collect(),
            _ => Vec::new(),
        };
        Self {
            qs,
            scales,
            sums,
            qs_paired,
        }
    }
}

/// The eight 6-bit scales and eight 6-bit mins packed in 12 bytes: sub-blocks
/// 0-3 keep theirs in the low 6 bits of bytes 0-3 (scales) and 4-7 (mins);
/// sub-blocks 4-7 take 4 low bits from bytes 8-11 and their top 2 bits from
/// the top bits of bytes 0-3 (scales) and 4-7 (mins).
/// Done on 4-byte words, four sub-blocks per operation.
#[inline(always)]
fn scales_mins(p: &[u8]) -> ([u8; 8], [u8; 8]) {
    let word = |i: usize| u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let (a, b, c) = (word(0), word(4), word(8));
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const TOP2: u32 = 0x0303_0303;
    let sc_lo = a & LOW6;
    let m_lo = b & LOW6;
    let sc_hi = (c & LOW4) | (((a >> 6) & TOP2) << 4);
    let m_hi = ((c >> 4) & LOW4) | (((b >> 6) & TOP2) << 4);
    let join = |lo: u32, hi: u32| (lo as u64 | (hi as u64) << 32).to_le_bytes();
    (join(sc_lo, sc_hi), join(m_lo, m_hi))
}

/// `y[r] = Σ_k W[r, k] x[k]` for the `n` rows of a Q4K matrix `w` whose rows
/// hold `k` values (`k` a multiple of 256). `w` is the raw block bytes.
pub fn q4k_gemv(w: &[u8], n: usize, k: usize, x: &[f32], y: &mut [f32]) {
    q4k_gemv_with(kernel(), w, n, k, x, y);
}

/// [`q4k_gemv`] with the given kernel (tests and benchmarks comparing
/// them). Panics where this CPU cannot run it.
pub fn q4k_gemv_with(kern: Kernel, w: &[u8], n: usize, k: usize, x: &[f32], y: &mut [f32]) {
    assert!(
        kern.runs_here(),
        "{}: this CPU lacks {}",
        kern.name(),
        kern.features()
    );
    let row_bytes = checked_row_bytes("Q4K", (QK, Q4K_BLOCK_BYTES), w, n, k, x, y);
    let xq = Q8KRow::for_kernel(x, kern);
    split_rows(w, row_bytes, y, |rows, out| {
        for (r, o) in out.iter_mut().enumerate() {
            *o = row_dot(&rows[r * row_bytes..(r + 1) * row_bytes], &xq, kern);
        }
    });
}

fn row_dot(row: &[u8], x: &Q8KRow, kern: Kernel) -> f32 {
    // SAFETY (both): the caller checked that the CPU has the features the
    // kernel is compiled for; `row` holds whole super-blocks matching `x`
    // (and `x` was built for this kernel).
    #[cfg(target_arch = "x86_64")]
    match kern {
        Kernel::Avx2 => return unsafe { avx2::row_dot(row, x) },
        Kernel::Avx512 => return unsafe { avx512::row_dot(row, x) },
        Kernel::Scalar => {}
    }
    let _ = kern;
    row_dot_scalar(row, x)
}

fn row_dot_scalar(row: &[u8], x: &Q8KRow) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(Q4K_BLOCK_BYTES).enumerate() {
        let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let dmin = f16::from_le_bytes([blk[2], blk[3]]).to_f32();
        let (sc, m) = scales_mins(&blk[4..16]);
        let qs = &blk[16..];
        let xs = &x.qs[b * QK..(b + 1) * QK];
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..8 {
            // Sub-blocks 2p and 2p+1 are the low and high nibbles of the
            // same 32 bytes.
            let bytes = &qs[(j / 2) * 32..(j / 2) * 32 + 32];
            let shift = if j % 2 == 0 { 0 } else { 4 };
            let dot: i32 = bytes
                .iter()
                .zip(&xs[j * SUB..(j + 1) * SUB])
                .map(|(&q, &v)| ((q >> shift) & 0x0F) as i32 * v as i32)
                .sum();
            isum += sc[j] as i32 * dot;
            msum += m[j] as i32 * x.sums[b * 8 + j];
        }
        sum += x.scales[b] * (d * isum as f32 - dmin * msum as f32);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::simd::{f16_at, hsum};
    use super::{scales_mins, Q8KRow, Q4K_BLOCK_BYTES, QK};
    use std::arch::x86_64::*;

    /// Shuffle indices that broadcast i16 lane `j` of a 128-bit half to all
    /// 8 lanes of both halves.
    const fn pick(j: u8) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            out[i] = if i % 2 == 0 { 2 * j } else { 2 * j + 1 };
            i += 1;
        }
        out
    }
    const PICK: [[u8; 32]; 8] = [
        pick(0),
        pick(1),
        pick(2),
        pick(3),
        pick(4),
        pick(5),
        pick(6),
        pick(7),
    ];

    const DIST: usize = 2048;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn row_dot(row: &[u8], x: &Q8KRow) -> f32 {
        let nb = row.len() / Q4K_BLOCK_BYTES;
        let low = _mm256_set1_epi8(0x0F);
        let mut acc = _mm256_setzero_ps();
        let mut macc = _mm256_setzero_ps();
        let base = row.as_ptr();
        for b in 0..nb {
            let blk = base.add(b * Q4K_BLOCK_BYTES);
            // One sequential stream per thread, prefetched DIST bytes ahead:
            // a block spans up to 3 cache lines, so one hint per line
            // (one per block left ~40% of the time stalled on loads here).
            // Hints only: past the end they touch nothing.
            for line in 0..3 {
                let ahead = blk.wrapping_add(DIST + 64 * line);
                _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
            }
            let dx = *x.scales.get_unchecked(b);
            let d = f16_at(blk) * dx;
            let dmin = f16_at(blk.add(2)) * dx;
            let (sc, m) = scales_mins(std::slice::from_raw_parts(blk.add(4), 12));
            // Mins term, 8 sub-blocks at once: Σ m[j] · (Σx)_j.
            let m32 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(m.as_ptr() as *const __m128i));
            let s32 = _mm256_loadu_si256(x.sums.as_ptr().add(b * 8) as *const __m256i);
            let ms = _mm256_cvtepi32_ps(_mm256_mullo_epi32(m32, s32));
            macc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), ms, macc);
            // The 8 scales as i16, in both halves, broadcast per sub-block
            // by one shuffle each.
            let sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(
                sc.as_ptr() as *const __m128i
            )));
            let qs = blk.add(16);
            let xq = x.qs.as_ptr().add(b * QK);
            let mut isum = _mm256_setzero_si256();
            for p in 0..4 {
                let q = _mm256_loadu_si256(qs.add(32 * p) as *const __m256i);
                let lo = _mm256_and_si256(q, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
                let xl = _mm256_loadu_si256(xq.add(64 * p) as *const __m256i);
                let xh = _mm256_loadu_si256(xq.add(64 * p + 32) as *const __m256i);
                let sl = _mm256_shuffle_epi8(sc16, load(&PICK[2 * p]));
                let sh = _mm256_shuffle_epi8(sc16, load(&PICK[2 * p + 1]));
                // 4-bit × 8-bit pairs stay far inside i16; the 6-bit scale
                // multiplies in the widening step.
                let pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xl), sl);
                let ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xh), sh);
                isum = _mm256_add_epi32(isum, _mm256_add_epi32(pl, ph));
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
        }
        hsum(_mm256_sub_ps(acc, macc))
    }

    #[target_feature(enable = "avx2")]
    unsafe fn load(v: &[u8; 32]) -> __m256i {
        _mm256_loadu_si256(v.as_ptr() as *const __m256i)
    }
}

/// The AVX2 kernel's arithmetic on 512-bit vectors: one load takes 64
/// bytes of 4-bit values (four sub-blocks), against activations reordered
/// to match ([`Q8KRow::qs_paired`]); the 6-bit scales are picked per
/// 128-bit lane by one byte shuffle. The i32 lane sums are the AVX2
/// kernel's (integer additions in another order), and everything after
/// them is the same code, so the result is the AVX2 kernel's bit for bit.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::simd::{f16_at, hsum};
    use super::{scales_mins, Q8KRow, Q4K_BLOCK_BYTES, QK};
    use std::arch::x86_64::*;

    /// Shuffle indices that broadcast i16 lane `lo` of a 128-bit lane to
    /// the low 256 bits and lane `hi` to the high 256 bits.
    const fn pick(lo: u8, hi: u8) -> [u8; 64] {
        let mut out = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            let j = if i < 32 { lo } else { hi };
            out[i] = 2 * j + (i % 2) as u8;
            i += 1;
        }
        out
    }
    /// Per half of a super-block (`h`): the scales of its low nibbles
    /// (sub-blocks 4h, 4h + 2) and of its high nibbles (4h + 1, 4h + 3).
    const PICK: [[[u8; 64]; 2]; 2] = [[pick(0, 2), pick(1, 3)], [pick(4, 6), pick(5, 7)]];

    const DIST: usize = 2048;

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    pub unsafe fn row_dot(row: &[u8], x: &Q8KRow) -> f32 {
        let nb = row.len() / Q4K_BLOCK_BYTES;
        let low = _mm512_set1_epi8(0x0F);
        let mut acc = _mm256_setzero_ps();
        let mut macc = _mm256_setzero_ps();
        let base = row.as_ptr();
        for b in 0..nb {
            let blk = base.add(b * Q4K_BLOCK_BYTES);
            // As the AVX2 kernel: one hint per 64-byte line, DIST ahead.
            for line in 0..3 {
                let ahead = blk.wrapping_add(DIST + 64 * line);
                _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
            }
            let dx = *x.scales.get_unchecked(b);
            let d = f16_at(blk) * dx;
            let dmin = f16_at(blk.add(2)) * dx;
            let (sc, m) = scales_mins(std::slice::from_raw_parts(blk.add(4), 12));
            let m32 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(m.as_ptr() as *const __m128i));
            let s32 = _mm256_loadu_si256(x.sums.as_ptr().add(b * 8) as *const __m256i);
            let ms = _mm256_cvtepi32_ps(_mm256_mullo_epi32(m32, s32));
            macc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), ms, macc);
            let sc16 = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_loadl_epi64(
                sc.as_ptr() as *const __m128i
            )));
            let qs = blk.add(16);
            let xq = x.qs_paired.as_ptr().add(b * QK);
            let mut isum = _mm512_setzero_si512();
            for (h, pick) in PICK.iter().enumerate() {
                let q = _mm512_loadu_si512(qs.add(64 * h) as *const __m512i);
                let lo = _mm512_and_si512(q, low);
                let hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), low);
                let xl = _mm512_loadu_si512(xq.add(128 * h) as *const __m512i);
                let xh = _mm512_loadu_si512(xq.add(128 * h + 64) as *const __m512i);
                let sl = _mm512_shuffle_epi8(sc16, load(&pick[0]));
                let sh = _mm512_shuffle_epi8(sc16, load(&pick[1]));
                let pl = _mm512_madd_epi16(_mm512_maddubs_epi16(lo, xl), sl);
                let ph = _mm512_madd_epi16(_mm512_maddubs_epi16(hi, xh), sh);
                isum = _mm512_add_epi32(isum, _mm512_add_epi32(pl, ph));
            }
            let isum = _mm256_add_epi32(
                _mm512_castsi512_si256(isum),
                _mm512_extracti64x4_epi64::<1>(isum),
            );
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
        }
        hsum(_mm256_sub_ps(acc, macc))
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn load(v: &[u8; 64]) -> __m512i {
        _mm512_loadu_si512(v.as_ptr() as *const __m512i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{kernels_here, lcg};
    use super::*;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    fn quantized(n: usize, k: usize, seed: &mut u64) -> QTensor {
        let w: Vec<f32> = (0..n * k).map(|_| lcg(seed)).collect();
        let t = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        QTensor::quantize(&t, GgmlDType::Q4K).unwrap()
    }

    fn dense(q: &QTensor) -> Vec<f32> {
        q.dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn exact_against_dequantized_weights_and_quantized_row() {
        for kern in kernels_here("q4k exact_against_dequantized_weights_and_quantized_row") {
            exact_with(kern);
        }
    }

    fn exact_with(kern: Kernel) {
        let mut seed = 3;
        for &(n, k) in &[(1usize, 256usize), (7, 512), (130, 2048)] {
            let q = quantized(n, k, &mut seed);
            let bytes = q.data().unwrap().to_vec();
            let wd = dense(&q);
            let x: Vec<f32> = (0..k).map(|_| 2.0 * lcg(&mut seed)).collect();
            let xq = Q8KRow::new(&x);
            let mut y = vec![0f32; n];
            q4k_gemv_with(kern, &bytes, n, k, &x, &mut y);
            let row_bytes = k / QK * Q4K_BLOCK_BYTES;
            for r in 0..n {
                let want: f64 = (0..k)
                    .map(|i| wd[r * k + i] as f64 * (xq.scales[i / QK] * xq.qs[i] as f32) as f64)
                    .sum();
                let scale: f64 = (0..k).map(|i| (wd[r * k + i] * x[i]).abs() as f64).sum();
                let tol = 1e-5 * (1.0 + scale);
                let scalar = row_dot_scalar(&bytes[r * row_bytes..(r + 1) * row_bytes], &xq);
                assert!(
                    (y[r] as f64 - want).abs() < tol,
                    "{kern:?} n={n} k={k} row {r}: {} vs {want}",
                    y[r]
                );
                assert!(
                    (scalar as f64 - want).abs() < tol,
                    "scalar row {r}: {scalar} vs {want}"
                );
            }
        }
    }

    #[test]
    fn no_less_accurate_than_candles_q4k_product() {
        // Against the exact product of the dequantized weights and the f32
        // row, this kernel's error (8-bit activations) stays within that of
        // candle's own Q4K × Q8K product.
        let (n, k) = (64, 1024);
        let mut seed = 5;
        let q = quantized(n, k, &mut seed);
        let bytes = q.data().unwrap().to_vec();
        let wd = dense(&q);
        let x: Vec<f32> = (0..k).map(|_| lcg(&mut seed)).collect();
        let theirs = QMatMul::from_qtensor(q)
            .unwrap()
            .forward(&Tensor::from_vec(x.clone(), (1, k), &Device::Cpu).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut ours = vec![0f32; n];
        q4k_gemv(&bytes, n, k, &x, &mut ours);
        let (mut e_ours, mut e_theirs) = (0f64, 0f64);
        for r in 0..n {
            let exact: f64 = (0..k).map(|i| wd[r * k + i] as f64 * x[i] as f64).sum();
            e_ours += (ours[r] as f64 - exact).powi(2);
            e_theirs += (theirs[r] as f64 - exact).powi(2);
        }
        assert!(e_ours > 0.0, "8-bit activations cannot be exact");
        assert!(
            e_ours <= 1.5 * e_theirs,
            "rms error {e_ours} vs candle {e_theirs}"
        );
    }

    /// Every SIMD kernel gives the same bits on ragged shapes, with random
    /// block bytes (every scale, min and nibble pattern, f16 scales of both
    /// signs) rather than candle's quantizer output.
    #[test]
    fn kernels_agree_bit_for_bit() {
        let simd: Vec<Kernel> = kernels_here("q4k kernels_agree_bit_for_bit")
            .into_iter()
            .filter(|&k| k != Kernel::Scalar)
            .collect();
        if simd.len() < 2 {
            eprintln!(
                "q4k kernels_agree_bit_for_bit: SKIPPED: fewer than two SIMD kernels run here"
            );
            return;
        }
        let mut seed = 19;
        for &(n, k) in &[(1usize, 256usize), (3, 512), (17, 2048), (5, 11008)] {
            let mut bytes = Vec::with_capacity(n * k / QK * Q4K_BLOCK_BYTES);
            for _ in 0..n * k / QK {
                bytes.extend_from_slice(&f16::from_f32(lcg(&mut seed) * 0.1).to_le_bytes());
                bytes.extend_from_slice(&f16::from_f32(lcg(&mut seed) * 0.1).to_le_bytes());
                bytes.extend(
                    (0..Q4K_BLOCK_BYTES - 4).map(|_| ((lcg(&mut seed) + 0.5) * 256.0) as u8),
                );
            }
            let x: Vec<f32> = (0..k).map(|_| 4.0 * lcg(&mut seed)).collect();
            let outs: Vec<Vec<u32>> = simd
                .iter()
                .map(|&kern| {
                    let mut y = vec![0f32; n];
                    q4k_gemv_with(kern, &bytes, n, k, &x, &mut y);
                    y.iter().map(|v| v.to_bits()).collect()
                })
                .collect();
            for (kern, out) in simd.iter().zip(&outs) {
                assert!(
                    out == &outs[0],
                    "({n}, {k}): {kern:?} differs from {:?}",
                    simd[0]
                );
            }
        }
    }
}
