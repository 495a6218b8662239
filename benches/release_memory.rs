//! Peak resident memory and wall time of the real `c3` commands on a model
//! of the release geometry: writes a random C3 checkpoint in the released
//! layout (bf16, sharded, Qwen2.5-1.5B encoder + Qwen2.5-3B decoder, ~9 GB)
//! to disk, then runs `c3 ingest` on a ~4000-token document (4 chunks in one
//! padded forward, the CPU default; with the default encoder precision, then
//! with `--encoder-precision dense`) and `c3 ask`
//! with each quantized decoder under `/usr/bin/time -v`.
//!
//! Then the same for LCLM: a random checkpoint in LCLM's released layout
//! (F32, Qwen3-0.6B encoder + Qwen3-4B decoder + adapter, ~18.5 GB,
//! written a few layers at a time), `c3 ingest` of the same document and
//! `c3 --decoder-quant q8_0 ask` over it.
//!
//! `cargo bench --bench release_memory` (several minutes; the checkpoints
//! are kept in `C3_BENCH_DIR`, default `target/c3-release-checkpoint`, and
//! `…-lclm`, and reused). Smoke mode (`cargo test --benches`) does the same
//! at a tiny geometry in a temporary directory. `C3_BENCH_FAMILY=c3|lclm`
//! runs one family only.

mod support;
use support::*;

use c3::cascade::c3::checkpoint::add_random_c3_parts;
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
    let family = std::env::var("C3_BENCH_FAMILY").unwrap_or_default();
    if family != "lclm" {
        c3_family(quick, &dir, scratch.path());
    }
    if family != "c3" {
        let mut lclm_dir = dir.clone().into_os_string();
        lclm_dir.push("-lclm");
        lclm_family(quick, Path::new(&lclm_dir), scratch.path());
    }
}

/// A document of about 4000 tokens (a slice of Alice) in `scratch`.
fn document(scratch: &Path) -> PathBuf {
    let doc = scratch.join("chapter.txt");
    let book =
        std::fs::read_to_string(repo().join("tests/fixtures/corpus/alice-in-wonderland.txt"))
            .expect("corpus fixture");
    let cut = book
        .char_indices()
        .nth(4 * 4200)
        .map_or(book.len(), |(i, _)| i);
    std::fs::write(&doc, &book[..cut]).expect("write document");
    doc
}

fn c3_family(quick: bool, dir: &Path, scratch: &Path) {
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
        write_checkpoint(dir, &enc, &dec);
        println!(
            "checkpoint: wrote {} ({:.1} GB) in {:.0} s",
            dir.display(),
            dir_bytes(dir) as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
    }

    let store = scratch.join("store");
    // About 4000 tokens: 4 chunks, which `c3 ingest` encodes in one padded
    // forward on the CPU with a dense encoder (its default --batch there).
    let doc = document(scratch);

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

fn lclm_family(quick: bool, dir: &Path, scratch: &Path) {
    let (mut enc, mut dec) = (lclm_release_encoder_config(), lclm_release_decoder_config());
    if quick {
        for (c, h) in [(&mut enc, 64), (&mut dec, 128)] {
            c.hidden_size = h;
            c.intermediate_size = 2 * h;
            c.num_hidden_layers = 2;
            c.num_attention_heads = 4;
            c.num_key_value_heads = 2;
            c.head_dim = Some(32);
        }
    }
    if dir.join("complete").exists() {
        println!("LCLM checkpoint: reusing {}", dir.display());
    } else {
        let t = std::time::Instant::now();
        write_lclm_checkpoint(dir, &enc, &dec);
        println!(
            "LCLM checkpoint: wrote {} ({:.1} GB) in {:.0} s",
            dir.display(),
            dir_bytes(dir) as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
    }
    let store = scratch.join("lclm-store");
    let doc = document(scratch);
    let args = |extra: &[&str]| -> Vec<String> {
        [
            "--model",
            dir.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    measure(
        "LCLM c3 ingest (default encoder precision, one 1024-token window per chunk)",
        &args(&["ingest", "--json", doc.to_str().unwrap()]),
    );
    measure(
        "LCLM c3 ask --decoder-quant q8_0 (every chunk, 8 new tokens)",
        &args(&[
            "--decoder-quant",
            "q8_0",
            "ask",
            "Who is Alice?",
            "--max-new-tokens",
            "8",
            "--json",
        ]),
    );
}

/// An LCLM checkpoint in the released layout with random F32 weights
/// (encoder tensors without a prefix, decoder under `model.`, lm_head tied),
/// written in shards a few layers at a time so memory holds at most about
/// one shard; `complete` is written last.
fn write_lclm_checkpoint(dir: &Path, enc: &Qwen2Config, dec: &Qwen2Config) {
    let golden = repo().join("tests/fixtures/golden-lclm/lclm-tiny-4x");
    let dev = Device::Cpu;
    for (sub, cfg, prefix) in [("encoder", enc, ""), ("decoder", dec, "model.")] {
        let to = dir.join(sub);
        std::fs::create_dir_all(&to).expect("create checkpoint dir");
        for f in std::fs::read_dir(golden.join(sub)).expect("golden LCLM") {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_str().unwrap().to_string();
            if !name.ends_with(".safetensors") && name != "config.json" {
                std::fs::copy(&f, to.join(&name)).expect("copy fixture");
            }
        }
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(golden.join(sub).join("config.json")).unwrap())
                .unwrap();
        for (k, n) in [
            ("vocab_size", cfg.vocab_size),
            ("hidden_size", cfg.hidden_size),
            ("intermediate_size", cfg.intermediate_size),
            ("num_hidden_layers", cfg.num_hidden_layers),
            ("num_attention_heads", cfg.num_attention_heads),
            ("num_key_value_heads", cfg.num_key_value_heads),
            ("head_dim", cfg.head_dim()),
        ] {
            v[k] = n.into();
        }
        v["layer_types"] = vec!["full_attention"; cfg.num_hidden_layers].into();
        std::fs::write(
            to.join("config.json"),
            serde_json::to_vec_pretty(&v).unwrap(),
        )
        .unwrap();
        let rename = |m: HashMap<String, Tensor>| -> HashMap<String, Tensor> {
            m.into_iter()
                .map(|(k, t)| (format!("{prefix}{}", k.trim_start_matches("model.")), t))
                .collect()
        };
        let groups = std::iter::once(0)
            .map(|_| rename(random_qwen_outer(cfg, DType::F32, &dev).unwrap()))
            .chain(
                (0..cfg.num_hidden_layers)
                    .map(|l| rename(random_qwen_layer(cfg, l, DType::F32, &dev).unwrap())),
            );
        write_shards_streamed(&to, groups);
    }
    std::fs::create_dir_all(dir.join("adapter")).unwrap();
    let adapter = random_lclm_adapter(enc.hidden_size, dec.hidden_size, DType::F32, &dev).unwrap();
    candle_core::safetensors::save(&adapter, dir.join("adapter/adapter.safetensors")).unwrap();
    for f in ["model_config.json", "processor_config.json"] {
        std::fs::copy(golden.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("complete"), b"").unwrap();
}

/// Shards of about `SHARD_BYTES` from groups of tensors made one at a time,
/// plus `model.safetensors.index.json`.
fn write_shards_streamed(dir: &Path, groups: impl Iterator<Item = HashMap<String, Tensor>>) {
    let mut weight_map = serde_json::Map::new();
    let mut files: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut pending: HashMap<String, Tensor> = HashMap::new();
    let mut size = 0;
    let flush = |pending: &mut HashMap<String, Tensor>, files: &mut Vec<(PathBuf, Vec<String>)>| {
        if pending.is_empty() {
            return;
        }
        let tmp = dir.join(format!("shard-{}.tmp", files.len()));
        candle_core::safetensors::save(pending, &tmp).expect("write shard");
        files.push((tmp, pending.keys().cloned().collect()));
        pending.clear();
    };
    for g in groups {
        let bytes: usize = g
            .values()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum();
        if size > 0 && size + bytes > SHARD_BYTES {
            flush(&mut pending, &mut files);
            size = 0;
        }
        size += bytes;
        pending.extend(g);
    }
    flush(&mut pending, &mut files);
    let n = files.len();
    for (i, (tmp, names)) in files.into_iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        std::fs::rename(tmp, dir.join(&file)).unwrap();
        for name in names {
            weight_map.insert(name, file.clone().into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_vec_pretty(&index).unwrap(),
    )
    .unwrap();
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
