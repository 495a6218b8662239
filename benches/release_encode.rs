//! One 1000-token chunk through a random encoder at release geometry
//! (Qwen2.5-1.5B): seconds per chunk, tokens/s and achieved GFLOP/s.
//! `cargo bench --bench release_encode` (pass `--test` for a quick smoke run
//! at a tiny geometry).

use c3::encode::C3Encoder;
use c3::model::synthetic::*;
use c3::model::weights::Weights;
use c3::tokenize::C3Tokenizer;
use candle_core::{DType, Device};
use std::path::Path;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--test");
    let dev = Device::Cpu;
    let mut enc_cfg = release_encoder_config();
    let mut dec_cfg = release_decoder_config();
    let tokens = if quick { 64 } else { 1000 };
    if quick {
        enc_cfg.num_hidden_layers = 1;
        enc_cfg.hidden_size = 64;
        enc_cfg.intermediate_size = 128;
        enc_cfg.num_attention_heads = 4;
        dec_cfg.contexts_compression_llm_hidden_size = 64;
    }
    let t0 = Instant::now();
    let enc_w = Weights::from_tensors(
        "random-encoder",
        random_qwen2(&enc_cfg, DType::F32, &dev)?,
        DType::F32,
    );
    let mut parts = Default::default();
    add_random_c3_parts(&mut parts, &dec_cfg, DType::F32, &dev)?;
    let dec_w = Weights::from_tensors("random-c3-parts", parts, DType::F32);
    let tok = C3Tokenizer::from_tiktoken_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/c3-tiny/qwen.tiktoken"),
    )?;
    let enc = C3Encoder::from_weights(&enc_cfg, 32, dec_cfg.llm.hidden_size, &enc_w, &dec_w, tok)?;
    eprintln!("built random weights in {:.1?}", t0.elapsed());

    let ids: Vec<u32> = (0..tokens as u32).map(|i| (i * 7919) % 150_000).collect();
    let seq = tokens + 34;
    // Matmul FLOPs per position: 2 * (q,k,v,o + MLP) weights, plus attention scores and values.
    let h = enc_cfg.hidden_size as f64;
    let kv = (enc_cfg.num_key_value_heads * enc_cfg.head_dim()) as f64;
    let i = enc_cfg.intermediate_size as f64;
    let per_layer = 2.0 * seq as f64 * (2.0 * h * h + 2.0 * h * kv + 3.0 * h * i)
        + 2.0 * 2.0 * (seq * seq) as f64 * h;
    let flops = per_layer * enc_cfg.num_hidden_layers as f64;
    for run in 0..if quick { 1 } else { 2 } {
        let t = Instant::now();
        let raw = enc.encode_ids(&ids)?;
        let s = t.elapsed().as_secs_f64();
        assert_eq!(raw.dims(), [32, enc_cfg.hidden_size]);
        println!(
            "encode run {run}: {tokens} tokens -> 32 latents in {s:.2} s ({:.0} tokens/s, {:.1} GFLOP/s)",
            seq as f64 / s,
            flops / s / 1e9
        );
    }
    Ok(())
}
