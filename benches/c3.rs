//! c3's benchmarks at the release geometry with random weights (no
//! download): tokenizer throughput, encoder (one 1000-token chunk → 32
//! latents), decoder prefill of a 32-chunk latent prompt and per-token
//! decode, dense f32 and quantized. Each prints its ratio to this machine's
//! limits (`benches/limits.rs`).
//!
//! `cargo bench --bench c3` runs everything (~30 min on 2 cores, up to ~13 GB
//! of memory for the f32 decoder); filter with e.g. `cargo bench --bench c3 --
//! decode/q8_0`. `cargo bench --bench c3 -- --test` is the CI smoke mode:
//! tiny geometry, each benchmark run once.

mod support;

use c3::model::{KvCache, Quant};
use candle_core::{DType, Device, IndexOp, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::*;

fn limits() -> &'static Limits {
    static L: OnceLock<Limits> = OnceLock::new();
    L.get_or_init(Limits::measure)
}

/// Timings of every iteration criterion ran, for the derived figures.
struct Samples(RefCell<Vec<f64>>);

impl Samples {
    fn new() -> Self {
        Self(RefCell::new(Vec::new()))
    }
    fn time<T>(&self, f: impl FnOnce() -> T) -> (T, Duration) {
        let t = Instant::now();
        let out = f();
        let d = t.elapsed();
        self.0.borrow_mut().push(d.as_secs_f64());
        (out, d)
    }
    fn median(&self) -> f64 {
        median(self.0.borrow().clone())
    }
    fn min(&self) -> f64 {
        self.0.borrow().iter().cloned().fold(f64::NAN, f64::min)
    }
}

fn slow<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    g
}

fn tokenize(c: &mut Criterion) {
    let tok = tokenizer();
    let mut text = read(&corpus());
    if quick() {
        text.truncate(
            text.char_indices()
                .nth(20_000)
                .map_or(text.len(), |(i, _)| i),
        );
    }
    let mut g = c.benchmark_group("tokenize");
    g.throughput(Throughput::Bytes(text.len() as u64))
        .sample_size(10);
    let s = Samples::new();
    let mut n = 0;
    g.bench_function("pride-and-prejudice", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (ids, d) = s.time(|| tok.encode_text(&text).unwrap());
                n = ids.len();
                total += d;
            }
            total
        })
    });
    g.finish();
    let med = s.median();
    println!(
        "tokenize: {:.2} MB in {:.3} s (median) = {:.1} MB/s, {:.0} ktokens/s ({n} tokens)",
        text.len() as f64 / 1e6,
        med,
        text.len() as f64 / 1e6 / med,
        n as f64 / 1e3 / med
    );
}

fn encode(c: &mut Criterion) {
    let lim = limits();
    let (enc, cfg) = encoder();
    let tokens = if quick() { 64 } else { 1000 };
    let ids: Vec<u32> = (0..tokens as u32).map(|i| (i * 7919) % 150_000).collect();
    let seq = tokens + 34;
    let flops = encoder_flops(&cfg, seq);
    let mut g = slow(c, "encode");
    g.throughput(Throughput::Elements(seq as u64));
    let s = Samples::new();
    g.bench_function(format!("{tokens}-token chunk"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (raw, d) = s.time(|| enc.encode_ids(&ids).unwrap());
                assert_eq!(raw.dims(), [32, cfg.hidden_size]);
                total += d;
            }
            total
        })
    });
    g.finish();
    let med = s.median();
    let gf = flops / med / 1e9;
    println!(
        "encode: {seq} positions -> 32 latents: {med:.2} s/chunk median (min {:.2}), {:.0} tokens/s, \
         {gf:.1} GFLOP/s = {:.0}% of the f32 GEMM peak ({:.1})",
        s.min(),
        seq as f64 / med,
        100.0 * gf / lim.gemm_gflops,
        lim.gemm_gflops
    );
}

/// Decoder benchmarks for one weight format: prefill of a 32-chunk latent
/// prompt, then per-token decode steps after it.
fn decode_with(c: &mut Criterion, quant: Option<Quant>) {
    let lim = limits();
    let label = quant.map_or("f32".to_string(), |q| q.to_string());
    let dec = decoder(quant);
    let llm = dec.llm();
    let h = llm.config().hidden_size;
    let blocks = if quick() { 2 } else { 32 };
    let prompt = dec.repeat_prompt(blocks).unwrap();
    let dev = Device::Cpu;
    let lat: Vec<Tensor> = (0..blocks)
        .map(|_| Tensor::rand(-1f32, 1f32, (dec.latent_len(), h), &dev).unwrap())
        .collect();
    let x = dec
        .prompt_embeddings(&prompt, &lat)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let n = prompt.ids.len();
    let prefill = || {
        let mut cache = KvCache::new();
        let h = llm.forward(&x, Some(&mut cache)).unwrap();
        let last = h.i((0, n - 1)).unwrap().unsqueeze(0).unwrap();
        let logits = llm.logits(&last).unwrap();
        (cache, logits)
    };

    // Prefill: the whole prompt through the stack, logits of the last row.
    let flops = 2.0 * (llm.weight_bytes_per_token() as f64 / bytes_per_weight(quant)) * n as f64;
    let mut g = slow(c, &format!("decode/{label}"));
    let s = Samples::new();
    let skip_prefill = std::env::var("C3_BENCH_SKIP_PREFILL").is_ok_and(|v| v == "1");
    if !skip_prefill {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("prefill {n} positions"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += s.time(prefill).1;
                }
                total
            })
        });
        let med = s.median();
        println!(
            "decoder {label}: prefill {n} positions ({blocks} chunks): {med:.2} s median (min {:.2}), \
             {:.0} positions/s, ~{:.1} GFLOP/s (weight products only)",
            s.min(),
            n as f64 / med,
            flops / med / 1e9
        );
    }

    // Decode steps: one token in, logits out, greedy pick, after the prompt.
    let (mut cache, logits) = prefill();
    let mut tok = argmax(&logits);
    let steps = Samples::new();
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("decode step after {n} positions"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (t, d) = steps.time(|| {
                    let e = llm.embed(&[tok]).unwrap().unsqueeze(0).unwrap();
                    let h = llm.forward(&e, Some(&mut cache)).unwrap();
                    argmax(&llm.logits(&h.squeeze(0).unwrap()).unwrap())
                });
                tok = t;
                total += d;
            }
            total
        })
    });
    g.finish();
    let med = steps.median();
    let bytes = llm.weight_bytes_per_token() as f64;
    let bw = bytes / med / 1e9;
    println!(
        "decoder {label}: decode step after {n} positions: {:.1} ms/token median (min {:.1}), \
         reads {:.2} GB of weights/token = {bw:.1} GB/s = {:.0}% of read bandwidth ({:.1} GB/s; \
         bound {:.0} ms/token)",
        med * 1e3,
        steps.min() * 1e3,
        bytes / 1e9,
        100.0 * bw / lim.read_gbs,
        lim.read_gbs,
        bytes / lim.read_gbs / 1e6
    );
}

fn bytes_per_weight(quant: Option<Quant>) -> f64 {
    // Nominal: q8_0 34 B / 32, q4k 144 B / 256 (its rows of 64 fall back to
    // q8_0 only at tiny geometry), f32 4.
    match quant {
        None => 4.0,
        Some(Quant::Q8_0) => 34.0 / 32.0,
        Some(Quant::Q4K) => 144.0 / 256.0,
    }
}

fn argmax(logits: &Tensor) -> u32 {
    let v = logits
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0 as u32
}

fn decode_q8_0(c: &mut Criterion) {
    decode_with(c, Some(Quant::Q8_0));
}

fn decode_q4k(c: &mut Criterion) {
    decode_with(c, Some(Quant::Q4K));
}

fn decode_f32(c: &mut Criterion) {
    decode_with(c, None);
}

criterion_group!(
    benches,
    tokenize,
    encode,
    decode_q8_0,
    decode_q4k,
    decode_f32
);
criterion_main!(benches);
