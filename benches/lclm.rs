//! LCLM at the release geometry with random weights (no download): one
//! 1024-token window through the Qwen3-0.6B encoder (dense f32 and the CPU
//! default, i16), and the Qwen3-4B decoder's q8_0 prefill of a 1k-position
//! prompt and its decode step. These are the two stacks `c3` runs for an
//! LCLM checkpoint (pooling and the adapter are a few MFLOP beside them).
//!
//! `cargo bench --bench lclm` runs all (~5 GB for the q8_0 decoder);
//! `cargo bench --bench lclm -- encode` or `-- decode` one part;
//! `cargo test --benches` is the CI smoke mode (tiny geometry, one run).
//! `C3_TURNS` takes turns with `benches/compare/pytorch_qwen3.py` (see
//! `benches/compare/alternate.sh`).

mod support;

use c3::model::synthetic::{
    lclm_release_decoder_config, lclm_release_encoder_config, random_qwen2,
};
use c3::model::weights::Weights;
use c3::model::{KvCache, Quant, Qwen2};
use candle_core::{DType, IndexOp, Tensor};
use std::time::Instant;
use support::*;

fn wanted(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

fn runs() -> usize {
    if quick() {
        return 1;
    }
    std::env::var("C3_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// The smoke-mode geometry: one layer `hidden` wide, 4 heads of 32.
fn tiny(mut c: c3::model::config::Qwen2Config, hidden: usize) -> c3::model::config::Qwen2Config {
    if quick() {
        c.num_hidden_layers = 1;
        c.hidden_size = hidden;
        c.intermediate_size = 2 * hidden;
        c.num_attention_heads = 4;
        c.num_key_value_heads = 2;
        c.head_dim = Some(32);
    }
    c
}

fn encoder_cfg() -> c3::model::config::Qwen2Config {
    tiny(lclm_release_encoder_config(), 64)
}

fn decoder_cfg() -> c3::model::config::Qwen2Config {
    tiny(lclm_release_decoder_config(), 128)
}

/// Seconds of `runs()` calls of `f`, each reported.
fn time_runs(label: &str, turns: &Turns, mut f: impl FnMut()) -> Vec<f64> {
    (0..runs())
        .map(|r| {
            let _turn = turns.take();
            let t = Instant::now();
            f();
            sync();
            let d = t.elapsed().as_secs_f64();
            eprintln!("{label} run {r}: {d:.2} s");
            d
        })
        .collect()
}

fn encode(precision: &str, quant: Option<Quant>) {
    let name = format!("lclm/encode/{precision}");
    if !wanted(&name) {
        return;
    }
    if quant == Some(Quant::I16) && !c3::model::quant::i16_supported() {
        println!("{name}: skipped, this CPU has no AVX2 (the i16 product needs it)");
        return;
    }
    let cfg = encoder_cfg();
    let dev = bench_device();
    let w = Weights::from_tensors(
        "random-qwen3-encoder",
        random_qwen2(&cfg, DType::F32, &dev).unwrap(),
        DType::F32,
    );
    let llm = Qwen2::load_quantized_body(&w, &cfg, &dev, DType::F32, quant).unwrap();
    drop(w);
    let window = if quick() { 64 } else { 1024 };
    let ids: Vec<u32> = (0..window as u32).map(|i| (i * 7919) % 150_000).collect();
    let x = llm.embed(&ids).unwrap().unsqueeze(0).unwrap();
    let turns = Turns::from_env();
    turns.ready();
    let times = time_runs("encode", &turns, || {
        llm.forward(&x, None).unwrap();
    });
    let med = median(times.clone());
    let flops = encoder_flops(&cfg, window, window);
    let kernel = match quant {
        Some(Quant::I16) => c3::model::quant::i16_kernel_name().unwrap_or("dense"),
        _ => "dense f32",
    };
    println!(
        "{name}: one {window}-token window: {med:.2} s median (min {:.2}), {:.0} tokens/s, \
         {:.1} GFLOP/s, {} latents at 4x; products: {kernel}",
        times.iter().cloned().fold(f64::INFINITY, f64::min),
        window as f64 / med,
        flops / med / 1e9,
        window / 4
    );
}

fn decode_q8_0() {
    let name = "lclm/decode/q8_0";
    if !wanted(name) {
        return;
    }
    let cfg = decoder_cfg();
    let dev = bench_device();
    let t0 = Instant::now();
    // bf16 source weights, quantized one matrix at a time as they load.
    let w = Weights::from_tensors(
        "random-qwen3-decoder",
        random_qwen2(&cfg, DType::BF16, &dev).unwrap(),
        DType::F32,
    );
    let llm = Qwen2::load_quantized(&w, &cfg, &dev, DType::F32, Some(Quant::Q8_0)).unwrap();
    drop(w);
    eprintln!("random q8_0 Qwen3 decoder built in {:.1?}", t0.elapsed());
    // 1k latent positions (256 latents per window at 4x: 4 windows) + frame.
    let n = if quick() { 48 } else { 1040 };
    let x = (Tensor::rand(-1f32, 1f32, (1, n, cfg.hidden_size), &dev).unwrap() * 0.02).unwrap();
    let turns = Turns::from_env();
    let mut filled = None;
    let pre = time_runs("prefill", &turns, || {
        let mut cache = KvCache::new();
        let h = llm.forward_tail(&x, Some(&mut cache), 1).unwrap();
        let logits = llm
            .logits(&h.i((0, 0)).unwrap().unsqueeze(0).unwrap())
            .unwrap();
        filled = Some((cache, logits));
    });
    println!(
        "{name}: prefill {n} positions: {:.2} s median ({:.0} positions/s)",
        median(pre.clone()),
        n as f64 / median(pre)
    );
    let (mut cache, logits) = filled.expect("one prefill ran");
    let mut tok = logits
        .squeeze(0)
        .unwrap()
        .argmax(0)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap();
    let steps = if quick() { 2 } else { 16 };
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        let e = llm.embed(&[tok]).unwrap().unsqueeze(0).unwrap();
        let h = llm.forward(&e, Some(&mut cache)).unwrap();
        tok = llm
            .logits(&h.squeeze(0).unwrap())
            .unwrap()
            .squeeze(0)
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        sync();
        times.push(t.elapsed().as_secs_f64());
    }
    let bytes = llm.weight_bytes_per_token() as f64;
    let med = median(times.clone());
    println!(
        "{name}: decode step after {n} positions: {:.0} ms/token median (min {:.0}), \
         {:.2} GB of weights/token = {:.1} GB/s; one-row kernel {}, prefill products {}",
        med * 1e3,
        times.iter().cloned().fold(f64::INFINITY, f64::min) * 1e3,
        bytes / 1e9,
        bytes / med / 1e9,
        c3::kernels::gemv::kernel().name(),
        c3::model::quant::prefill_kernel_name()
    );
}

fn main() {
    encode("f32", None);
    encode("i16", Some(Quant::I16));
    decode_q8_0();
}
