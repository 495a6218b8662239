//! This machine's physical limits, which every c3 benchmark is measured
//! against: f32 GEMM peak (the product c3 uses: the system OpenBLAS when it
//! has one, candle's kernels otherwise; the practical compute limit),
//! the register-only FMA ceiling, and memory read bandwidth.
//! `cargo bench --bench limits` (`-- --test` for a seconds-long smoke run).

mod support;
use support::*;

fn main() {
    let quick = quick();
    // `C3_LIMITS=q8` runs only the prefill products (for a profile of them).
    if std::env::var("C3_LIMITS").as_deref() == Ok("q8") {
        q8_products(quick);
        return;
    }
    let reps = if quick { 1 } else { 5 };
    println!("threads: {}", threads());
    println!("dense f32 product: {}", c3::kernels::blas::backend());
    println!(
        "fma ceiling (registers only): {:.1} GFLOP/s",
        fma_peak_gflops()
    );
    for (what, gops) in dot_peaks_gops() {
        if gops.is_nan() {
            println!("{what} ceiling (registers only): SKIPPED, this CPU lacks the instruction");
        } else {
            println!("{what} ceiling (registers only): {gops:.1} GOP/s");
        }
    }
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
    i16_products(quick);
    q8_products(quick);
    one_row_products(quick);
    let bytes = if quick { 64 << 20 } else { 1 << 30 };
    println!(
        "memory read bandwidth ({} MiB buffer): {:.1} GB/s",
        bytes >> 20,
        read_bandwidth_gbs(bytes, reps)
    );
}

/// The i16 product (`src/kernels/i16_gemm.rs`) with each kernel this CPU
/// runs (the bf16 one on its own bf16 packing), on the encoders' product
/// shapes (one chunk's 1066 rows; LCLM's 1024-wide encoder too), kernels in
/// turns per repetition; the rate counts 2·m·n·k multiply-adds.
#[cfg(target_arch = "x86_64")]
fn i16_products(quick: bool) {
    use c3::kernels::i16_gemm::{Kernel, PackedWeight};
    let here: Vec<Kernel> = Kernel::ALL.into_iter().filter(|k| k.runs_here()).collect();
    for k in Kernel::ALL.iter().filter(|k| !k.runs_here()) {
        println!(
            "i16 product {}: SKIPPED, this CPU lacks {}",
            k.name(),
            k.features()
        );
    }
    let shapes: &[(&str, usize, usize, usize)] = if quick {
        &[("smoke 70x100x300", 70, 100, 300)]
    } else {
        &[
            ("encoder q/o  1066x1536x1536", 1066, 1536, 1536),
            ("encoder gate_up 1066x17920x1536", 1066, 17920, 1536),
            ("encoder down 1066x1536x8960", 1066, 1536, 8960),
            ("lclm encoder qkv 1024x4096x1024", 1024, 4096, 1024),
            ("lclm encoder gate_up 1024x6144x1024", 1024, 6144, 1024),
            ("lclm encoder down 1024x1024x3072", 1024, 1024, 3072),
        ]
    };
    let reps = if quick { 1 } else { 5 };
    let mut rng = Lcg(1);
    let mut next = move || rng.next_u31() as f32 / (1u64 << 31) as f32 - 0.5;
    for &(what, m, n, k) in shapes {
        let w: Vec<f32> = (0..n * k).map(|_| next() * 0.1).collect();
        let x: Vec<f32> = (0..m * k).map(|_| next()).collect();
        // The i16 kernels share one packing; the bf16 one has its own.
        let packed: Vec<PackedWeight> = here
            .iter()
            .map(|&kn| PackedWeight::pack_for(kn, &w, n, k))
            .collect();
        let mut secs = vec![Vec::new(); here.len()];
        for _ in 0..reps {
            for (i, &kn) in here.iter().enumerate() {
                let t = std::time::Instant::now();
                std::hint::black_box(packed[i].matmul_with(kn, &x, m));
                secs[i].push(t.elapsed().as_secs_f64());
            }
        }
        for (i, kn) in here.iter().enumerate() {
            let med = median(secs[i].clone());
            println!(
                "i16 product {} {what}: {:.1} GOP/s median of {reps} ({:.1} ms)",
                kn.name(),
                2.0 * (m * n * k) as f64 / med / 1e9,
                med * 1e3
            );
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn i16_products(_: bool) {}

/// The prefill's products on Q8_0 weights: the i16 product on the blocks'
/// exact values (15-bit activations, the default) and the 8-bit-activation
/// product (`src/kernels/q8_gemm.rs`, `C3_PREFILL_Q8=1`), in turns per
/// repetition, on the decoders' shapes (the 3B decoder's 1,149-position
/// prefill, the 4B one's 1,040); weights packed per call as the prefill
/// does, so the packing is in the time.
#[cfg(target_arch = "x86_64")]
fn q8_products(quick: bool) {
    use c3::kernels::i16_gemm::{int_kernel, PackedWeight};
    use c3::kernels::q8_gemm::{self, Q8Packed};
    if !q8_gemm::available() {
        println!("q8 product: SKIPPED, this CPU lacks avx512f+avx512bw+avx512vnni");
        return;
    }
    let Some(ik) = int_kernel() else { return };
    let shapes: &[(&str, usize, usize, usize)] = if quick {
        &[("smoke 70x96x320", 70, 96, 320)]
    } else {
        &[
            ("c3 decoder q/o 1149x2048x2048", 1149, 2048, 2048),
            ("c3 decoder gate_up 1149x22016x2048", 1149, 22016, 2048),
            ("c3 decoder down 1149x2048x11008", 1149, 2048, 11008),
            ("lclm decoder gate_up 1040x19456x2560", 1040, 19456, 2560),
            ("lclm decoder down 1040x2560x9728", 1040, 2560, 9728),
        ]
    };
    let reps = if quick { 1 } else { 5 };
    let mut rng = Lcg(5);
    let mut next = move || rng.next_u31();
    for &(what, m, n, k) in shapes {
        let mut q = Vec::with_capacity(n * k / 32 * 34);
        for _ in 0..n * k / 32 {
            let d = half::f16::from_f32((1 + next() % 1000) as f32 * 1e-5);
            q.extend_from_slice(&d.to_le_bytes());
            q.extend((0..32).map(|_| next() as u8));
        }
        let x: Vec<f32> = (0..m * k)
            .map(|_| (next() % 20001) as f32 / 10000.0 - 1.0)
            .collect();
        let (mut t16, mut t8) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = std::time::Instant::now();
            let p = PackedWeight::from_q8_0(&q, n, k);
            std::hint::black_box(p.matmul_with(ik, &x, m));
            t16.push(t.elapsed().as_secs_f64());
            drop(p);
            let t = std::time::Instant::now();
            let p = Q8Packed::from_q8_0(&q, n, k).expect("shape");
            std::hint::black_box(p.matmul(&x, m));
            t8.push(t.elapsed().as_secs_f64());
        }
        let (a, b) = (median(t16), median(t8));
        let rate = |s: f64| 2.0 * (m * n * k) as f64 / s / 1e9;
        println!(
            "q8_0 prefill product {what}: {} {:.1} GOP/s ({:.1} ms), {} {:.1} GOP/s ({:.1} ms), \
             median of {reps} in turns: q8 / i16 time {:.2}",
            ik.name(),
            rate(a),
            a * 1e3,
            q8_gemm::NAME,
            rate(b),
            b * 1e3,
            b / a
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn q8_products(_: bool) {}

/// The one-row products of a decode step (`src/kernels/gemv/`) with each
/// kernel this CPU runs, over a Q8_0 and a Q4_K matrix of 1 GiB (rows of
/// 2048, the 3B decoder's width; far past the caches), in turns with a plain
/// read of the same bytes, so each kernel's GB/s is compared with the read
/// bandwidth of the same minutes.
fn one_row_products(quick: bool) {
    use c3::kernels::gemv::{q4k_gemv_with, q8_0_gemv_with, Kernel};
    for k in Kernel::ALL.iter().filter(|k| !k.runs_here()) {
        println!(
            "one-row product {}: SKIPPED, this CPU lacks {}",
            k.name(),
            k.features()
        );
    }
    let here: Vec<Kernel> = Kernel::ALL
        .into_iter()
        .filter(|k| k.runs_here() && *k != Kernel::Scalar)
        .collect();
    let bytes: usize = if quick { 16 << 20 } else { 1 << 30 };
    let reps = if quick { 1 } else { 5 };
    let k = 2048;
    let x: Vec<f32> = (0..k)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    type Gemv = fn(Kernel, &[u8], usize, usize, &[f32], &mut [f32]);
    let formats: [(&str, usize, Gemv); 2] = [
        ("q8_0", 2048 / 32 * 34, q8_0_gemv_with),
        ("q4k", 2048 / 256 * 144, q4k_gemv_with),
    ];
    for (name, row_bytes, gemv) in formats {
        let n = bytes / row_bytes;
        // Any bytes do for timing, but keep the f16 scales finite: 0x3c00
        // (1.0) at the start of every 2-byte word.
        let w: Vec<u8> = (0..n * row_bytes)
            .map(|i| {
                if i % 2 == 1 {
                    0x3c
                } else {
                    (i * 131 % 251) as u8
                }
            })
            .collect();
        let mut y = vec![0f32; n];
        let mut secs = vec![Vec::new(); here.len() + 1];
        for _ in 0..reps {
            for (i, &kern) in here.iter().enumerate() {
                let t = std::time::Instant::now();
                gemv(kern, &w, n, k, &x, &mut y);
                secs[i].push(t.elapsed().as_secs_f64());
                std::hint::black_box(&y);
            }
            let t = std::time::Instant::now();
            std::hint::black_box(read_bytes(&w));
            secs[here.len()].push(t.elapsed().as_secs_f64());
        }
        let gbs = |s: &[f64]| w.len() as f64 / median(s.to_vec()) / 1e9;
        let read = gbs(&secs[here.len()]);
        for (i, kern) in here.iter().enumerate() {
            println!(
                "one-row product {name} {} ({n}x{k}, {} MiB): {:.1} GB/s median of {reps} = {:.0}% of \
                 the {read:.1} GB/s a plain read of the same bytes took in the same turns",
                kern.name(),
                w.len() >> 20,
                gbs(&secs[i]),
                100.0 * gbs(&secs[i]) / read
            );
        }
    }
}

/// Sums `w` as u64 words over rayon's threads (a plain read at full speed).
fn read_bytes(w: &[u8]) -> u64 {
    use rayon::prelude::*;
    w.par_chunks(1 << 20)
        .map(|c| {
            let mut acc = [0u64; 8];
            for ch in c.chunks_exact(64) {
                for (a, v) in acc.iter_mut().zip(ch.chunks_exact(8)) {
                    *a = a.wrapping_add(u64::from_le_bytes(v.try_into().unwrap()));
                }
            }
            acc.iter().fold(0u64, |s, v| s.wrapping_add(*v))
        })
        .reduce(|| 0, u64::wrapping_add)
}
