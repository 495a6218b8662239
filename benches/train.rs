//! `c3 train`'s measurements (no timing here: speed is measured by running
//! `c3 train` itself against `benches/compare/pytorch_train.py`, see
//! docs/training.md "Measuring"):
//!
//! - `plan`: `--dry-run`'s memory plan at the release geometry for each
//!   `--train` choice, CPU f32 and one GPU in bf16 (80 GB / 141 GB).
//! - `vanish`: of the first full-lr AdamW update at lr 1e-5 on the tiny
//!   golden model, how many elements are lost when the result is rounded to
//!   bf16 (the release's dtype).
//! - `model --geometry tiny|mid --out DIR`: a random checkpoint in the
//!   released layout (bf16, the real vocabulary) for the speed comparison.
//! - `records --text FILE --chunk-tokens N --out FILE.jsonl [--ids FILE]
//!   [--limit N]`: reconstruction records of a text's chunks, and the same
//!   examples as ids and labels (what the PyTorch script reads).
//!
//! `cargo bench --bench train -- plan` (etc.); with no command (or under
//! `cargo test --benches`) it runs `plan` and `vanish` and writes a tiny
//! model and records to a temporary directory: the smoke mode.

use c3::cascade::c3::C3Checkpoint;
use c3::model::config::Qwen2Config;
use c3::model::synthetic::{release_decoder_config, release_encoder_config};
use c3::train::data::Dataset;
use c3::train::example::Example;
use c3::train::load::{load_checkpoint, LoraConfig, Selection};
use c3::train::model::PassOptions;
use c3::train::optim::{AdamConfig, AdamW, Schedule};
use c3::train::params::Part;
use c3::train::plan::{gib, memory, PlanInput};
use c3::train::records::read_file;
use c3::train::rng::Rng;
use c3::train::sources::{chunk_records, text_chunks, Mix};
use c3::train::st_write::{self, Entry, Payload};
use c3::train::step::{accumulate, apply, StepLr};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("plan") => plan(),
        Some("vanish") => vanish(),
        Some("model") => {
            let g = arg(&args, "--geometry").unwrap_or_else(|| "mid".into());
            let out = PathBuf::from(arg(&args, "--out").expect("--out DIR"));
            write_model(&g, &out);
            println!("wrote {}", out.display());
        }
        Some("records") => {
            let text = PathBuf::from(arg(&args, "--text").expect("--text FILE"));
            let n: usize =
                arg(&args, "--chunk-tokens").map_or(64, |v| v.parse().expect("a number"));
            let out = PathBuf::from(arg(&args, "--out").expect("--out FILE.jsonl"));
            let limit = arg(&args, "--limit").map(|v| v.parse().expect("a number"));
            let ids = arg(&args, "--ids").map(PathBuf::from);
            let count = write_records(&text, n, &out, ids.as_deref(), limit);
            println!("wrote {count} records to {}", out.display());
        }
        _ => {
            // Smoke mode.
            plan();
            vanish();
            let tmp = std::env::temp_dir().join(format!("c3-train-bench-{}", std::process::id()));
            write_model("tiny", &tmp.join("model"));
            let text = repo().join("tests/fixtures/corpus/alice-in-wonderland.txt");
            let n = write_records(
                &text,
                64,
                &tmp.join("r.jsonl"),
                Some(&tmp.join("r.ids.jsonl")),
                Some(8),
            );
            assert_eq!(n, 8);
            C3Checkpoint::open(&tmp.join("model")).expect("the written model opens");
            let _ = std::fs::remove_dir_all(&tmp);
            println!("smoke: ok");
        }
    }
}

/// The release-geometry memory plans, as a Markdown table.
fn plan() {
    let (enc, dec) = (release_encoder_config(), release_decoder_config());
    let lora = LoraConfig {
        rank: 16,
        alpha: 32.0,
        targets: ["q", "k", "v", "o", "gate", "up", "down"]
            .map(String::from)
            .to_vec(),
    };
    let sel = |parts: &[Part], lora: Option<&LoraConfig>| Selection {
        parts: parts.iter().copied().collect(),
        lora: lora.cloned(),
    };
    use Part::*;
    let choices = [
        ("all", sel(&[Encoder, Queries, Projector, Decoder], None)),
        (
            "encoder,queries,projector",
            sel(&[Encoder, Queries, Projector], None),
        ),
        ("queries,projector", sel(&[Queries, Projector], None)),
        ("decoder", sel(&[Decoder], None)),
        (
            "all, --lora-rank 16",
            sel(&[Encoder, Queries, Projector, Decoder], Some(&lora)),
        ),
    ];
    println!("Release geometry (encoder Qwen2.5-1.5B, decoder Qwen2.5-3B), one record of a");
    println!(
        "1000-token context reconstructed (1034 encoder ids, 1066 decoder ids, 1001 targets):\n"
    );
    println!("| --train | device, compute | recompute | weights | gradients | moments | activations | total | 80 GB | 141 GB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, s) in &choices {
        for (device, dtype, pack) in [
            ("CPU, f32", DType::F32, 1),
            ("GPU, bf16, pack 2", DType::BF16, 2),
        ] {
            for recompute in [false, true] {
                let input = PlanInput {
                    encoder: &enc,
                    decoder: &dec.llm,
                    latent_len: 32,
                    sel: s,
                    compute: dtype,
                    pack,
                    enc_len: 1034,
                    dec_len: 1066,
                    label_rows: 1001 * pack,
                    recompute,
                };
                let m = memory(&input, false);
                let fits = |gb: f64| match dtype {
                    DType::F32 => "-",
                    _ if (m.total as f64) <= gb * 1e9 => "fits",
                    _ => "no",
                };
                println!(
                    "| {name} | {device} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    if recompute { "yes" } else { "no" },
                    gib(m.weights),
                    gib(m.gradients),
                    gib(m.moments),
                    gib(m.activations),
                    gib(m.total),
                    fits(80.0),
                    fits(141.0)
                );
            }
        }
    }
    println!();
}

/// How many elements of a full-lr AdamW update at lr 1e-5 vanish when the
/// result is rounded to bf16.
fn vanish() {
    let ckpt = C3Checkpoint::open(&repo().join("tests/fixtures/golden/c3-tiny")).expect("fixture");
    let (mut p, net) =
        load_checkpoint(&ckpt, &Selection::all(), DType::F32, &Device::Cpu, 0).expect("load");
    let recs =
        read_file(&repo().join("tests/fixtures/golden-train/records.json")).expect("records");
    let tok = ckpt.tokenizer().expect("tokenizer");
    let ex: Vec<Example> = recs
        .iter()
        .map(|(_, r)| c3::train::example::build(&tok, 32, r).expect("example"))
        .collect();
    let batch: Vec<Vec<&Example>> = vec![ex.iter().collect()];
    // Step 0 runs at lr 0 (moments only), step 1 at the full lr.
    let sched = Schedule::new(1e-5, 0.01, 100);
    let mut opt = AdamW::new(AdamConfig::default());
    let before: BTreeMap<usize, Vec<f32>> = p
        .trainable_ids()
        .into_iter()
        .map(|id| (id, flat(p.get(id).master().expect("trains"))))
        .collect();
    for step in 0..2 {
        let acc = accumulate(&net, &p, &batch, 1, PassOptions::default()).expect("grads");
        let lr = StepLr {
            lr: sched.lr(step),
            decoder_ratio: 1.0,
        };
        apply(&mut p, &mut opt, &acc, lr, 1.0).expect("step");
    }
    let mut by_part: BTreeMap<&str, (u64, u64, Vec<f32>)> = BTreeMap::new();
    for (id, old) in &before {
        let new = flat(p.get(*id).master().expect("trains"));
        let rounded = flat(
            &Tensor::new(new.as_slice(), &Device::Cpu)
                .unwrap()
                .to_dtype(DType::BF16)
                .unwrap(),
        );
        let e = by_part.entry(p.get(*id).part.name()).or_default();
        for i in 0..old.len() {
            if new[i] != old[i] {
                e.0 += 1;
                e.2.push(old[i].abs());
                if rounded[i] == old[i] {
                    e.1 += 1;
                }
            }
        }
    }
    println!("AdamW at lr 1e-5 on golden/c3-tiny (its first full-lr update), rounded to bf16:");
    let (mut moved, mut lost) = (0u64, 0u64);
    for (part, (m, l, mut w)) in by_part {
        w.sort_by(f32::total_cmp);
        let median = w.get(w.len() / 2).copied().unwrap_or(0.0);
        println!(
            "  {part:<10} {m:>9} elements moved in f32, {l:>9} ({:.1}%) vanish in bf16 (median |w| {median:.2e})",
            100.0 * l as f64 / m.max(1) as f64
        );
        moved += m;
        lost += l;
    }
    println!(
        "  total      {moved:>9} moved, {lost:>9} ({:.1}%) vanish\n",
        100.0 * lost as f64 / moved.max(1) as f64
    );
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn qwen2(v: usize, h: usize, i: usize, layers: usize, heads: usize, kv: usize) -> Qwen2Config {
    Qwen2Config {
        vocab_size: v,
        hidden_size: h,
        intermediate_size: i,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        max_position_embeddings: 32768,
        rms_norm_eps: 1e-6,
        rope_theta: 1e6,
        ..release_encoder_config()
    }
}

/// Random bf16 tensors of a Qwen2 stack under `model.` (std ~0.02, norms 1).
fn random_stack(c: &Qwen2Config, rng: &mut Rng, out: &mut BTreeMap<String, Entry>) {
    let hd = c.head_dim();
    let (h, qo, kv, i) = (
        c.hidden_size,
        c.num_attention_heads * hd,
        c.num_key_value_heads * hd,
        c.intermediate_size,
    );
    let mut put = |name: String, shape: Vec<usize>, norm: bool| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                if norm {
                    1.0
                } else {
                    ((rng.next_f64() * 2.0 - 1.0) * 0.035) as f32
                }
            })
            .collect();
        let t = Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap();
        out.insert(
            name,
            Entry {
                shape,
                dtype: DType::BF16,
                payload: Payload::Tensor(t),
            },
        );
    };
    put(
        "model.embed_tokens.weight".into(),
        vec![c.vocab_size, h],
        false,
    );
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (s, o, inp) in [("q", qo, h), ("k", kv, h), ("v", kv, h)] {
            put(
                format!("{p}.self_attn.{s}_proj.weight"),
                vec![o, inp],
                false,
            );
            put(format!("{p}.self_attn.{s}_proj.bias"), vec![o], false);
        }
        put(format!("{p}.self_attn.o_proj.weight"), vec![h, qo], false);
        put(format!("{p}.mlp.gate_proj.weight"), vec![i, h], false);
        put(format!("{p}.mlp.up_proj.weight"), vec![i, h], false);
        put(format!("{p}.mlp.down_proj.weight"), vec![h, i], false);
        put(format!("{p}.input_layernorm.weight"), vec![h], true);
        put(
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            true,
        );
    }
    put("model.norm.weight".into(), vec![h], true);
}

/// A random C3 checkpoint in the released layout.
fn write_model(geometry: &str, out: &Path) {
    let (enc, dec) = match geometry {
        // golden/c3-tiny's geometry.
        "tiny" => (
            qwen2(151_936, 16, 32, 2, 2, 1),
            qwen2(151_860, 64, 128, 3, 4, 2),
        ),
        // A mid geometry: 4 layers, hidden 512 on both sides.
        "mid" => (
            qwen2(151_936, 512, 1376, 4, 8, 2),
            qwen2(151_860, 512, 1376, 4, 8, 2),
        ),
        g => panic!("unknown geometry {g} (tiny, mid)"),
    };
    std::fs::create_dir_all(out.join("llm1")).unwrap();
    let mut rng = Rng::new(1, geometry);
    let mut e = BTreeMap::new();
    random_stack(&enc, &mut rng, &mut e);
    st_write::write(&out.join("llm1/model.safetensors"), e, &BTreeMap::new()).unwrap();
    let mut d = BTreeMap::new();
    random_stack(&dec, &mut rng, &mut d);
    let mut extra = BTreeMap::new();
    let (he, hd) = (enc.hidden_size, dec.hidden_size);
    for (name, shape) in [
        ("model.Q.weight", vec![32, he]),
        ("model.mm_projector.weight", vec![hd, he]),
        ("model.mm_projector.bias", vec![hd]),
    ] {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| ((rng.next_f64() * 2.0 - 1.0) * 0.035) as f32)
            .collect();
        let t = Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap();
        extra.insert(
            name.to_string(),
            Entry {
                shape,
                dtype: DType::BF16,
                payload: Payload::Tensor(t),
            },
        );
    }
    d.extend(extra);
    st_write::write(&out.join("model.safetensors"), d, &BTreeMap::new()).unwrap();
    let mut cfg = serde_json::to_value(&dec).unwrap();
    let o = cfg.as_object_mut().unwrap();
    for (k, v) in [
        ("model_type", serde_json::json!("C3")),
        ("latent_token_len", 32.into()),
        ("contexts_compression_llm_hidden_size", he.into()),
        ("use_im_start_end", true.into()),
        ("im_patch_token", 151859.into()),
        ("im_start_token", 151857.into()),
        ("im_end_token", 151858.into()),
        ("torch_dtype", "bfloat16".into()),
    ] {
        o.insert(k.into(), v);
    }
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    let mut ecfg = serde_json::to_value(&enc).unwrap();
    ecfg.as_object_mut()
        .unwrap()
        .insert("torch_dtype".into(), "bfloat16".into());
    std::fs::write(
        out.join("llm1/config.json"),
        serde_json::to_string_pretty(&ecfg).unwrap(),
    )
    .unwrap();
    let fx = repo().join("tests/fixtures/golden/c3-tiny");
    for f in ["qwen.tiktoken", "generation_config.json"] {
        std::fs::copy(fx.join(f), out.join(f)).unwrap();
    }
}

/// Reconstruction records of `text`'s chunks (JSON Lines), and optionally
/// the same examples as ids (one JSON object a line: enc_ids, query_start,
/// dec_ids, latent_start, labels). Returns how many.
fn write_records(
    text: &Path,
    chunk_tokens: usize,
    out: &Path,
    ids: Option<&Path>,
    limit: Option<usize>,
) -> usize {
    let tok = c3::tokenize::C3Tokenizer::from_tiktoken_file(
        &repo().join("tests/fixtures/golden/c3-tiny/qwen.tiktoken"),
    )
    .unwrap();
    let mut chunks = text_chunks(&[text.to_path_buf()], &tok, chunk_tokens).unwrap();
    if let Some(n) = limit {
        chunks.truncate(n);
    }
    let mix = Mix {
        reconstruct: 1.0,
        continuation: 0.0,
    };
    let recs = chunk_records(chunks, &tok, mix, 0).unwrap();
    let lines: Vec<String> = recs
        .iter()
        .map(|(_, r)| {
            serde_json::json!({"image": "", "conversations": [
                {"from": "context", "value": r.context},
                {"from": "human", "value": r.human},
                {"from": "gpt", "value": r.gpt}]})
            .to_string()
        })
        .collect();
    std::fs::write(out, lines.join("\n") + "\n").unwrap();
    if let Some(path) = ids {
        let limits = c3::train::data::Limits {
            max_length: usize::MAX,
            encoder_positions: usize::MAX,
            decoder_positions: usize::MAX,
        };
        let d = Dataset::build(&tok, 32, recs.clone(), limits).unwrap();
        let lines: Vec<String> = d
            .examples
            .iter()
            .map(|e| {
                serde_json::json!({"enc_ids": e.enc_ids, "query_start": e.query_start,
                    "dec_ids": e.dec_ids, "latent_start": e.latent_start, "labels": e.labels})
                .to_string()
            })
            .collect();
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }
    recs.len()
}
