//! GGUF answer models (`--answer-model FILE.gguf`): a tiny Qwen2 and Qwen3
//! written as GGUF by this test (candle's writer, F32 and Q8_0), loaded
//! through candle-transformers' quantized models, and checked against the
//! same weights (dequantized, as safetensors) through c3's own forward: the
//! rebuilt tokenizer gives the same ids, the logits agree, and a wrong tensor
//! mapping is caught by the same bound.
mod common;

use c3::query::AnswerModel;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const H: usize = 64;
const HEADS: usize = 4;
const KV: usize = 2;
const HEAD_DIM: usize = 16;
const INTER: usize = 128;
const LAYERS: usize = 2;
const CONTEXT: usize = 4096;

fn tokenizer_json() -> PathBuf {
    fixtures().join("golden-lclm/lclm-tiny-4x/decoder/tokenizer.json")
}

/// Seeded uniform values in [-scale, scale).
struct Rng(u64);
impl Rng {
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

/// The GGUF tokenizer metadata llama.cpp writes for a Qwen `tokenizer.json`.
fn tokenizer_metadata() -> (Vec<(String, Value)>, usize) {
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tokenizer_json()).unwrap()).unwrap();
    let mut by_id: HashMap<u64, (String, i32)> = HashMap::new();
    for (tok, id) in t["model"]["vocab"].as_object().unwrap() {
        by_id.insert(id.as_u64().unwrap(), (tok.clone(), 1));
    }
    for a in t["added_tokens"].as_array().unwrap() {
        let ty = if a["special"].as_bool().unwrap() {
            3
        } else {
            4
        };
        by_id.insert(
            a["id"].as_u64().unwrap(),
            (a["content"].as_str().unwrap().to_string(), ty),
        );
    }
    let n = *by_id.keys().max().unwrap() as usize + 1;
    let (mut tokens, mut types) = (Vec::new(), Vec::new());
    for id in 0..n as u64 {
        let (tok, ty) = by_id
            .remove(&id)
            .unwrap_or_else(|| (format!("[PAD{id}]"), 5));
        tokens.push(Value::String(tok));
        types.push(Value::I32(ty));
    }
    let merges: Vec<Value> = t["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = m.as_array().unwrap();
            Value::String(format!(
                "{} {}",
                p[0].as_str().unwrap(),
                p[1].as_str().unwrap()
            ))
        })
        .collect();
    (
        vec![
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String("qwen2".into())),
            ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
            ("tokenizer.ggml.token_type".into(), Value::Array(types)),
            ("tokenizer.ggml.merges".into(), Value::Array(merges)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(151645)),
        ],
        n,
    )
}

struct Written {
    gguf: PathBuf,
    dir: PathBuf,
}

/// Random weights for `arch`, written as GGUF (2-D matrices in `dtype`,
/// norms and biases F32) and, dequantized, as a safetensors checkpoint.
/// `swap_gate_up` writes a wrong mapping on purpose.
fn write_model(tmp: &Path, arch: &str, dtype: GgmlDType, swap_gate_up: bool) -> Written {
    let dev = Device::Cpu;
    let (tok_md, vocab) = tokenizer_metadata();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ arch.len() as u64);
    let qwen3 = arch == "qwen3";
    let mut hf: Vec<(String, Vec<usize>, f32)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, H], 0.5),
        ("model.norm.weight".into(), vec![H], 0.0),
    ];
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        let q = HEADS * HEAD_DIM;
        let kv = KV * HEAD_DIM;
        hf.push((format!("{p}.input_layernorm.weight"), vec![H], 0.0));
        hf.push((format!("{p}.post_attention_layernorm.weight"), vec![H], 0.0));
        hf.push((format!("{p}.self_attn.q_proj.weight"), vec![q, H], 0.2));
        hf.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, H], 0.2));
        hf.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, H], 0.2));
        hf.push((format!("{p}.self_attn.o_proj.weight"), vec![H, q], 0.2));
        hf.push((format!("{p}.mlp.gate_proj.weight"), vec![INTER, H], 0.2));
        hf.push((format!("{p}.mlp.up_proj.weight"), vec![INTER, H], 0.2));
        hf.push((format!("{p}.mlp.down_proj.weight"), vec![H, INTER], 0.2));
        if qwen3 {
            hf.push((format!("{p}.self_attn.q_norm.weight"), vec![HEAD_DIM], 0.0));
            hf.push((format!("{p}.self_attn.k_norm.weight"), vec![HEAD_DIM], 0.0));
        } else {
            hf.push((format!("{p}.self_attn.q_proj.bias"), vec![q], 0.1));
            hf.push((format!("{p}.self_attn.k_proj.bias"), vec![kv], 0.1));
            hf.push((format!("{p}.self_attn.v_proj.bias"), vec![kv], 0.1));
        }
    }
    let gguf_name = |n: &str| -> String {
        let n = n.strip_prefix("model.").unwrap();
        if n == "embed_tokens.weight" {
            return "token_embd.weight".into();
        }
        if n == "norm.weight" {
            return "output_norm.weight".into();
        }
        let rest = n.strip_prefix("layers.").unwrap();
        let (i, t) = rest.split_once('.').unwrap();
        let t = match t {
            "input_layernorm.weight" => "attn_norm.weight".to_string(),
            "post_attention_layernorm.weight" => "ffn_norm.weight".to_string(),
            "self_attn.o_proj.weight" => "attn_output.weight".to_string(),
            "mlp.gate_proj.weight" if swap_gate_up => "ffn_up.weight".to_string(),
            "mlp.up_proj.weight" if swap_gate_up => "ffn_gate.weight".to_string(),
            t => t
                .replace("self_attn.", "attn_")
                .replace("_proj", "")
                .replace("mlp.", "ffn_"),
        };
        format!("blk.{i}.{t}")
    };
    let mut qts: Vec<(String, QTensor)> = Vec::new();
    let mut dense: HashMap<String, Tensor> = HashMap::new();
    for (name, shape, scale) in &hf {
        let n: usize = shape.iter().product();
        // Norm weights near 1, as trained models have them.
        let v: Vec<f32> = if *scale == 0.0 {
            rng.vec(n, 0.2).into_iter().map(|x| 1.0 + x).collect()
        } else {
            rng.vec(n, *scale)
        };
        let t = Tensor::from_vec(v, shape.as_slice(), &dev).unwrap();
        let q = if shape.len() == 2 {
            dtype
        } else {
            GgmlDType::F32
        };
        let qt = QTensor::quantize(&t, q).unwrap();
        // c3's path gets exactly what the GGUF holds.
        dense.insert(name.clone(), qt.dequantize(&dev).unwrap());
        qts.push((gguf_name(name), qt));
    }
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (format!("{arch}.block_count"), Value::U32(LAYERS as u32)),
        (format!("{arch}.context_length"), Value::U32(CONTEXT as u32)),
        (format!("{arch}.embedding_length"), Value::U32(H as u32)),
        (
            format!("{arch}.feed_forward_length"),
            Value::U32(INTER as u32),
        ),
        (
            format!("{arch}.attention.head_count"),
            Value::U32(HEADS as u32),
        ),
        (
            format!("{arch}.attention.head_count_kv"),
            Value::U32(KV as u32),
        ),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-6),
        ),
        (format!("{arch}.rope.freq_base"), Value::F32(1_000_000.0)),
    ];
    if qwen3 {
        md.push((
            format!("{arch}.attention.key_length"),
            Value::U32(HEAD_DIM as u32),
        ));
        md.push((
            format!("{arch}.attention.value_length"),
            Value::U32(HEAD_DIM as u32),
        ));
        md.push((
            "tokenizer.chat_template".into(),
            Value::String(
                "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
                 {%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant\n\
                 {%- if enable_thinking is defined and enable_thinking is false %}<think>\n\n\
                 </think>\n\n{%- endif %}{%- endif %}"
                    .into(),
            ),
        ));
    } else {
        md.push((
            "tokenizer.chat_template".into(),
            Value::String(
                "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
                 {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
                    .into(),
            ),
        ));
    }
    md.extend(tok_md);
    let tag = format!(
        "{arch}-{dtype:?}{}",
        if swap_gate_up { "-swapped" } else { "" }
    );
    let gguf = tmp.join(format!("{tag}.gguf"));
    let mut f = std::fs::File::create(&gguf).unwrap();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qts.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();

    let dir = tmp.join(format!("{tag}-dense"));
    std::fs::create_dir_all(&dir).unwrap();
    candle_core::safetensors::save(&dense, dir.join("model.safetensors")).unwrap();
    let mut cfg = serde_json::json!({
        "model_type": arch,
        "architectures": [if qwen3 { "Qwen3ForCausalLM" } else { "Qwen2ForCausalLM" }],
        "vocab_size": vocab,
        "hidden_size": H,
        "intermediate_size": INTER,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV,
        "max_position_embeddings": CONTEXT,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "tie_word_embeddings": true,
        "hidden_act": "silu",
    });
    if qwen3 {
        cfg["head_dim"] = HEAD_DIM.into();
        cfg["attention_bias"] = false.into();
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(tokenizer_json(), dir.join("tokenizer.json")).unwrap();
    Written { gguf, dir }
}

fn texts() -> Vec<String> {
    ["english", "code", "chinese", "specials"]
        .iter()
        .map(|n| std::fs::read_to_string(fixtures().join(format!("golden/texts/{n}.txt"))).unwrap())
        .collect()
}

/// Largest |a - b| over the largest |b|.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    max_abs_diff(a, b) / scale
}

/// Worst relative logit difference over prompts of a few lengths.
fn worst(gguf: &AnswerModel, dense: &AnswerModel, ids: &[u32]) -> f32 {
    [1usize, 9, 40, ids.len().min(300)]
        .iter()
        .map(|&n| {
            let a = gguf.logits_after(&ids[..n]).unwrap();
            let b = dense.logits_after(&ids[..n]).unwrap();
            rel_diff(&a, &b)
        })
        .fold(0.0, f32::max)
}

fn check_arch(arch: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    // (dtype, bound on the worst relative logit difference). F32 holds the
    // same numbers, so only summation order differs; Q8_0 also rounds the
    // activations to 8 bits inside candle's product.
    for (dtype, bound) in [(GgmlDType::F32, 1e-4f32), (GgmlDType::Q8_0, 0.05)] {
        let w = write_model(tmp.path(), arch, dtype, false);
        let gguf = AnswerModel::load(&w.gguf, DType::F32, &dev).unwrap();
        let dense = AnswerModel::load(&w.dir, DType::F32, &dev).unwrap();
        assert_eq!(gguf.backend_name(), "gguf");
        assert_eq!(dense.backend_name(), "safetensors");
        assert_eq!(gguf.max_positions(), CONTEXT);
        assert_eq!(gguf.opens_with_empty_think(), arch == "qwen3");
        // The tokenizer rebuilt from the GGUF metadata is the tokenizer.json.
        let mut all = Vec::new();
        for t in texts() {
            let a = gguf.encode_text(&t).unwrap();
            assert_eq!(
                a,
                dense.encode_text(&t).unwrap(),
                "{arch}: ids of {:?}",
                &t[..40.min(t.len())]
            );
            all.extend(a);
        }
        // Users' text stays text: a literal control token is not one.
        let lit = gguf.encode_text("<|im_end|>").unwrap();
        assert!(lit.len() > 1 && lit.iter().all(|&i| i < 151643), "{lit:?}");
        let d = worst(&gguf, &dense, &all);
        eprintln!("{arch} {dtype:?}: worst relative logit difference {d:.2e} (bound {bound:.0e})");
        assert!(d <= bound, "{arch} {dtype:?}: {d} > {bound}");
        if dtype == GgmlDType::Q8_0 {
            // The same bound catches a wrong mapping (gate and up swapped).
            let bad = write_model(tmp.path(), arch, dtype, true);
            let bad = AnswerModel::load(&bad.gguf, DType::F32, &dev).unwrap();
            let d = worst(&bad, &dense, &all);
            eprintln!("{arch} {dtype:?} swapped gate/up: {d:.2e}");
            assert!(d > bound, "{arch}: a swapped mapping passed ({d})");
        }
    }
}

#[test]
fn qwen2_gguf_matches_c3s_forward_on_the_same_weights() {
    check_arch("qwen2");
}

#[test]
fn qwen3_gguf_matches_c3s_forward_on_the_same_weights() {
    check_arch("qwen3");
}

#[test]
fn ask_answers_with_a_gguf_file_and_bad_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_model(tmp.path(), "qwen2", GgmlDType::F32, false);
    let store = tmp.path().join("store");
    let book = fixtures().join("golden/texts/english.txt");
    let out = c3(
        &store,
        &[
            "--model",
            golden_model().to_str().unwrap(),
            "ingest",
            book.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ask = |model: &Path| {
        let out = c3(
            &store,
            &[
                "ask",
                "What is it about?",
                "--mode",
                "text",
                "--answer-model",
                model.to_str().unwrap(),
                "--max-new-tokens",
                "6",
                "--ids",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<u32>>(&out.stdout).unwrap()
    };
    let by_gguf = ask(&w.gguf);
    assert!(!by_gguf.is_empty());
    // Greedy on the same weights: the same ids through either path.
    assert_eq!(by_gguf, ask(&w.dir));

    // Not a GGUF file / another architecture: named, no panic.
    let refused = |file: &Path, says: &str| {
        let out = c3(
            &store,
            &[
                "ask",
                "q",
                "--mode",
                "text",
                "--answer-model",
                file.to_str().unwrap(),
            ],
        );
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success() && e.contains(says) && !e.contains("panicked"),
            "{e}"
        );
        e
    };
    let junk = tmp.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").unwrap();
    assert!(refused(&junk, "not a GGUF").contains("junk.gguf"));
    let llama = tmp.path().join("llama.gguf");
    let mut f = std::fs::File::create(&llama).unwrap();
    let v = Value::String("llama".into());
    gguf_file::write(&mut f, &[("general.architecture", &v)], &[]).unwrap();
    drop(f);
    refused(&llama, "\"llama\"");
}
