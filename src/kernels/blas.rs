//! f32 GEMM through the system OpenBLAS, found at run time.
//!
//! Computes: `y = x · wᵀ` for contiguous f32 CPU tensors `x [m, k]`, `w [n, k]`.
//! Accuracy: within 1e-4 absolute of candle's `matmul` on the tested shapes
//!   (f32 sums in another order), checked by `openblas_product_equals_candles`.
//! Needs: `libopenblas.so.0` at run time; without it (or with `C3_BLAS=off`)
//!   `matmul_nt` returns `None` and candle's product runs.
//! Why: the encoder is GEMM-bound and OpenBLAS's sgemm runs ~10% faster than
//!   the `gemm` crate candle uses (docs/performance.md).
//!
//! The library is opened with `dlopen` on first use instead of being linked, so
//! the same binary builds and runs on a machine without it and simply keeps
//! candle's product there. `C3_BLAS` chooses: unset = look for
//! `libopenblas.so.0`, `off` = never, a path = that library.
//!
//! OpenBLAS runs single-threaded and c3 splits each product's output columns
//! over rayon's pool itself: OpenBLAS's own threads spin after each call and
//! would compete with rayon for the same cores (the fused softmax, SwiGLU and
//! the decode kernels all run on rayon).

use super::cpu_f32::{with_slice, OutPtr};
use candle_core::{DType, Tensor};
use std::sync::OnceLock;

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

type Sgemm = unsafe extern "C" fn(
    order: i32,
    trans_a: i32,
    trans_b: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const f32,
    lda: i32,
    b: *const f32,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
);
type SetThreads = unsafe extern "C" fn(n: i32);

struct Blas {
    sgemm: Sgemm,
    name: String,
    // Keeps the library mapped for as long as `sgemm` may be called.
    _lib: libloading::Library,
}

/// The names tried when `C3_BLAS` is unset.
const DEFAULT_NAMES: &[&str] = &["libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"];

fn load(name: &str) -> Result<Blas, String> {
    // SAFETY: opening a shared library runs its initialisers; OpenBLAS's
    // only set up its buffers and thread pool.
    let lib = unsafe { libloading::Library::new(name) }.map_err(|e| {
        // libloading keeps the loader's own message (which file, why) as
        // the source.
        match std::error::Error::source(&e) {
            Some(why) => format!("{e}: {why}"),
            None => e.to_string(),
        }
    })?;
    // SAFETY: the symbol types match OpenBLAS's cblas.h declarations.
    let sgemm = unsafe { lib.get::<Sgemm>(b"cblas_sgemm\0") }
        .map(|s| *s)
        .map_err(|e| format!("{name}: no cblas_sgemm: {e}"))?;
    // SAFETY: as above; `openblas_set_num_threads` takes the thread count.
    match unsafe { lib.get::<SetThreads>(b"openblas_set_num_threads\0") } {
        Ok(set) => unsafe { set(1) },
        // Another CBLAS without that control would run its own threads
        // beside rayon's: not worth it.
        Err(_) => {
            return Err(format!(
                "{name}: not OpenBLAS (no openblas_set_num_threads)"
            ))
        }
    }
    Ok(Blas {
        sgemm,
        name: name.to_string(),
        _lib: lib,
    })
}

fn blas() -> Option<&'static Blas> {
    static BLAS: OnceLock<Option<Blas>> = OnceLock::new();
    BLAS.get_or_init(|| match std::env::var("C3_BLAS") {
        Ok(v) if matches!(v.as_str(), "off" | "0" | "none" | "builtin") => None,
        Ok(path) if !path.is_empty() => match load(&path) {
            Ok(b) => Some(b),
            Err(e) => {
                // An explicit request that fails is worth saying once.
                crate::note!("c3: C3_BLAS={path} could not be used ({e}); using the built-in GEMM");
                None
            }
        },
        _ => DEFAULT_NAMES.iter().find_map(|n| load(n).ok()),
    })
    .as_ref()
}

/// Which dense f32 product this process uses, for reports and benchmarks.
pub fn backend() -> String {
    match blas() {
        Some(b) => format!("OpenBLAS ({})", b.name),
        None => "built-in (candle's gemm)".to_string(),
    }
}

/// `x [m, k] · w [n, k]ᵀ` when OpenBLAS is available, both are contiguous
/// f32 CPU tensors and the sizes fit its 32-bit indices; `None` leaves the
/// product to candle.
pub fn matmul_nt(x: &Tensor, w: &Tensor) -> Option<candle_core::Result<Tensor>> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return None;
    }
    let (m, k) = x.dims2().ok()?;
    let (n, k2) = w.dims2().ok()?;
    if k != k2 || [m, n, k].iter().any(|&d| d == 0 || d > i32::MAX as usize) {
        return None;
    }
    let blas = blas()?;
    // Not zeroed: with beta = 0 sgemm writes every element without reading
    // it, and zeroing a 74 MB output took the main thread ~10 ms per layer.
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let c = OutPtr(out.as_mut_ptr());
    with_slice(x, |a| {
        with_slice(w, |b| {
            // Output column blocks per thread, a multiple of 16 so each
            // keeps whole microkernel tiles.
            let threads = rayon::current_num_threads().max(1);
            let per = n.div_ceil(threads).div_ceil(16) * 16;
            let blocks: Vec<(usize, usize)> =
                (0..n).step_by(per).map(|j| (j, per.min(n - j))).collect();
            let run = |&(j, cols): &(usize, usize)| {
                // SAFETY: a is m×k and b is n×k row-major; this call reads
                // rows j..j+cols of b and writes columns j..j+cols of the
                // m×n output (ldc = n), which no other block touches; all
                // sizes were checked to fit in i32.
                unsafe {
                    (blas.sgemm)(
                        ROW_MAJOR,
                        NO_TRANS,
                        TRANS,
                        m as i32,
                        cols as i32,
                        k as i32,
                        1.0,
                        a.as_ptr(),
                        k as i32,
                        b.as_ptr().add(j * k),
                        k as i32,
                        0.0,
                        c.at(j),
                        n as i32,
                    )
                }
            };
            if blocks.len() == 1 {
                run(&blocks[0]);
            } else {
                use rayon::prelude::*;
                blocks.par_iter().for_each(run);
            }
        })
    })??;
    // SAFETY: the blocks cover columns 0..n of all m rows, so sgemm wrote
    // all m·n elements above.
    unsafe { out.set_len(m * n) };
    Some(Tensor::from_vec(out, (m, n), x.device()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Odd sizes (not multiples of the tiles or the thread split) against
    /// candle's product. Without the library there is nothing to compare;
    /// `C3_REQUIRE_BLAS=1` (set by CI after installing it) makes that a
    /// failure instead of a skip.
    #[test]
    fn openblas_product_equals_candles() {
        if blas().is_none() {
            assert!(
                std::env::var("C3_REQUIRE_BLAS").as_deref() != Ok("1"),
                "C3_REQUIRE_BLAS=1 but no OpenBLAS could be loaded (C3_BLAS={:?})",
                std::env::var("C3_BLAS").ok()
            );
            crate::note!("no OpenBLAS on this machine: only the built-in product is in use");
            return;
        }
        let dev = Device::Cpu;
        for &(m, n, k) in &[(1, 7, 5), (37, 53, 29), (64, 150, 96), (3, 1000, 17)] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
            let got = matmul_nt(&x, &w).expect("blas takes f32").unwrap();
            let want = x.matmul(&w.t().unwrap()).unwrap();
            let diff = crate::kernels::max_abs_diff(&got, &want);
            assert!(diff < 1e-4, "({m}, {n}, {k}): max diff {diff}");
        }
        // A strided operand is left to candle, never read as if contiguous.
        let x = Tensor::randn(0f32, 1.0, (4, 8), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (6, 9), &dev).unwrap();
        let strided = w.narrow(1, 0, 8).unwrap();
        assert!(matmul_nt(&x, &strided).is_none());
        assert!(matmul_nt(&x.narrow(1, 0, 7).unwrap(), &w.narrow(1, 1, 7).unwrap()).is_none());
    }
}
