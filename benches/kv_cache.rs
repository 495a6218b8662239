//! The prefix cache at the release geometry (issue 22), random weights, the
//! decoder in q8_0 on the CPU, both families: time to first token of a first
//! question (whole prefill, then its blocks stored) and of a second question
//! over the same chunks (the stored prefix resumed, only the question
//! prefilled), the cache's load time and bytes, beside the size of the same
//! book as text in a llama.cpp-style f16 KV cache.
//!
//! `cargo bench --bench kv_cache` runs `sizes` (computed from the real
//! prompt frames: no model, no timing), then `c3` and `lclm` at 32 and 150
//! chunks. Filters: `-- sizes`, `-- c3`, `-- lclm`. Knobs:
//! `C3_BENCH_CHUNKS=32,150` (chunks per prompt), `C3_BENCH_RATIO=4` (LCLM
//! tokens per latent: 256 latents per 1,024-token chunk; 16 gives 64),
//! `C3_BENCH_KV_DTYPE=compute|f16` (how blocks are stored),
//! `C3_BENCH_DIR` (where the blocks are written; default
//! `target/c3-kv-bench`). `cargo test --benches` is the smoke mode (tiny
//! geometry, 2 and 4 chunks).
//!
//! What the whole-book rows cost on a CPU: C3's 150 chunks are ~5,300
//! positions (q8_0 prefill ~45 positions/s on 2 cores: minutes); LCLM's at
//! 4x are ~38,500 positions (hours, and ~12 GB of f32 keys and values
//! besides the 4.3 GB model) — run it with `C3_BENCH_RATIO=16` (~9,700
//! positions) or `C3_BENCH_CHUNKS=32` on a small machine.

mod support;

use std::path::PathBuf;
use std::time::Instant;

use c3::cascade::lclm::decoder::memory_prompt;
use c3::cascade::lclm::MemoryIds;
use c3::cascade::Prompt;
use c3::kvcache::{CacheOptions, KvDtype, KvShape, ModelKey, PrefixCache};
use c3::model::config::Qwen2Config;
use c3::model::synthetic::{lclm_release_decoder_config, random_qwen2, release_decoder_config};
use c3::model::weights::Weights;
use c3::model::{KvCache, Quant, Qwen2};
use c3::tokenize::HfTokenizer;
use candle_core::{DType, Device, IndexOp, Tensor};
use support::*;

const Q1: &str = "What happens at the end of the book?";
const Q2: &str = "Who is the main character, and what does she want?";
/// Text tokens a chunk stands for: C3's default chunk (1,000 tokens) and
/// LCLM's encoder window (1,024).
const C3_CHUNK_TOKENS: usize = 1000;
const LCLM_CHUNK_TOKENS: usize = 1024;

fn wanted(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

fn chunk_counts() -> Vec<usize> {
    if quick() {
        return vec![2, 4];
    }
    std::env::var("C3_BENCH_CHUNKS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![32, 150])
}

fn ratio() -> usize {
    std::env::var("C3_BENCH_RATIO")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

fn kv_dtype() -> KvDtype {
    match std::env::var("C3_BENCH_KV_DTYPE").as_deref() {
        Err(_) | Ok("compute") => KvDtype::Compute,
        Ok("f16") => KvDtype::F16,
        Ok(o) => panic!("C3_BENCH_KV_DTYPE=`{o}`: expected compute or f16"),
    }
}

fn lclm_tokenizer() -> (HfTokenizer, MemoryIds) {
    let dir = repo().join("tests/fixtures/golden-lclm/lclm-tiny-4x/decoder");
    let t = HfTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let id = |s: &str| t.added_id(s).unwrap();
    let m = MemoryIds {
        memory_start: id("<|memory_start|>"),
        memory_end: id("<|memory_end|>"),
        memory: id("<|memory|>"),
        im_start: id("<|im_start|>"),
        im_end: id("<|im_end|>"),
    };
    (t, m)
}

/// The prompt of `blocks` chunks and a question.
type PromptFn = Box<dyn Fn(usize, &str) -> Prompt>;

/// One family's prompts: `blocks` chunks of one document (C3: 32 latents
/// each; LCLM: a window's 1,024 / ratio).
struct Layout {
    name: &'static str,
    cfg: Qwen2Config,
    rows: usize,
    text_tokens: usize,
    prompt: PromptFn,
}

fn c3_layout() -> Layout {
    Layout {
        name: "c3",
        cfg: release_decoder_config().llm,
        rows: 32,
        text_tokens: C3_CHUNK_TOKENS,
        prompt: Box::new(|blocks, q| {
            c3::cascade::c3::prompt::latent_prompt(&tokenizer(), blocks, 32, q).unwrap()
        }),
    }
}

fn lclm_layout() -> Layout {
    let rows = LCLM_CHUNK_TOKENS / ratio();
    Layout {
        name: "lclm",
        cfg: lclm_release_decoder_config(),
        rows,
        text_tokens: LCLM_CHUNK_TOKENS,
        prompt: Box::new(move |blocks, q| {
            let (t, m) = lclm_tokenizer();
            memory_prompt(&t, m, &[vec![rows; blocks]], q).unwrap()
        }),
    }
}

/// Bytes one position takes in a cache of `cfg` stored in `bytes`-wide values.
fn per_position(cfg: &Qwen2Config, bytes: usize) -> usize {
    cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim() * bytes
}

fn gb(b: f64) -> String {
    format!("{:.2} GB", b / 1e9)
}

/// The size figures, computed: the memory part's positions from the real
/// frames, × layers × KV width × bytes, against the same chunks' text.
fn sizes() {
    println!("# sizes (computed at the release geometry; nothing timed)");
    for l in [c3_layout(), lclm_layout()] {
        let f32_pos = per_position(&l.cfg, 4);
        let f16_pos = per_position(&l.cfg, 2);
        println!(
            "{}: {} layers x {} KV heads x {} wide: {} bytes per position in f32, {} in f16",
            l.name,
            l.cfg.num_hidden_layers,
            l.cfg.num_key_value_heads,
            l.cfg.head_dim(),
            f32_pos,
            f16_pos
        );
        for chunks in [32usize, 150] {
            let p = (l.prompt)(chunks, Q1);
            let mem = p.segments().last().unwrap().end;
            let text = chunks * l.text_tokens;
            let text_f16 = (text * f16_pos) as f64;
            println!(
                "  {chunks} chunks ({} latents each): memory part {mem} positions, prompt {}; \
                 cache {} (f32) / {} (f16); the text ({text} tokens) in an f16 text KV cache: {} \
                 = {:.1}x the f32 cache, {:.1}x the f16 one",
                l.rows,
                p.ids.len(),
                gb((mem * f32_pos) as f64),
                gb((mem * f16_pos) as f64),
                gb(text_f16),
                text_f16 / (mem * f32_pos) as f64,
                text_f16 / (mem * f16_pos) as f64,
            );
        }
    }
}

/// A random q8_0 decoder at `l`'s release geometry (a tiny one in smoke
/// mode), built from bf16 weights as the release stores them.
fn decoder(l: &Layout) -> Qwen2 {
    let mut cfg = l.cfg.clone();
    if quick() {
        cfg.num_hidden_layers = 1;
        cfg.hidden_size = 256;
        cfg.intermediate_size = 512;
        cfg.num_attention_heads = 4;
        cfg.num_key_value_heads = 2;
        cfg.head_dim = Some(64);
    }
    let dev = Device::Cpu;
    let t = Instant::now();
    let w = Weights::from_tensors(
        "random-decoder",
        random_qwen2(&cfg, DType::BF16, &dev).unwrap(),
        DType::F32,
    );
    let llm = Qwen2::load_quantized(&w, &cfg, &dev, DType::F32, Some(Quant::Q8_0)).unwrap();
    eprintln!(
        "{}: random q8_0 decoder built in {:.1?}",
        l.name,
        t.elapsed()
    );
    llm
}

fn first_token(llm: &Qwen2, x: &Tensor, kv: &mut KvCache) -> u32 {
    let h = llm
        .forward_tail(&x.unsqueeze(0).unwrap(), Some(kv), 1)
        .unwrap();
    let logits = llm
        .logits(&h.i((0, 0)).unwrap().unsqueeze(0).unwrap())
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    logits
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0 as u32
}

fn bench_dir() -> PathBuf {
    std::env::var_os("C3_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/c3-kv-bench"))
}

/// First and second question over `chunks` chunks.
fn timed(l: &Layout, llm: &Qwen2, chunks: usize) {
    let dir = bench_dir().join(format!("{}-{chunks}", l.name));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = CacheOptions {
        dir: dir.clone(),
        max_bytes: u64::MAX,
        memory_bytes: 0,
        kv_dtype: kv_dtype(),
    };
    let stored = kv_dtype().dtype(llm.dtype());
    let key = ModelKey::new("bench", "random-weights", llm, l.name, stored);
    let cache = PrefixCache::with_key(&opts, key, KvShape::of(llm))
        .unwrap()
        .unwrap();
    let h = llm.config().hidden_size;
    let latents: Vec<Tensor> = (0..chunks)
        .map(|_| Tensor::randn(0f32, 1f32, (l.rows, h), &Device::Cpu).unwrap())
        .collect();
    let digests: Vec<[u8; 32]> = (0..chunks as u64)
        .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
        .collect();
    let label = format!("{}/{chunks} chunks", l.name);

    // First question: nothing stored; the whole prompt is prefilled, then
    // its blocks are stored (after the first token, as `ask` does).
    let p1 = (l.prompt)(chunks, Q1);
    let keys1 = cache.keys(&p1, &digests);
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let r = cache.resume(&p1, &keys1, 1).unwrap();
    assert_eq!(r.blocks, 0);
    let mut kv = r.kv;
    let x = p1.embeddings(llm, &latents).unwrap();
    first_token(llm, &x, &mut kv);
    let ttft1 = t.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds() - cpu;
    let t = Instant::now();
    let s = cache.store(&p1, &keys1, 0, &kv).unwrap();
    let save = t.elapsed().as_secs_f64();
    drop(kv);

    // Second question: the stored prefix resumed, the question prefilled.
    let p2 = (l.prompt)(chunks, Q2);
    let keys2 = cache.keys(&p2, &digests);
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let r = cache.resume(&p2, &keys2, 1).unwrap();
    let load = t.elapsed().as_secs_f64();
    let mut kv = r.kv;
    let x = p2
        .embeddings_range(llm, &latents[r.whole..], r.positions, p2.ids.len())
        .unwrap();
    first_token(llm, &x, &mut kv);
    let ttft2 = t.elapsed().as_secs_f64();
    let cpu2 = cpu_seconds() - cpu;
    let mem = p1.segments().last().unwrap().end;
    println!(
        "{label}: prompt {} positions ({mem} of them memory); first question: first token after \
         {ttft1:.2} s ({cpu1:.1} CPU s), then {} blocks stored ({}, {:.0} bytes/position) in \
         {save:.2} s; second question: {} positions resumed in {load:.3} s (load), {} prefilled, \
         first token after {ttft2:.2} s ({cpu2:.1} CPU s): {:.1}x faster",
        p1.ids.len(),
        s.blocks,
        gb(s.bytes as f64),
        s.bytes as f64 / mem as f64,
        r.positions,
        p2.ids.len() - r.positions,
        ttft1 / ttft2
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    if wanted("sizes") {
        sizes();
    }
    eprintln!(
        "threads: {}; dense f32 product: {}; blocks stored as {:?}",
        threads(),
        c3::kernels::blas::backend(),
        kv_dtype()
    );
    for l in [c3_layout(), lclm_layout()] {
        if !wanted(l.name) {
            continue;
        }
        let llm = decoder(&l);
        for chunks in chunk_counts() {
            timed(&l, &llm, chunks);
        }
    }
}
