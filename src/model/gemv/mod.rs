//! One activation row times a quantized matrix: the product every generated
//! token spends its time in. The kernels read candle's GGML blocks in place,
//! so the quantized model is held once and candle's own kernels still serve
//! the many-row prefill.
//!
//! Why not candle's kernels for one row: on this AVX2 machine they convert
//! f16 scales in software per block and leave the memory stream to the
//! hardware prefetcher, which held them to about half of the memory
//! bandwidth (`cargo bench --bench c3 -- decode/q8_0`: 360 ms per token with
//! candle's, 159 ms with these, bound 139 ms). Rows are split over the rayon
//! pool in large contiguous ranges.

mod q4k;
mod q8_0;

pub use q4k::q4k_gemv;
pub use q8_0::q8_0_gemv;

use rayon::prelude::*;

/// Runs `dot(rows, out)` over contiguous row ranges of `w` (rows of
/// `row_bytes`) in parallel: a few ranges per thread so an uneven finish
/// evens out, in multiples of 4 rows for the 4-row kernels.
fn split_rows<F>(w: &[u8], row_bytes: usize, y: &mut [f32], dot: F)
where
    F: Fn(&[u8], &mut [f32]) + Sync,
{
    let threads = rayon::current_num_threads().max(1);
    let per = y.len().div_ceil(threads * 4).next_multiple_of(4).max(64);
    y.par_chunks_mut(per).enumerate().for_each(|(c, out)| {
        let first = c * per;
        dot(&w[first * row_bytes..(first + out.len()) * row_bytes], out);
    });
}

#[cfg(target_arch = "x86_64")]
fn avx2_ready() -> bool {
    use std::sync::OnceLock;
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// Deterministic values in [-0.5, 0.5) for the kernels' tests.
#[cfg(test)]
fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
}
