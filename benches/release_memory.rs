//! Peak resident memory and wall time of the real `c3` commands on a model
//! of the release geometry: writes a random C3 checkpoint in the released
//! layout (bf16, sharded, Qwen2.5-1.5B encoder + Qwen2.5-3B decoder, ~9 GB)
//! to disk, then runs `c3 ingest` on a ~4000-token document (4 chunks in one
//! padded forward, the CPU default; with the default encoder precision, then
//! with `--encoder-precision dense`) and `c3 ask`
//! with each quantized decoder under `/usr/bin/time -v`.
//!
//! `cargo bench --bench release_memory` (several minutes; the checkpoint is
//! kept in `C3_BENCH_DIR`, default `target/c3-release-checkpoint`, and
//! reused). Smoke mode (`cargo test --benches`) does the same at a tiny
//! geometry in a temporary directory.

mod support;
use support::*;

use c3::model::config::Qwen2Config;
use c3::model::synthetic::*;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Target size of one safetensors shard (the release is sharded too).
const SHARD_BYTES: usize = 2 << 30;

fn main() {
    let quick = quick();
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = if quick {
        scratch.path().join("model")
    } else {
        std::env::var_os("C3_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target/c3-release-checkpoint"))
    };
    let (enc, mut dec) = (release_encoder_config(), release_decoder_config());
    let enc = if quick {
        dec.llm.hidden_size = 128;
        dec.llm.intermediate_size = 256;
        dec.llm.num_hidden_layers = 2;
        dec.llm.num_attention_heads = 4;
        dec.contexts_compression_llm_hidden_size = 64;
        Qwen2Config {
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            ..enc
        }
    } else {
        enc
    };
    if dir.join("complete").exists() {
        println!("checkpoint: reusing {}", dir.display());
    } else {
        let t = std::time::Instant::now();
        write_checkpoint(&dir, &enc, &dec);
        println!(
            "checkpoint: wrote {} ({:.1} GB) in {:.0} s",
            dir.display(),
            dir_bytes(&dir) as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
    }

    let store = scratch.path().join("store");
    let doc = scratch.path().join("chapter.txt");
    let book =
        std::fs::read_to_string(repo().join("tests/fixtures/corpus/alice-in-wonderland.txt"))
            .expect("corpus fixture");
    // About 4000 tokens: 4 chunks, which `c3 ingest` encodes in one padded
    // forward on the CPU (its default --batch there).
    let cut = book
        .char_indices()
        .nth(4 * 4200)
        .map_or(book.len(), |(i, _)| i);
    std::fs::write(&doc, &book[..cut]).expect("write document");

    let (model, store, doc) = (
        dir.to_str().unwrap(),
        store.to_str().unwrap(),
        doc.to_str().unwrap(),
    );
    let c3 = |args: &[&str]| -> Vec<String> {
        ["--model", model, "--store", store]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    };
    // The default encoder (i16 products where the CPU has AVX2), then the
    // dense f32 one, each into its own store.
    measure(
        "c3 ingest (default encoder precision, 4 chunks in one forward)",
        &c3(&["ingest", "--json", doc]),
    );
    let dense_store = format!("{store}-dense");
    measure(
        "c3 ingest --encoder-precision dense (f32 encoder, 4 chunks in one forward)",
        &[
            "--model",
            model,
            "--store",
            &dense_store,
            "--encoder-precision",
            "dense",
            "ingest",
            "--json",
            doc,
        ]
        .map(str::to_string),
    );
    for quant in ["q8_0", "q4k"] {
        let ask = ["--decoder-quant", quant, "ask", "Who is Alice?"];
        let opts = ["--max-new-tokens", "8", "--json"];
        measure(
            &format!("c3 ask --decoder-quant {quant} (8 new tokens)"),
            &c3(&[&ask[..], &opts[..]].concat()),
        );
    }
}

/// Runs `c3 ARGS` under `/usr/bin/time -v` (plain when that is missing) and
/// prints its peak resident memory and wall time; a failing command fails
/// the benchmark.
fn measure(what: &str, args: &[String]) {
    let exe = env!("CARGO_BIN_EXE_c3");
    let timer = Path::new("/usr/bin/time");
    let out = if timer.exists() {
        Command::new(timer).arg("-v").arg(exe).args(args).output()
    } else {
        Command::new(exe).args(args).output()
    }
    .expect("run c3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed: {}\n{stderr}",
        out.status
    );
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    match (
        field("Maximum resident set size (kbytes):"),
        field("Elapsed (wall clock) time (h:mm:ss or m:ss):"),
    ) {
        (Some(kb), Some(wall)) => {
            let gib = kb.parse::<f64>().unwrap_or(f64::NAN) / (1024.0 * 1024.0);
            println!("{what}: peak RSS {gib:.2} GiB (limit 16 GiB), wall {wall}");
        }
        _ => println!("{what}: ran (no /usr/bin/time here: peak RSS not measured)"),
    }
}

/// A C3 checkpoint directory in the released layout with random bf16
/// weights; `complete` is written last so an interrupted write is redone.
fn write_checkpoint(dir: &Path, enc: &Qwen2Config, dec: &c3::model::config::C3Config) {
    let golden = repo().join("tests/fixtures/golden/c3-tiny");
    std::fs::create_dir_all(dir.join("llm1")).expect("create checkpoint dir");
    for f in ["qwen.tiktoken", "generation_config.json"] {
        std::fs::copy(golden.join(f), dir.join(f)).expect("copy fixture");
    }
    let geometry = |template: &Path, cfg: &Qwen2Config, extra: &[(&str, usize)]| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(template).expect("config template")).unwrap();
        for (k, n) in [
            ("vocab_size", cfg.vocab_size),
            ("hidden_size", cfg.hidden_size),
            ("intermediate_size", cfg.intermediate_size),
            ("num_hidden_layers", cfg.num_hidden_layers),
            ("num_attention_heads", cfg.num_attention_heads),
            ("num_key_value_heads", cfg.num_key_value_heads),
        ]
        .iter()
        .chain(extra)
        {
            v[*k] = (*n).into();
        }
        serde_json::to_vec_pretty(&v).unwrap()
    };
    let extra = [(
        "contexts_compression_llm_hidden_size",
        dec.contexts_compression_llm_hidden_size,
    )];
    std::fs::write(
        dir.join("config.json"),
        geometry(&golden.join("config.json"), &dec.llm, &extra),
    )
    .unwrap();
    std::fs::write(
        dir.join("llm1/config.json"),
        geometry(&golden.join("llm1/config.json"), enc, &[]),
    )
    .unwrap();

    let dev = Device::Cpu;
    let mut tensors = random_qwen2(enc, DType::BF16, &dev).expect("random encoder");
    write_shards(&dir.join("llm1"), tensors);
    tensors = random_qwen2(&dec.llm, DType::BF16, &dev).expect("random decoder");
    add_random_c3_parts(&mut tensors, dec, DType::BF16, &dev).expect("random C3 parts");
    write_shards(dir, tensors);
    std::fs::write(dir.join("complete"), b"").unwrap();
}

/// `model-0000N-of-0000M.safetensors` shards of about `SHARD_BYTES` plus
/// `model.safetensors.index.json`, as the release ships them.
fn write_shards(dir: &Path, tensors: HashMap<String, Tensor>) {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut shards: Vec<Vec<&String>> = vec![vec![]];
    let mut size = 0;
    for name in names {
        let t = &tensors[name];
        let bytes = t.elem_count() * t.dtype().size_in_bytes();
        if size > 0 && size + bytes > SHARD_BYTES {
            shards.push(vec![]);
            size = 0;
        }
        size += bytes;
        shards.last_mut().unwrap().push(name);
    }
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, shards.len());
        let part: HashMap<&str, Tensor> = shard
            .iter()
            .map(|n| (n.as_str(), tensors[*n].clone()))
            .collect();
        candle_core::safetensors::save(&part, dir.join(&file)).expect("write shard");
        for n in shard {
            weight_map.insert(n.to_string(), file.clone().into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
