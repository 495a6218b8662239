//! This machine's physical limits, which every c3 benchmark is measured
//! against: f32 GEMM peak (the product c3 uses: the system OpenBLAS when it
//! has one, candle's kernels otherwise; the practical compute limit),
//! the register-only FMA ceiling, and memory read bandwidth.
//! `cargo bench --bench limits` (`-- --test` for a seconds-long smoke run).

mod support;
use support::*;

fn main() {
    let quick = quick();
    let reps = if quick { 1 } else { 5 };
    println!("threads: {}", threads());
    println!("dense f32 product: {}", c3::model::blas::backend());
    println!(
        "fma ceiling (registers only): {:.1} GFLOP/s",
        fma_peak_gflops()
    );
    let n = if quick { 256 } else { 2048 };
    println!(
        "f32 GEMM peak ({n}x{n}x{n}): {:.1} GFLOP/s",
        gemm_peak_gflops(n, reps)
    );
    if !quick {
        // The encoder's own products, weights in checkpoint layout [out, in].
        for (what, m, nn, k) in [
            ("encoder q/o  1034x1536x1536", 1034, 1536, 1536),
            ("encoder gate/up 1034x8960x1536", 1034, 8960, 1536),
            ("encoder down 1034x1536x8960", 1034, 1536, 8960),
        ] {
            println!(
                "f32 GEMM {what} (x @ W^T): {:.1} GFLOP/s",
                gemm_gflops_nt(m, nn, k, 3)
            );
        }
    }
    let bytes = if quick { 64 << 20 } else { 1 << 30 };
    println!(
        "memory read bandwidth ({} MiB buffer): {:.1} GB/s",
        bytes >> 20,
        read_bandwidth_gbs(bytes, reps)
    );
}
