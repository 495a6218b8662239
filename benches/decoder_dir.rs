//! c3's q8_0 decoder on a checkpoint directory (`C3_BENCH_WEIGHTS=DIR`, a
//! Qwen2 / Qwen3 `config.json` + safetensors): prefill of `C3_BENCH_POSITIONS`
//! token ids (default 1149), then `C3_BENCH_STEPS` greedy decode steps
//! (default 16), `C3_BENCH_RUNS` times (default 3). It is c3's side of
//! `benches/compare/alternate_decoder.sh`, which writes one random decoder both as
//! that directory and as a q8_0 GGUF for llama.cpp and runs the two in turns
//! (`C3_TURNS`, as `benches/compare/alternate.sh`).
//!
//! Without `C3_BENCH_WEIGHTS`, in smoke mode (`cargo test --benches`), a
//! tiny random Qwen2 is built in memory instead.

mod support;

use c3::model::config::read_qwen_config;
use c3::model::weights::Weights;
use c3::model::{KvCache, Quant, Qwen2};
use candle_core::{DType, Device, IndexOp, Tensor};
use std::time::Instant;
use support::*;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn argmax(logits: &Tensor) -> u32 {
    logits
        .flatten_all()
        .unwrap()
        .argmax(0)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap()
}

fn main() {
    let dev = Device::Cpu;
    let t0 = Instant::now();
    let (llm, label) = match std::env::var_os("C3_BENCH_WEIGHTS") {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            let cfg = read_qwen_config(&dir.join("config.json"), &["qwen2", "qwen3"])
                .unwrap_or_else(|e| panic!("{e}"));
            let w = Weights::open(&dir, DType::F32, &dev).unwrap_or_else(|e| panic!("{e}"));
            let llm = Qwen2::load_quantized(&w, &cfg, &dev, DType::F32, Some(Quant::Q8_0))
                .unwrap_or_else(|e| panic!("{e}"));
            (llm, dir.display().to_string())
        }
        None if quick() => {
            let mut cfg = c3::model::synthetic::release_decoder_config().llm;
            cfg.num_hidden_layers = 1;
            cfg.hidden_size = 256;
            cfg.intermediate_size = 512;
            cfg.num_attention_heads = 4;
            cfg.vocab_size = 1024;
            let w = Weights::from_tensors(
                "random-qwen2",
                c3::model::synthetic::random_qwen2(&cfg, DType::BF16, &dev).unwrap(),
                DType::F32,
            );
            let llm = Qwen2::load_quantized(&w, &cfg, &dev, DType::F32, Some(Quant::Q8_0)).unwrap();
            (llm, "tiny random Qwen2 (smoke mode)".to_string())
        }
        None => panic!("C3_BENCH_WEIGHTS=DIR: a checkpoint directory (benches/compare/alternate_decoder.sh writes one)"),
    };
    let vocab = llm.config().vocab_size;
    println!(
        "c3 q8_0 decoder from {label}, loaded in {:.1?}; one-row kernel {}, prefill products {}",
        t0.elapsed(),
        c3::kernels::gemv::kernel().name(),
        c3::model::quant::prefill_kernel_name()
    );
    let n = if quick() {
        40
    } else {
        env_usize("C3_BENCH_POSITIONS", 1149)
    };
    let steps = if quick() {
        2
    } else {
        env_usize("C3_BENCH_STEPS", 16)
    };
    let runs = if quick() {
        1
    } else {
        env_usize("C3_BENCH_RUNS", 3).max(1)
    };
    let ids: Vec<u32> = (0..n).map(|i| ((i * 7919) % vocab) as u32).collect();
    let turns = Turns::from_env();
    turns.ready();
    let (mut pre, mut step_times) = (Vec::new(), Vec::new());
    for r in 0..runs {
        let _turn = turns.take();
        if r == 0 {
            // Untimed, in the first turn: a short prompt and two steps (as
            // the other side does).
            let mut cache = KvCache::new();
            let x = llm.embed(&ids[..32.min(n)]).unwrap().unsqueeze(0).unwrap();
            llm.forward(&x, Some(&mut cache)).unwrap();
            for &tok in &ids[..2] {
                let e = llm.embed(&[tok]).unwrap().unsqueeze(0).unwrap();
                llm.forward(&e, Some(&mut cache)).unwrap();
            }
        }
        let t = Instant::now();
        let mut cache = KvCache::new();
        let x = llm.embed(&ids).unwrap().unsqueeze(0).unwrap();
        // As the decoders run a prompt: the last layer for the last row only.
        let h = llm.forward_tail(&x, Some(&mut cache), 1).unwrap();
        let mut tok = argmax(
            &llm.logits(&h.i((0, 0)).unwrap().unsqueeze(0).unwrap())
                .unwrap(),
        );
        pre.push(t.elapsed().as_secs_f64());
        let mut times = Vec::new();
        for _ in 0..steps {
            let t = Instant::now();
            let e = llm.embed(&[tok]).unwrap().unsqueeze(0).unwrap();
            let h = llm.forward(&e, Some(&mut cache)).unwrap();
            tok = argmax(&llm.logits(&h.squeeze(0).unwrap()).unwrap());
            times.push(t.elapsed().as_secs_f64());
        }
        println!(
            "c3 run {r}: prefill {n} positions {:.3} s, decode step median {:.1} ms",
            pre[r],
            1e3 * median(times.clone())
        );
        step_times.extend(times);
    }
    let bytes = llm.weight_bytes_per_token() as f64;
    let med = median(step_times.clone());
    println!(
        "c3 q8_0: prefill {n} positions: {:.2} s median (min {:.2}); decode step after {n}: \
         {:.1} ms/token median (min {:.1}), {:.2} GB of weights/token = {:.1} GB/s",
        median(pre.clone()),
        pre.iter().cloned().fold(f64::INFINITY, f64::min),
        1e3 * med,
        1e3 * step_times.iter().cloned().fold(f64::INFINITY, f64::min),
        bytes / 1e9,
        bytes / med / 1e9
    );
}
