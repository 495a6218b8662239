//! `c3 ask` over a whole book at release geometry (Qwen2.5-3B decoder,
//! random weights): time to first token (prefill of every chunk's latent
//! block) and decode tokens/s. Running all 36 layers would take minutes on
//! a small CPU, so it runs 1 and 2 layers and extrapolates linearly in the
//! layer count (the embedding and lm_head part is the intercept).
//! `cargo bench --bench release_ask` (`C3_BENCH_BLOCKS=170` chunks by
//! default; pass `--test` for a quick smoke run at a tiny geometry).

mod support;

use c3::cascade::c3::checkpoint::add_random_c3_parts;
use c3::cascade::c3::C3Decoder;
use c3::generate::GenOptions;
use c3::model::synthetic::*;
use c3::model::weights::Weights;
use c3::tokenize::C3Tokenizer;
use candle_core::{DType, Device, Tensor};
use std::path::Path;
use std::time::Instant;

/// (seconds to first token, seconds per later token) with `layers` layers.
fn run(
    layers: usize,
    blocks: usize,
    new_tokens: usize,
    quick: bool,
) -> anyhow::Result<(f64, f64, usize)> {
    let dev = Device::Cpu;
    let mut cfg = release_decoder_config();
    cfg.llm.num_hidden_layers = layers;
    if quick {
        cfg.llm.hidden_size = 64;
        cfg.llm.intermediate_size = 128;
        cfg.llm.num_attention_heads = 4;
        cfg.contexts_compression_llm_hidden_size = 16;
    }
    let mut t = random_qwen2(&cfg.llm, DType::F32, &dev)?;
    add_random_c3_parts(&mut t, &cfg, DType::F32, &dev)?;
    let w = Weights::from_tensors("random-decoder", t, DType::F32);
    let tok = C3Tokenizer::from_tiktoken_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/c3-tiny/qwen.tiktoken"),
    )?;
    let enc_h = cfg.contexts_compression_llm_hidden_size;
    let dec = C3Decoder::from_weights(&cfg.llm, 32, enc_h, &w, tok)?;
    let prompt = c3::cascade::c3::prompt::latent_prompt(
        dec.tokenizer(),
        blocks,
        32,
        "What happens at the end of the book?",
    )?;
    let lat: Vec<Tensor> = (0..blocks)
        .map(|_| dec.project(&Tensor::rand(-1f32, 1f32, (32, enc_h), &dev)?))
        .collect::<c3::Result<_>>()?;
    let opts = GenOptions {
        max_new_tokens: new_tokens,
        no_repeat_ngram: 0,
        ..GenOptions::default()
    };
    let start = Instant::now();
    let mut first = None;
    let mut n = 0;
    dec.generate(&prompt, &lat, &opts, |_| {
        first.get_or_insert_with(|| start.elapsed().as_secs_f64());
        n += 1;
        true
    })?;
    let total = start.elapsed().as_secs_f64();
    let ttft = first.unwrap_or(total);
    Ok((
        ttft,
        (total - ttft) / (n.max(2) - 1) as f64,
        prompt.ids.len(),
    ))
}

fn main() -> anyhow::Result<()> {
    let quick = support::quick();
    let blocks: usize = std::env::var("C3_BENCH_BLOCKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 4 } else { 170 });
    let new_tokens = if quick { 4 } else { 9 };
    let (f1, s1, len) = run(1, blocks, new_tokens, quick)?;
    println!(
        "1 layer : prompt {len} positions, first token {f1:.2} s, {:.3} s/token",
        s1
    );
    let (f2, s2, _) = run(2, blocks, new_tokens, quick)?;
    println!("2 layers: first token {f2:.2} s, {:.3} s/token", s2);
    let layers = release_decoder_config().llm.num_hidden_layers as f64;
    let f = f1 + (f2 - f1) * (layers - 1.0);
    let s = s1 + (s2 - s1) * (layers - 1.0);
    println!(
        "extrapolated to {layers} layers: first token {f:.0} s, {:.2} tokens/s ({blocks} chunks = {len} positions)",
        1.0 / s
    );
    Ok(())
}
