//! Q8_0 (GGML layout: per row, blocks of an f16 scale then 32 signed
//! bytes). Four rows share each loaded activation block; scales convert with
//! F16C.
//!
//! Computes / Accuracy / Needs: as the parent module states for Q8_0
//!   (`simd_and_scalar_agree_with_dequantized_product`, 1e-4 relative).

use super::{checked_row_bytes, quantize_blocks, simd_ready, split_rows};
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
}

impl QuantizedRow {
    pub fn new(x: &[f32]) -> Self {
        let (qs, mut scales) = quantize_blocks(x, QK);
        scales
            .iter_mut()
            .for_each(|d| *d = f16::from_f32(*d).to_f32());
        Self { qs, scales }
    }
}

/// `y[r] = Σ_k W[r, k] x[k]` for the `n` rows of a Q8_0 matrix `w` whose
/// rows hold `k` values (`k` a multiple of 32). `w` is the raw block bytes.
pub fn q8_0_gemv(w: &[u8], n: usize, k: usize, x: &[f32], y: &mut [f32]) {
    let row_bytes = checked_row_bytes("Q8_0", (QK, Q8_0_BLOCK_BYTES), w, n, k, x, y);
    let xq = QuantizedRow::new(x);
    let fast = simd_ready();
    split_rows(w, row_bytes, y, |rows, out| {
        rows_dot(rows, row_bytes, &xq, out, fast)
    });
}

fn rows_dot(w: &[u8], row_bytes: usize, x: &QuantizedRow, out: &mut [f32], fast: bool) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: the CPU has the features the kernel is compiled for, and
        // `w` holds `out.len()` rows of `row_bytes` (checked by the caller).
        unsafe { avx2::rows_dot(w, row_bytes, x, out) };
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::super::lcg;
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
        let mut seed = 7;
        for &(n, k) in &[(1usize, 32usize), (5, 64), (67, 256), (300, 2048)] {
            let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
            let x: Vec<f32> = (0..k).map(|_| 3.0 * lcg(&mut seed)).collect();
            let bytes = quantize(&w, k);
            let mut y = vec![0f32; n];
            q8_0_gemv(&bytes, n, k, &x, &mut y);
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
                    "n={n} k={k} row {r}: {} vs {want}",
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
        // -128 weights and ±127 activations: the largest pair sums maddubs sees.
        let k = 64;
        let mut bytes = Vec::new();
        for _ in 0..k / QK {
            bytes.extend_from_slice(&f16::from_f32(1.0).to_le_bytes());
            bytes.extend(std::iter::repeat_n(0x80u8, QK));
        }
        let x = vec![-127f32; k];
        let mut y = [0f32];
        q8_0_gemv(&bytes, 1, k, &x, &mut y);
        assert_eq!(y[0], 128.0 * 127.0 * k as f32);
        let rows4: Vec<u8> = bytes.repeat(4);
        let mut y4 = [0f32; 4];
        q8_0_gemv(&rows4, 4, k, &x, &mut y4);
        assert!(y4.iter().all(|&v| v == 128.0 * 127.0 * k as f32), "{y4:?}");
    }
}
