//! Optional f32 GEMM through the system OpenBLAS (`--features openblas`):
//! the encoder is GEMM-bound, and OpenBLAS's sgemm runs faster here than
//! the `gemm` crate candle uses on CPU (README, Performance). Only the dense
//! `x · Wᵀ` products of the linear layers go through it; everything else
//! stays in candle.

use super::cpu_f32::contiguous_f32;
use candle_core::{DType, Storage, Tensor};

#[allow(non_camel_case_types)]
type blasint = i32;
const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

#[link(name = "openblas")]
extern "C" {
    fn cblas_sgemm(
        order: i32,
        trans_a: i32,
        trans_b: i32,
        m: blasint,
        n: blasint,
        k: blasint,
        alpha: f32,
        a: *const f32,
        lda: blasint,
        b: *const f32,
        ldb: blasint,
        beta: f32,
        c: *mut f32,
        ldc: blasint,
    );
}

/// A contiguous f32 CPU tensor's values, or `None`.
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return None;
    };
    contiguous_f32("blas", cpu, layout).ok().map(f)
}

/// `x [m, k] · w [n, k]ᵀ` when both are contiguous f32 CPU tensors and the
/// sizes fit OpenBLAS's 32-bit indices; `None` leaves the product to candle.
pub fn matmul_nt(x: &Tensor, w: &Tensor) -> Option<candle_core::Result<Tensor>> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return None;
    }
    let (m, k) = x.dims2().ok()?;
    let (n, k2) = w.dims2().ok()?;
    if k != k2 || [m, n, k].iter().any(|&d| d == 0 || d > i32::MAX as usize) {
        return None;
    }
    let mut out = vec![0f32; m * n];
    with_slice(x, |a| {
        with_slice(w, |b| {
            // SAFETY: a is m×k, b is n×k, out is m×n, all row-major and
            // exactly that long; the sizes were checked to fit in i32.
            unsafe {
                cblas_sgemm(
                    ROW_MAJOR,
                    NO_TRANS,
                    TRANS,
                    m as blasint,
                    n as blasint,
                    k as blasint,
                    1.0,
                    a.as_ptr(),
                    k as blasint,
                    b.as_ptr(),
                    k as blasint,
                    0.0,
                    out.as_mut_ptr(),
                    n as blasint,
                )
            }
        })
    })??;
    Some(Tensor::from_vec(out, (m, n), x.device()))
}
