//! Shared by the benchmark programs: quick mode, this machine's limits
//! (f32 GEMM peak, FMA peak, memory read bandwidth) and models with random
//! weights at the release geometry (or a tiny one in quick mode).
#![allow(dead_code)]

use c3::cascade::c3::checkpoint::add_random_c3_parts;
use c3::cascade::c3::C3Decoder;
use c3::cascade::c3::C3Encoder;
use c3::model::config::Qwen2Config;
use c3::model::synthetic::*;
use c3::model::weights::Weights;
use c3::model::Quant;
use c3::tokenize::C3Tokenizer;
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Smoke mode, for CI: tiny geometry, one run of each benchmark. On under
/// `cargo bench -- --test` (criterion's flag), under `cargo test --benches`
/// (no `--bench` argument: criterion runs each benchmark once), or with
/// `C3_BENCH_QUICK=1`.
pub fn quick() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--test")
        || !args.iter().any(|a| a == "--bench")
        || std::env::var("C3_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn tokenizer() -> C3Tokenizer {
    C3Tokenizer::from_tiktoken_file(&repo().join("tests/fixtures/golden/c3-tiny/qwen.tiktoken"))
        .expect("tokenizer fixture")
}

pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Median of a few timings.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// CPU seconds (user + system) this process has used so far: with other
/// work on the machine, CPU seconds / threads estimates the wall time an
/// idle machine would show (the benchmarks print both).
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

// ---------------------------------------------------------------- limits

/// `x · wᵀ` through the product c3's linear layers use: the system
/// OpenBLAS when this process found one, candle's otherwise.
fn product_nt(x: &Tensor, w: &Tensor) -> Tensor {
    match c3::kernels::blas::matmul_nt(x, w) {
        Some(y) => y.unwrap(),
        None => x.matmul(&w.t().unwrap()).unwrap(),
    }
}

/// Best f32 GEMM rate of the product c3 runs on (see [`product_nt`]) on a
/// large square product, GFLOP/s: the practical compute limit of the encoder.
pub fn gemm_peak_gflops(n: usize, reps: usize) -> f64 {
    gemm_gflops_nt(n, n, n, reps)
}

/// GFLOP/s of `x [m, k] @ w^T` with `w` [n, k] as the checkpoint stores it
/// (the layout `Linear` multiplies), best of `reps`.
pub fn gemm_gflops_nt(m: usize, n: usize, k: usize, reps: usize) -> f64 {
    let dev = Device::Cpu;
    let x = Tensor::rand(-1f32, 1f32, (m, k), &dev).unwrap();
    let w = Tensor::rand(-1f32, 1f32, (n, k), &dev).unwrap();
    let _ = product_nt(&x, &w); // warm-up
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let c = product_nt(&x, &w);
        best = best.min(t.elapsed().as_secs_f64());
        drop(c);
    }
    2.0 * (m * n * k) as f64 / best / 1e9
}

/// A 64-bit linear congruential generator (Knuth's MMIX constants): inputs
/// for the benchmarks, the same on every run.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next 31 high bits.
    pub fn next_u31(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

/// Runs `f` once on each of [`threads`] threads at once, five times:
/// (threads, the shortest wall time).
fn best_on_every_thread(f: impl Fn() + Sync) -> (usize, f64) {
    let n = threads();
    let mut secs = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..n {
                s.spawn(&f);
            }
        });
        secs = secs.min(t.elapsed().as_secs_f64());
    }
    (n, secs)
}

/// Register-only FMA throughput on every core, GFLOP/s: the hardware's f32
/// arithmetic ceiling (no kernel reaches it; the GEMM peak is the practical one).
pub fn fma_peak_gflops() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            const ITERS: u64 = 20_000_000;
            // SAFETY: the features were detected above.
            let (n, secs) = best_on_every_thread(|| unsafe {
                fma_loop(ITERS);
            });
            // 10 chains x 8 lanes x 2 flops per iteration.
            return (n as u64 * ITERS * 10 * 8 * 2) as f64 / secs / 1e9;
        }
    }
    f64::NAN
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let m = _mm256_set1_ps(0.999_999);
    let c = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 10];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut s = _mm256_setzero_ps();
    for a in acc {
        s = _mm256_add_ps(s, a);
    }
    let mut out = [0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    std::hint::black_box(out.iter().sum())
}

/// Register-only throughput of the AVX-512 dot-product instructions on
/// every core, in GOP/s counting a multiply-add as 2 (as the products' rates
/// do): `vpdpwssd` (i16 pairs, the VNNI i16 kernel), `vdpbf16ps` (bf16
/// pairs, PyTorch's bf16 path and c3's bf16 kernel) and `vpdpbusd` (u8·s8
/// quads), each where the CPU has it, else NaN. The ceiling a 16-bit or an
/// 8-bit product can approach, whoever wrote it (docs/performance.md).
pub fn dot_peaks_gops() -> [(&'static str, f64); 3] {
    let mut out = [
        ("vpdpwssd (i16 pairs)", f64::NAN),
        ("vdpbf16ps (bf16 pairs)", f64::NAN),
        ("vpdpbusd (u8*s8 quads)", f64::NAN),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
        let vnni = avx512 && is_x86_feature_detected!("avx512vnni");
        let bf16 = avx512 && is_x86_feature_detected!("avx512bf16");
        // (kind, multiply-adds per instruction, available)
        for (i, (macs, here)) in [(32u64, vnni), (32, bf16), (64, vnni)]
            .into_iter()
            .enumerate()
        {
            if !here {
                continue;
            }
            const ITERS: u64 = 10_000_000;
            // SAFETY: each loop needs only the features checked for it above.
            let (n, secs) = best_on_every_thread(|| unsafe {
                if i == 1 {
                    dot_loop_bf16(ITERS);
                } else {
                    dot_loop_vnni(i == 2, ITERS);
                }
            });
            // 12 chains per iteration.
            out[i].1 = (n as u64 * ITERS * 12 * macs * 2) as f64 / secs / 1e9;
        }
    }
    out
}

// A product's tile: 12 sums, each from one of 3 activation registers and
// one of 4 weight registers. (Zen 4 ran `vpdpwssd` 1.7x as often when every
// instruction read the same one or two registers, which no product does;
// this pattern gives what its kernels can reach.)

/// `vpdpwssd` (`bytes` false) or `vpdpbusd` (true) in the 12-sum pattern.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dot_loop_vnni(bytes: bool, iters: u64) -> i32 {
    use std::arch::x86_64::*;
    // Seven distinct values the compiler cannot see (equal ones would share
    // a register, which runs faster than any product can).
    let v = |x: i16| _mm512_set1_epi16(std::hint::black_box(x));
    let a: [__m512i; 3] = std::array::from_fn(|i| v(3 + i as i16));
    let b: [__m512i; 4] = std::array::from_fn(|i| v(11 + i as i16));
    let mut acc = [_mm512_setzero_si512(); 12];
    for _ in 0..iters {
        for (i, c) in acc.iter_mut().enumerate() {
            let (x, y) = (a[i / 4], b[i % 4]);
            *c = match bytes {
                false => _mm512_dpwssd_epi32(*c, x, y),
                true => _mm512_dpbusd_epi32(*c, x, y),
            };
        }
    }
    let s = acc
        .iter()
        .fold(_mm512_setzero_si512(), |s, &c| _mm512_xor_si512(s, c));
    std::hint::black_box(_mm512_reduce_add_epi32(s))
}

/// `vdpbf16ps` in the same pattern.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dot_loop_bf16(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let bf = |v: f32| {
        let v = _mm512_set1_ps(std::hint::black_box(v));
        _mm512_cvtne2ps_pbh(v, v)
    };
    let a: [__m512bh; 3] = std::array::from_fn(|i| bf(0.5 + i as f32));
    let b: [__m512bh; 4] = std::array::from_fn(|i| bf(8.25 + i as f32));
    let mut acc = [_mm512_setzero_ps(); 12];
    for _ in 0..iters {
        for (i, c) in acc.iter_mut().enumerate() {
            *c = _mm512_dpbf16_ps(*c, a[i / 4], b[i % 4]);
        }
    }
    let s = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, &c| _mm512_add_ps(s, c));
    std::hint::black_box(_mm512_reduce_add_ps(s))
}

/// Memory read bandwidth, GB/s (best pass: the machine is shared, and a
/// limit is the most it gives): every core sums its share of a buffer far
/// larger than the caches; best of `reps` passes.
pub fn read_bandwidth_gbs(bytes: usize, reps: usize) -> f64 {
    let n = bytes / 4;
    let buf: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let threads = threads();
    let per = n.div_ceil(threads);
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let total: f32 = std::thread::scope(|s| {
            let hs: Vec<_> = buf
                .chunks(per)
                .map(|part| s.spawn(move || sum_wide(part)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(total);
    }
    bytes as f64 / best / 1e9
}

fn sum_wide(xs: &[f32]) -> f32 {
    // 32 independent lanes: the compiler vectorises this into wide adds, so
    // the loop is bound by loads, not by the add latency.
    let mut acc = [0f32; 32];
    let chunks = xs.chunks_exact(32);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

pub struct Limits {
    pub gemm_gflops: f64,
    pub read_gbs: f64,
}

impl Limits {
    /// Measured now (a few seconds), or NaN in quick mode. On a busy
    /// machine, pass the figures `cargo bench --bench limits` printed when
    /// it was quiet: `C3_GEMM_PEAK=GFLOP/s C3_READ_GBS=GB/s`.
    pub fn measure() -> Self {
        let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
        if let (Some(g), Some(r)) = (env("C3_GEMM_PEAK"), env("C3_READ_GBS")) {
            eprintln!("limits (given): f32 GEMM peak {g:.1} GFLOP/s, memory read {r:.1} GB/s");
            return Self {
                gemm_gflops: g,
                read_gbs: r,
            };
        }
        if !bench_device().is_cpu() {
            eprintln!(
                "limits: measured for the CPU only; for ratios on {:?}, pass its figures \
                 as C3_GEMM_PEAK=GFLOP/s C3_READ_GBS=GB/s",
                bench_device()
            );
        }
        if quick() || !bench_device().is_cpu() {
            return Self {
                gemm_gflops: f64::NAN,
                read_gbs: f64::NAN,
            };
        }
        let l = Self {
            gemm_gflops: gemm_peak_gflops(2048, 5),
            read_gbs: read_bandwidth_gbs(1 << 30, 5),
        };
        eprintln!(
            "limits: f32 GEMM peak {:.1} GFLOP/s, memory read {:.1} GB/s ({} threads)",
            l.gemm_gflops,
            l.read_gbs,
            threads()
        );
        l
    }
}

// ---------------------------------------------------------------- models

/// Where the models run: `C3_DEVICE` (auto, cpu or cuda; auto is GPU 0 in
/// a `cuda` build with a GPU, else the CPU).
pub fn bench_device() -> Device {
    static DEV: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEV.get_or_init(|| c3::options::DeviceArg::env_device().unwrap_or_else(|e| panic!("{e}")))
        .clone()
}

/// Compute dtype of the dense models: `C3_BENCH_DTYPE` (f32, the default;
/// bf16 or f16 are for GPUs: the CPU has no fast kernels for them).
pub fn bench_dtype() -> DType {
    match std::env::var("C3_BENCH_DTYPE").as_deref() {
        Err(_) | Ok("f32") => DType::F32,
        Ok("bf16") => DType::BF16,
        Ok("f16") => DType::F16,
        Ok(other) => panic!("C3_BENCH_DTYPE=`{other}`: expected f32, bf16 or f16"),
    }
}

/// Waits for the device's queued work, so a timing covers it.
pub fn sync() {
    bench_device().synchronize().expect("device synchronize");
}

/// The encoder geometry: release (Qwen2.5-1.5B) or tiny in quick mode.
pub fn encoder_config() -> Qwen2Config {
    let mut c = release_encoder_config();
    if quick() {
        c.num_hidden_layers = 1;
        c.hidden_size = 64;
        c.intermediate_size = 128;
        c.num_attention_heads = 4;
    }
    c
}

/// Turn-taking with another benchmark process (`benches/compare/alternate.sh`):
/// with `C3_TURNS=FILE` set, [`Turns::ready`] says this side has built its
/// model, and each [`Turns::take`] waits until FILE names this side, whose
/// guard hands the turn to the other side when dropped. The two processes
/// then time their runs one after the other, seconds apart, so both see
/// the same state of a shared host. Without `C3_TURNS` it does nothing.
pub struct Turns(Option<PathBuf>);

pub struct Turn<'a>(&'a Turns);

impl Turns {
    pub fn from_env() -> Self {
        Self(std::env::var_os("C3_TURNS").map(PathBuf::from))
    }

    /// Whether runs take turns with another process (`C3_TURNS` is set).
    pub fn active(&self) -> bool {
        self.0.is_some()
    }

    pub fn ready(&self) {
        if let Some(f) = &self.0 {
            std::fs::write(f.with_extension("c3.ready"), b"").unwrap();
        }
    }

    pub fn take(&self) -> Turn<'_> {
        if let Some(f) = &self.0 {
            while std::fs::read_to_string(f).unwrap_or_default().trim() != "c3" {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(f) = &self.0 .0 {
            std::fs::write(f, b"torch").unwrap();
        }
    }
}

/// Matmul FLOPs an encoder forward over `seq` positions needs: the weight
/// products of every row, and attention over the causal triangle (each
/// query against the keys up to it), except in the last layer, where only
/// the `tail` rows read afterwards (32 queries + </img>) need attention,
/// output projection and MLP; its k/v projections still cover every row.
/// This is the work any implementation must do, so the GFLOP/s it gives is
/// comparable across implementations and cannot exceed what the GEMM does.
pub fn encoder_flops(c: &Qwen2Config, seq: usize, tail: usize) -> f64 {
    let h = c.hidden_size as f64;
    let kv = (c.num_key_value_heads * c.head_dim()) as f64;
    // Qwen3's heads are not hidden / heads wide.
    let q = (c.num_attention_heads * c.head_dim()) as f64;
    let i = c.intermediate_size as f64;
    let s = seq as f64;
    let causal_pairs = |rows: f64| rows * s - rows * (rows - 1.0) / 2.0;
    let q_o_mlp = |rows: f64| 2.0 * rows * (2.0 * h * q + 3.0 * h * i);
    let kv_proj = 2.0 * s * 2.0 * h * kv;
    let attention = |rows: f64| 4.0 * q * causal_pairs(rows);
    let full_layer = q_o_mlp(s) + kv_proj + attention(s);
    let last_layer = q_o_mlp(tail as f64) + kv_proj + attention(tail as f64);
    full_layer * (c.num_hidden_layers - 1) as f64 + last_layer
}

pub fn encoder() -> (C3Encoder, Qwen2Config) {
    let p = encoder_parts();
    (p.encoder, p.config)
}

/// The random encoder with the weights it was built from (to build a
/// quantized twin from the same weights).
pub struct EncoderParts {
    pub encoder: C3Encoder,
    pub config: Qwen2Config,
    pub enc_w: Weights,
    pub dec_w: Weights,
    pub dec_hidden: usize,
}

pub fn encoder_parts() -> EncoderParts {
    encoder_parts_in(None)
}

/// [`encoder_parts`] with the encoder's matrices in `quant`'s format.
pub fn encoder_parts_in(quant: Option<Quant>) -> EncoderParts {
    let dev = bench_device();
    let dtype = bench_dtype();
    let enc_cfg = encoder_config();
    let mut dec_cfg = release_decoder_config();
    if quick() {
        dec_cfg.llm.hidden_size = 64;
        dec_cfg.llm.num_attention_heads = 4;
    }
    dec_cfg.contexts_compression_llm_hidden_size = enc_cfg.hidden_size;
    let t0 = Instant::now();
    let enc_w = Weights::from_tensors(
        "random-encoder",
        random_qwen2(&enc_cfg, dtype, &dev).unwrap(),
        dtype,
    );
    let mut parts = Default::default();
    add_random_c3_parts(&mut parts, &dec_cfg, dtype, &dev).unwrap();
    let dec_w = Weights::from_tensors("random-c3-parts", parts, dtype);
    let enc = C3Encoder::from_weights_quantized(
        &enc_cfg,
        32,
        dec_cfg.llm.hidden_size,
        &enc_w,
        &dec_w,
        tokenizer(),
        quant,
    )
    .unwrap();
    eprintln!(
        "random encoder ({dtype:?}, {} on {dev:?}) built in {:.1?}",
        quant.map_or("dense".to_string(), |q| q.to_string()),
        t0.elapsed()
    );
    EncoderParts {
        encoder: enc,
        config: enc_cfg,
        enc_w,
        dec_w,
        dec_hidden: dec_cfg.llm.hidden_size,
    }
}

/// The decoder, dense f32 or quantized at load. Quantized models are built
/// from bf16 random weights (the release's storage type), so only one f32
/// matrix at a time exists besides the quantized model.
pub fn decoder(quant: Option<Quant>) -> C3Decoder {
    let dev = bench_device();
    let dtype = if quant.is_some() {
        DType::F32
    } else {
        bench_dtype()
    };
    let mut cfg = release_decoder_config();
    if quick() {
        cfg.llm.num_hidden_layers = 1;
        cfg.llm.hidden_size = 256;
        cfg.llm.intermediate_size = 512;
        cfg.llm.num_attention_heads = 4;
        cfg.contexts_compression_llm_hidden_size = 64;
    }
    let src = if quant.is_some() { DType::BF16 } else { dtype };
    let t0 = Instant::now();
    let mut m = random_qwen2(&cfg.llm, src, &dev).unwrap();
    add_random_c3_parts(&mut m, &cfg, src, &dev).unwrap();
    let w = Weights::from_tensors("random-decoder", m, dtype);
    let dec = C3Decoder::from_weights_quantized(
        &cfg.llm,
        cfg.latent_token_len,
        cfg.contexts_compression_llm_hidden_size,
        &w,
        tokenizer(),
        quant,
    )
    .unwrap();
    eprintln!(
        "random decoder ({} on {dev:?}) built in {:.1?}",
        quant.map_or(format!("{dtype:?}"), |q| q.to_string()),
        t0.elapsed()
    );
    dec
}

pub fn corpus() -> PathBuf {
    repo().join("tests/fixtures/corpus/pride-and-prejudice.txt")
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}
