//! Q8_0 (GGML layout: per row, blocks of an f16 scale then 32 signed
//! bytes). Four rows share each loaded activation block; scales convert with
//! F16C.
//!
//! Computes / Accuracy / Needs: as the parent module states for Q8_0
//!   (`simd_and_scalar_agree_with_dequantized_product`, 1e-4 relative;
//!   `kernels_agree_bit_for_bit`).

use super::{checked_row_bytes, kernel, quantize_blocks, split_rows, Kernel};
use half::f16;

/// Bytes of one Q8_0 block: f16 scale + 32 quants.
pub const Q8_0_BLOCK_BYTES: usize = 34;
const QK: usize = 32;

/// The activation row quantized the way candle quantizes it for a Q8_0
/// product (scale amax/127 rounded to f16, values rounded to nearest), so
/// both kernels compute the same sums.
pub struct QuantizedRow {
    qs: Vec<i8>,
    scales: Vec<f32>,
    /// Per block, 8 lanes: −128 × the sum of the 4 values lane `i` of
    /// `vpdpbusd` multiplies (values 4i..4i+3), so that the AVX-512 kernel's
    /// `(w + 128) · x` lanes become exactly the AVX2 kernel's `w · x` lanes.
    offsets: Vec<i32>,
}

impl QuantizedRow {
    pub fn new(x: &[f32]) -> Self {
        let (qs, mut scales) = quantize_blocks(x, QK);
        scales
            .iter_mut()
            .for_each(|d| *d = f16::from_f32(*d).to_f32());
        let offsets = qs
            .chunks_exact(4)
            .map(|q| -128 * q.iter().map(|&v| v as i32).sum::<i32>())
            .collect();
        Self {
            qs,
            scales,
            offsets,
        }
    }
}

/// `y[r] = Σ_k W[r, k] x[k]` for the `n` rows of a Q8_0 matrix `w` whose
/// rows hold `k` values (`k` a multiple of 32). `w` is the raw block bytes.
pub fn q8_0_gemv(w: &[u8], n: usize, k: usize, x: &[f32], y: &mut [f32]) {
    q8_0_gemv_with(kernel(), w, n, k, x, y);
}

/// [`q8_0_gemv`] with the given kernel (tests and benchmarks comparing
/// them). Panics where this CPU cannot run it.
pub fn q8_0_gemv_with(kern: Kernel, w: &[u8], n: usize, k: usize, x: &[f32], y: &mut [f32]) {
    assert!(
        kern.runs_here(),
        "{}: this CPU lacks {}",
        kern.name(),
        kern.features()
    );
    let row_bytes = checked_row_bytes("Q8_0", (QK, Q8_0_BLOCK_BYTES), w, n, k, x, y);
    let xq = QuantizedRow::new(x);
    split_rows(w, row_bytes, y, |rows, out| {
        rows_dot(rows, row_bytes, &xq, out, kern)
    });
}

fn rows_dot(w: &[u8], row_bytes: usize, x: &QuantizedRow, out: &mut [f32], kern: Kernel) {
    // SAFETY (both): the caller checked that the CPU has the features the
    // kernel is compiled for, and `w` holds `out.len()` rows of `row_bytes`.
    #[cfg(target_arch = "x86_64")]
    match kern {
        Kernel::Avx2 => return unsafe { avx2::rows_dot(w, row_bytes, x, out) },
        Kernel::Avx512 => return unsafe { avx512::rows_dot(w, row_bytes, x, out) },
        Kernel::Scalar => {}
    }
    let _ = kern;
    for (r, o) in out.iter_mut().enumerate() {
        *o = row_dot_scalar(&w[r * row_bytes..(r + 1) * row_bytes], x);
    }
}

fn row_dot_scalar(row: &[u8], x: &QuantizedRow) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(Q8_0_BLOCK_BYTES).enumerate() {
        let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let xs = &x.qs[b * QK..(b + 1) * QK];
        let dot: i32 = blk[2..]
            .iter()
            .zip(xs)
            .map(|(&w, &v)| (w as i8) as i32 * v as i32)
            .sum();
        sum += d * x.scales[b] * dot as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::simd::{f16_at, hsum};
    use super::{row_dot_scalar, QuantizedRow, Q8_0_BLOCK_BYTES, QK};
    use std::arch::x86_64::*;

    /// 8 lane sums of products of 32 signed bytes: the sign of `w` moves onto
    /// `x` so `maddubs` (unsigned × signed) cannot overflow.
    #[target_feature(enable = "avx2")]
    unsafe fn dot32(w: __m256i, x: __m256i) -> __m256i {
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
        _mm256_madd_epi16(p, _mm256_set1_epi16(1))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows_dot(w: &[u8], row_bytes: usize, x: &QuantizedRow, out: &mut [f32]) {
        let nb = row_bytes / Q8_0_BLOCK_BYTES;
        let xq = x.qs.as_ptr();
        let xd = x.scales.as_ptr();
        let base = w.as_ptr();
        let quads = out.len() / 4;
        for g in 0..quads {
            let r0 = base.add(4 * g * row_bytes);
            let rows = [
                r0,
                r0.add(row_bytes),
                r0.add(2 * row_bytes),
                r0.add(3 * row_bytes),
            ];
            let mut acc = [_mm256_setzero_ps(); 4];
            for b in 0..nb {
                // Prefetch the same block of the next four rows: the four
                // concurrent row streams defeat the hardware prefetcher
                // (9-12 GB/s without, 20-24 GB/s with, on cold matrices
                // here; a fixed 1 KiB look-ahead left each new row's start
                // cold). A hint only: past the end it touches nothing.
                for r in rows {
                    let ahead = r.wrapping_add(b * Q8_0_BLOCK_BYTES + 4 * row_bytes);
                    _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                }
                let xv = _mm256_loadu_si256(xq.add(b * QK) as *const __m256i);
                let dx = *xd.add(b);
                for r in 0..4 {
                    let blk = rows[r].add(b * Q8_0_BLOCK_BYTES);
                    let wv = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                    let s = _mm256_cvtepi32_ps(dot32(wv, xv));
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(blk) * dx), s, acc[r]);
                }
            }
            for r in 0..4 {
                out[4 * g + r] = hsum(acc[r]);
            }
        }
        for r in 4 * quads..out.len() {
            out[r] = row_dot_scalar(&w[r * row_bytes..(r + 1) * row_bytes], x);
        }
    }
}

/// The same sums with AVX-512 VNNI: `vpdpbusd` multiplies unsigned by
/// signed bytes, so the weights are flipped to `w + 128` (one xor) and each
/// lane starts from −128 × its four activations' sum
/// ([`QuantizedRow::offsets`]): lane `i` then holds exactly the AVX2
/// kernel's lane `i` (Σ w·x over values 4i..4i+3), and the scale product,
/// conversion and FMA that follow are the same operations, so the result is
/// the AVX2 kernel's bit for bit. 256-bit vectors: a block's 32 quants are
/// one load (two blocks are not contiguous), and Zen 4 runs a 512-bit
/// operation as two 256-bit halves anyway.
///
/// One row at a time, unlike the AVX2 kernel's four: on Zen 4 four row
/// streams per core (with the next four rows prefetched) read 1 GiB of
/// Q8_0 at 52–60% of a plain read's speed, one sequential stream per core
/// at 76–91% (`cargo bench --bench limits`, in turns, loaded machine). The
/// activation block is reloaded per row, from L1.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::simd::hsum;
    use super::{row_dot_scalar, QuantizedRow, Q8_0_BLOCK_BYTES, QK};
    use std::arch::x86_64::*;

    /// Hint distance ahead of the block being read: 256 to 512 bytes
    /// measured best; none at all was as good within the noise.
    const DIST: usize = 256;

    /// Each row in turn; the last `n % 4` rows by the scalar reference, as
    /// in the AVX2 kernel (so the two give the same bits).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn rows_dot(w: &[u8], row_bytes: usize, x: &QuantizedRow, out: &mut [f32]) {
        let simd_rows = out.len() / 4 * 4;
        for (r, o) in out.iter_mut().enumerate() {
            let row = &w[r * row_bytes..(r + 1) * row_bytes];
            *o = match r < simd_rows {
                true => row_dot(row, x),
                false => row_dot_scalar(row, x),
            };
        }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn row_dot(row: &[u8], x: &QuantizedRow) -> f32 {
        let nb = row.len() / Q8_0_BLOCK_BYTES;
        let flip = _mm256_set1_epi8(-128);
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            let blk = row.as_ptr().add(b * Q8_0_BLOCK_BYTES);
            // A hint only: past the end it touches nothing.
            _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(DIST) as *const i8);
            let xv = _mm256_loadu_si256(x.qs.as_ptr().add(b * QK) as *const __m256i);
            let start = _mm256_loadu_si256(x.offsets.as_ptr().add(b * 8) as *const __m256i);
            let wv = _mm256_xor_si256(_mm256_loadu_si256(blk.add(2) as *const __m256i), flip);
            let dot = _mm256_dpbusd_epi32(start, wv, xv);
            let bits = std::ptr::read_unaligned(blk as *const i16);
            let d = _mm256_mul_ps(
                _mm256_cvtph_ps(_mm_set1_epi16(bits)),
                _mm256_set1_ps(*x.scales.get_unchecked(b)),
            );
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc);
        }
        hsum(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{kernels_here, lcg};
    use super::*;

    /// Quantizes rows the GGML Q8_0 way into raw block bytes.
    fn quantize(w: &[f32], k: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for row in w.chunks_exact(k) {
            let q = QuantizedRow::new(row);
            for b in 0..k / QK {
                out.extend_from_slice(&f16::from_f32(q.scales[b]).to_le_bytes());
                out.extend(q.qs[b * QK..(b + 1) * QK].iter().map(|&v| v as u8));
            }
        }
        out
    }

    #[test]
    fn simd_and_scalar_agree_with_dequantized_product() {
        for kern in kernels_here("q8_0 simd_and_scalar_agree_with_dequantized_product") {
            agree_with_dequantized_product(kern);
        }
    }

    fn agree_with_dequantized_product(kern: Kernel) {
        let mut seed = 7;
        for &(n, k) in &[(1usize, 32usize), (5, 64), (67, 256), (300, 2048)] {
            let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
            let x: Vec<f32> = (0..k).map(|_| 3.0 * lcg(&mut seed)).collect();
            let bytes = quantize(&w, k);
            let mut y = vec![0f32; n];
            q8_0_gemv_with(kern, &bytes, n, k, &x, &mut y);
            // Reference: the dequantized weights times the dequantized row.
            let xq = QuantizedRow::new(&x);
            let row_bytes = k / QK * Q8_0_BLOCK_BYTES;
            for r in 0..n {
                let row = &bytes[r * row_bytes..(r + 1) * row_bytes];
                let mut want = 0f64;
                for (b, blk) in row.chunks_exact(Q8_0_BLOCK_BYTES).enumerate() {
                    let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32() as f64;
                    for i in 0..QK {
                        let wv = d * (blk[2 + i] as i8) as f64;
                        let xv = xq.scales[b] as f64 * xq.qs[b * QK + i] as f64;
                        want += wv * xv;
                    }
                }
                let scalar = row_dot_scalar(row, &xq) as f64;
                let tol = 1e-4 * (1.0 + want.abs());
                assert!(
                    (y[r] as f64 - want).abs() < tol,
                    "{kern:?} n={n} k={k} row {r}: {} vs {want}",
                    y[r]
                );
                assert!((scalar - want).abs() < tol, "scalar row {r}");
            }
        }
    }

    #[test]
    fn equals_candles_q8_0_product() {
        use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
        use candle_core::{Device, Module, Tensor};
        let (n, k) = (203, 512);
        let mut seed = 11;
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..k).map(|_| lcg(&mut seed)).collect();
        let dev = Device::Cpu;
        let qt = QTensor::quantize(&Tensor::from_vec(w, (n, k), &dev).unwrap(), GgmlDType::Q8_0)
            .unwrap();
        let bytes = qt.data().unwrap().to_vec();
        let want = QMatMul::from_qtensor(qt)
            .unwrap()
            .forward(&Tensor::from_vec(x.clone(), (1, k), &dev).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut y = vec![0f32; n];
        q8_0_gemv(&bytes, n, k, &x, &mut y);
        for (r, (a, b)) in y.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "row {r}: {a} vs {b}"
            );
        }
    }

    #[test]
    fn extreme_values_do_not_saturate() {
        // -128 weights and ±127 activations: the largest pair sums maddubs
        // sees, and the largest lane offsets vpdpbusd starts from.
        let k = 64;
        let mut bytes = Vec::new();
        for _ in 0..k / QK {
            bytes.extend_from_slice(&f16::from_f32(1.0).to_le_bytes());
            bytes.extend(std::iter::repeat_n(0x80u8, QK));
        }
        for kern in kernels_here("q8_0 extreme_values_do_not_saturate") {
            for sign in [-1f32, 1.0] {
                let x = vec![127f32 * sign; k];
                let want = -128.0 * 127.0 * sign * k as f32;
                let mut y = [0f32];
                q8_0_gemv_with(kern, &bytes, 1, k, &x, &mut y);
                assert_eq!(y[0], want, "{kern:?}");
                let rows4: Vec<u8> = bytes.repeat(4);
                let mut y4 = [0f32; 4];
                q8_0_gemv_with(kern, &rows4, 4, k, &x, &mut y4);
                assert!(y4.iter().all(|&v| v == want), "{kern:?}: {y4:?}");
            }
        }
    }

    /// Every kernel gives the same bits on ragged shapes (rows not a
    /// multiple of 4, one to many blocks), with full-range quants (−128
    /// included) and scales of both signs and sizes.
    #[test]
    fn kernels_agree_bit_for_bit() {
        let kernels = kernels_here("q8_0 kernels_agree_bit_for_bit");
        let simd: Vec<Kernel> = kernels
            .into_iter()
            .filter(|&k| k != Kernel::Scalar)
            .collect();
        if simd.len() < 2 {
            eprintln!(
                "q8_0 kernels_agree_bit_for_bit: SKIPPED: fewer than two SIMD kernels run here"
            );
            return;
        }
        let mut seed = 13;
        for &(n, k) in &[
            (1usize, 32usize),
            (3, 96),
            (4, 32),
            (7, 640),
            (130, 2048),
            (66, 11008),
        ] {
            let mut bytes = Vec::with_capacity(n * k / QK * Q8_0_BLOCK_BYTES);
            for b in 0..n * k / QK {
                let d = lcg(&mut seed) * 0.05 * (1 + b % 7) as f32;
                bytes.extend_from_slice(&f16::from_f32(d).to_le_bytes());
                bytes.extend((0..QK).map(|t| {
                    if t == b % QK {
                        0x80
                    } else {
                        ((lcg(&mut seed) + 0.5) * 256.0) as i32 as u8
                    }
                }));
            }
            let x: Vec<f32> = (0..k).map(|_| 5.0 * lcg(&mut seed)).collect();
            let outs: Vec<Vec<u32>> = simd
                .iter()
                .map(|&kern| {
                    let mut y = vec![0f32; n];
                    q8_0_gemv_with(kern, &bytes, n, k, &x, &mut y);
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

    /// What one `vpdpbusd` lane does: four unsigned × signed byte products
    /// added to the i32 (no saturation); and the flip-and-offset form the
    /// AVX-512 kernel uses equals the signed products, on edge values.
    fn dpbusd_lane(acc: i32, u: [u8; 4], s: [i8; 4]) -> i32 {
        let p: i32 = u.iter().zip(s).map(|(&a, b)| a as i32 * b as i32).sum();
        acc.wrapping_add(p)
    }

    #[test]
    fn vpdpbusd_matches_the_scalar_lane() {
        if !Kernel::Avx512.runs_here() {
            eprintln!(
                "q8_0 vpdpbusd_matches_the_scalar_lane: SKIPPED: this CPU lacks {}",
                Kernel::Avx512.features()
            );
            return;
        }
        let cases: [([i8; 4], [i8; 4], i32); 5] = [
            ([-128; 4], [-127; 4], 0),
            ([-128; 4], [127; 4], 0),
            ([127; 4], [-127; 4], -7),
            ([0, -1, 1, -128], [-128, 127, -1, 1], i32::MAX),
            ([5, -6, 7, -8], [-9, 10, -11, 12], i32::MIN),
        ];
        for (w, x, acc) in cases {
            let u = w.map(|v| (v as u8) ^ 0x80);
            let offset = -128 * x.iter().map(|&v| v as i32).sum::<i32>();
            let want: i32 = w.iter().zip(x).map(|(&a, b)| a as i32 * b as i32).sum();
            assert_eq!(
                dpbusd_lane(offset, u, x),
                want,
                "flip and offset {w:?} {x:?}"
            );
            // SAFETY: AVX-512 VNNI checked above.
            let got = unsafe { dpbusd_once(acc, u, x) };
            assert_eq!(
                got,
                [dpbusd_lane(acc, u, x); 8],
                "vpdpbusd {w:?} {x:?} from {acc}"
            );
        }
    }

    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn dpbusd_once(acc: i32, u: [u8; 4], s: [i8; 4]) -> [i32; 8] {
        use std::arch::x86_64::*;
        let v = _mm256_dpbusd_epi32(
            _mm256_set1_epi32(acc),
            _mm256_set1_epi32(i32::from_le_bytes(u)),
            _mm256_set1_epi32(i32::from_le_bytes(s.map(|v| v as u8))),
        );
        let mut out = [0i32; 8];
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, v);
        out
    }
}
