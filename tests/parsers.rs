//! Property tests over the files a user can hand c3 (issue 21): safetensors
//! headers, `config.json` (C3 and Qwen), LCLM's `model_config.json`, the
//! tokenizer files (`qwen.tiktoken`, `tokenizer.json`) and `.npy`. Each
//! takes a valid input, applies random mutations (bit flips, byte changes,
//! insertions, deletions, truncation, numbers swapped for huge, negative or
//! non-finite ones) and checks that parsing returns `Ok` or `Err`, never
//! panics, and never allocates more than a bound: twice what the valid
//! input takes, plus 1 MiB. (HTTP bodies have their own properties beside
//! their parsers in `src/serve/`: they are bounded by `--max-body` first.)
//!
//! Allocation is counted per thread by this binary's global allocator; a
//! single request over 1 GiB aborts the process with a message before the
//! system is asked for it. Case counts keep each property to a few seconds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use proptest::prelude::*;

mod common;

// ---------------------------------------------------------------------------
// Counting allocator

struct Counting;

thread_local! {
    /// Bytes this thread holds (frees on other threads may push it below
    /// zero; only the rise during one parse matters).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// One request larger than this is a failure, reported before it is made.
const HARD_CAP: usize = 1 << 30;

fn account(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

fn refuse_huge(size: usize) {
    if size > HARD_CAP {
        let msg = b"parsers.rs: a parser asked for more than 1 GiB in one allocation\n";
        // SAFETY: writing a static buffer to stderr; no allocation here.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
        }
        std::process::abort();
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        refuse_huge(l.size());
        let p = System.alloc(l);
        if !p.is_null() {
            account(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        refuse_huge(l.size());
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            account(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        account(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        refuse_huge(new);
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            account(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns the most bytes this thread held above its start.
fn peak_of(f: impl FnOnce()) -> usize {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    f();
    (PEAK.with(Cell::get) - start).max(0) as usize
}

/// The bound for a parser whose valid input took `base` bytes at its peak.
fn bound(base: usize) -> usize {
    2 * base + (1 << 20)
}

// ---------------------------------------------------------------------------
// Mutations

#[derive(Debug, Clone)]
enum Op {
    Flip(prop::sample::Index, u8),
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
    /// The `n`th run of digits becomes one of [`NUMBERS`].
    Number(prop::sample::Index, prop::sample::Index),
}

/// Numbers a damaged or hostile file may hold.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1e400",
    "-1e400",
    "NaN",
    "1e-400",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "4611686018427387904",
    "1099511627776",
    "0.5",
    "3",
];

fn op() -> impl Strategy<Value = Op> {
    let interesting = prop_oneof![
        any::<u8>(),
        Just(b'9'),
        Just(b'-'),
        Just(b'"'),
        Just(b'{'),
        Just(b'}'),
        Just(b','),
        Just(b'\n'),
        Just(0u8),
        Just(0xffu8),
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Op::Flip(i, b)),
        (any::<prop::sample::Index>(), interesting.clone()).prop_map(|(i, b)| Op::Set(i, b)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(interesting, 1..8)
        )
            .prop_map(|(i, v)| Op::Insert(i, v)),
        (any::<prop::sample::Index>(), 1usize..16).prop_map(|(i, n)| Op::Delete(i, n)),
        any::<prop::sample::Index>().prop_map(Op::Truncate),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(i, n)| Op::Number(i, n)),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..6)
}

/// Digit runs of `b` as (start, end).
fn digit_runs(b: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((s, i));
        } else {
            i += 1;
        }
    }
    runs
}

fn mutate(base: &[u8], ops: &[Op]) -> Vec<u8> {
    let mut b = base.to_vec();
    for op in ops {
        if b.is_empty() {
            break;
        }
        match op {
            Op::Flip(i, bit) => {
                let i = i.index(b.len());
                b[i] ^= 1 << bit;
            }
            Op::Set(i, v) => {
                let i = i.index(b.len());
                b[i] = *v;
            }
            Op::Insert(i, v) => {
                let i = i.index(b.len() + 1);
                b.splice(i..i, v.iter().copied());
            }
            Op::Delete(i, n) => {
                let i = i.index(b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Op::Truncate(i) => {
                let i = i.index(b.len());
                b.truncate(i);
            }
            Op::Number(which, n) => {
                let runs = digit_runs(&b);
                if runs.is_empty() {
                    continue;
                }
                let (s, e) = runs[which.index(runs.len())];
                let num = NUMBERS[n.index(NUMBERS.len())];
                b.splice(s..e, num.bytes());
            }
        }
    }
    b
}

/// Checks one parse: no panic (a panic fails the property as it is), and
/// its peak allocation within the bound.
fn within(base_peak: usize, what: &str, f: impl FnOnce()) -> Result<(), TestCaseError> {
    let peak = peak_of(f);
    prop_assert!(
        peak <= bound(base_peak),
        "{what}: {peak} bytes at the peak, bound {} (valid input: {base_peak})",
        bound(base_peak)
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Valid inputs

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(common::fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn npy_base() -> Vec<u8> {
    let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.25).collect();
    c3::npy::to_npy_bytes(&[3, 4], &data)
}

/// A small safetensors file: an f32 matrix, a bf16 vector, an i64 scalar list.
fn safetensors_base() -> (Vec<u8>, Vec<(String, Vec<usize>)>) {
    use safetensors::tensor::TensorView;
    let f32s: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let bf16s: Vec<u8> = (0..4u16).flat_map(|i| (0x3f80 + i).to_le_bytes()).collect();
    let ints: Vec<u8> = (0..3i64).flat_map(|i| i.to_le_bytes()).collect();
    let tensors = vec![
        (
            "a.weight".to_string(),
            safetensors::Dtype::F32,
            vec![3, 4],
            f32s,
        ),
        (
            "b.bias".to_string(),
            safetensors::Dtype::BF16,
            vec![4],
            bf16s,
        ),
        ("c.ids".to_string(), safetensors::Dtype::I64, vec![3], ints),
    ];
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    let shapes = tensors.into_iter().map(|(n, _, s, _)| (n, s)).collect();
    (bytes, shapes)
}

/// A small byte-level BPE `tokenizer.json` (the form LCLM's checkpoints use).
fn tokenizer_json_base() -> Vec<u8> {
    // GPT-2's byte-to-character table.
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xa1..=0xac);
    printable.extend(0xae..=0xff);
    let mut vocab = serde_json::Map::new();
    let mut extra = 0;
    for b in 0u32..256 {
        let c = if printable.contains(&b) {
            char::from_u32(b).unwrap()
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap()
        };
        vocab.insert(c.to_string(), serde_json::json!(b));
    }
    for (i, t) in ["he", "ll", "hell", "hello"].iter().enumerate() {
        vocab.insert(t.to_string(), serde_json::json!(256 + i));
    }
    let v = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
            {"id": 260, "content": "<|im_end|>", "single_word": false, "lstrip": false,
             "rstrip": false, "normalized": false, "special": true},
            {"id": 261, "content": "<|memory|>", "single_word": false, "lstrip": false,
             "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                          "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": ["h e", "l l", "he ll", "hell o"]}
    });
    serde_json::to_vec_pretty(&v).unwrap()
}

// ---------------------------------------------------------------------------
// The properties

fn exercise_npy(bytes: &[u8]) {
    let _ = c3::npy::parse_f32(bytes);
}

fn exercise_safetensors(bytes: &[u8], dir: &Path, shapes: &[(String, Vec<usize>)]) {
    let path = dir.join("m.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let Ok(w) = c3::model::weights::Weights::open_file(
        &path,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    ) else {
        return;
    };
    let names: Vec<String> = w.names().map(str::to_string).collect();
    for n in &names {
        let _ = w.stored_dtype(n);
        let _ = w.raw_bytes(n);
    }
    for (n, s) in shapes {
        let _ = w.get(n, s);
    }
}

fn exercise_c3_config(text: &str) {
    let _ = c3::model::config::parse_c3_config(text, Path::new("config.json"));
}

fn exercise_qwen_config(text: &str) {
    let _ = c3::model::config::parse_qwen_config(
        text,
        Path::new("llm1/config.json"),
        &[c3::model::config::QWEN2, c3::model::config::QWEN3],
    );
}

fn exercise_model_config(text: &str) {
    let _ = c3::cascade::lclm::config::parse_model_config(text, Path::new("model_config.json"));
}

fn exercise_tokenizer_json(text: &str) {
    if let Ok(t) = c3::tokenize::HfTokenizer::from_json(text, Path::new("tokenizer.json")) {
        if let Ok(ids) = t.encode_text("hello <|im_end|> world") {
            let _ = t.decode(&ids);
        }
        let _ = t.decode(&[0, 259, 260, 261, 4_000_000_000]);
    }
}

fn exercise_tiktoken(bytes: &[u8]) {
    if let Ok(t) = c3::tokenize::C3Tokenizer::from_tiktoken_bytes(bytes, "qwen.tiktoken") {
        if let Ok(ids) = t.encode_text("hello <|im_end|> world") {
            let _ = t.decode(&ids);
        }
        let _ = t.decode(&[0, 151_643, 4_000_000_000]);
    }
}

/// The counter sees what a parse holds (so a bound it passes means something).
#[test]
fn the_allocation_counter_counts() {
    let peak = peak_of(|| {
        let v = std::hint::black_box(vec![1u8; 3 << 20]);
        drop(v);
    });
    assert!((3 << 20..4 << 20).contains(&peak), "{peak}");
    let tj = String::from_utf8(tokenizer_json_base()).unwrap();
    let p = peak_of(|| exercise_tokenizer_json(&tj));
    assert!(p > 10_000, "a tokenizer is built in {p} bytes?");
}

// Found by `tokenizer_json_mutations_never_panic_or_overallocate` (one NUL
// byte inside the `decoder` section): the tokenizers crate `expect`s its
// decoder helper, which panicked through c3. Now an error names the file.
#[test]
fn a_damaged_tokenizer_section_is_an_error_not_a_panic() {
    let mut v: serde_json::Value = serde_json::from_slice(&tokenizer_json_base()).unwrap();
    for bad in [serde_json::json!(5), serde_json::json!({"type": 7})] {
        v["decoder"] = bad;
        let text = v.to_string();
        let e = c3::tokenize::HfTokenizer::from_json(&text, Path::new("dir/tokenizer.json"))
            .err()
            .expect("a damaged decoder section must be refused");
        assert!(e.to_string().contains("dir/tokenizer.json"), "{e}");
    }
    let mut damaged = tokenizer_json_base();
    let at = damaged
        .windows(9)
        .position(|w| w == b"\"decoder\"")
        .unwrap()
        + 14;
    damaged.insert(at, 0);
    let e = c3::tokenize::HfTokenizer::from_json(
        &String::from_utf8_lossy(&damaged),
        Path::new("t.json"),
    )
    .err()
    .expect("a NUL byte must be refused");
    assert!(e.to_string().contains("not valid JSON"), "{e}");
}

/// The valid inputs parse (the mutations start from something real).
#[test]
fn the_valid_inputs_parse() {
    assert!(c3::npy::parse_f32(&npy_base()).is_ok());
    let c3cfg = String::from_utf8(fixture("golden/c3-tiny/config.json")).unwrap();
    c3::model::config::parse_c3_config(&c3cfg, Path::new("config.json")).unwrap();
    let enc = String::from_utf8(fixture("golden/c3-tiny/llm1/config.json")).unwrap();
    c3::model::config::parse_qwen_config(&enc, Path::new("c"), &[c3::model::config::QWEN2])
        .unwrap();
    let mc = String::from_utf8(fixture("golden-lclm/lclm-tiny-4x/model_config.json")).unwrap();
    c3::cascade::lclm::config::parse_model_config(&mc, Path::new("m")).unwrap();
    let tj = String::from_utf8(tokenizer_json_base()).unwrap();
    let t = c3::tokenize::HfTokenizer::from_json(&tj, Path::new("t")).unwrap();
    assert_eq!(t.encode_text("hello").unwrap(), vec![259]);
    let (st, shapes) = safetensors_base();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.safetensors"), &st).unwrap();
    let w = c3::model::weights::Weights::open_file(
        &dir.path().join("m.safetensors"),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    for (n, s) in &shapes[..2] {
        w.get(n, s).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn npy_mutations_never_panic_or_overallocate(ops in ops()) {
        let base = npy_base();
        let base_peak = peak_of(|| exercise_npy(&base));
        let m = mutate(&base, &ops);
        within(base_peak, "npy", || exercise_npy(&m))?;
    }

    #[test]
    fn c3_config_mutations_never_panic_or_overallocate(ops in ops()) {
        let base = fixture("golden/c3-tiny/config.json");
        let text = String::from_utf8(base.clone()).unwrap();
        let base_peak = peak_of(|| exercise_c3_config(&text));
        let m = String::from_utf8_lossy(&mutate(&base, &ops)).into_owned();
        within(base_peak, "config.json", || exercise_c3_config(&m))?;
    }

    #[test]
    fn qwen_config_mutations_never_panic_or_overallocate(ops in ops()) {
        let base = fixture("golden-lclm/lclm-tiny-4x/decoder/config.json");
        let text = String::from_utf8(base.clone()).unwrap();
        let base_peak = peak_of(|| exercise_qwen_config(&text));
        let m = String::from_utf8_lossy(&mutate(&base, &ops)).into_owned();
        within(base_peak, "decoder/config.json", || exercise_qwen_config(&m))?;
    }

    #[test]
    fn model_config_mutations_never_panic_or_overallocate(ops in ops()) {
        let base = fixture("golden-lclm/lclm-tiny-4x/model_config.json");
        let text = String::from_utf8(base.clone()).unwrap();
        let base_peak = peak_of(|| exercise_model_config(&text));
        let m = String::from_utf8_lossy(&mutate(&base, &ops)).into_owned();
        within(base_peak, "model_config.json", || exercise_model_config(&m))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn safetensors_mutations_never_panic_or_overallocate(ops in ops()) {
        let (base, shapes) = safetensors_base();
        let dir = tempfile::tempdir().unwrap();
        let base_peak = peak_of(|| exercise_safetensors(&base, dir.path(), &shapes));
        let m = mutate(&base, &ops);
        within(base_peak, "safetensors", || exercise_safetensors(&m, dir.path(), &shapes))?;
    }

    #[test]
    fn tokenizer_json_mutations_never_panic_or_overallocate(ops in ops()) {
        let base = tokenizer_json_base();
        let text = String::from_utf8(base.clone()).unwrap();
        let base_peak = peak_of(|| exercise_tokenizer_json(&text));
        let m = String::from_utf8_lossy(&mutate(&base, &ops)).into_owned();
        within(base_peak, "tokenizer.json", || exercise_tokenizer_json(&m))?;
    }
}

proptest! {
    // The real rank file is 2.5 MB and builds a 151k-token table: a few
    // cases only.
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn tiktoken_mutations_never_panic_or_overallocate(ops in ops()) {
        static BASE: std::sync::OnceLock<(Vec<u8>, usize)> = std::sync::OnceLock::new();
        let (base, base_peak) = BASE.get_or_init(|| {
            let base = fixture("golden/c3-tiny/qwen.tiktoken");
            let peak = peak_of(|| exercise_tiktoken(&base));
            (base, peak)
        });
        let base_peak = *base_peak;
        let m = mutate(base, &ops);
        within(base_peak, "qwen.tiktoken", || exercise_tiktoken(&m))?;
    }
}
