//! The `c3` binary with the tiny LCLM checkpoint: one-shot commands against
//! the golden outputs, and a store end to end.
mod common;
mod lclm_support;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixtures, json, max_abs_diff, ok};
use lclm_support::*;
use serde_json::Value;

/// `c3 --model LCLM --store STORE ARGS...`.
fn c3l(ratio: usize, store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(store)
        .arg("--model")
        .arg(lclm_model(ratio))
        .args(args)
        .env_remove("C3_MODEL")
        .output()
        .unwrap()
}

fn text_path(name: &str) -> String {
    lclm_dir()
        .join("texts")
        .join(format!("{name}.txt"))
        .display()
        .to_string()
}

fn ids_of(o: Output) -> Vec<u32> {
    serde_json::from_slice(&ok(o).stdout).unwrap()
}

#[test]
fn tokenize_prints_the_encoder_ids() {
    let store = tempfile::tempdir().unwrap();
    for case in lclm_cases(4) {
        let got = ids_of(c3l(
            4,
            store.path(),
            &["tokenize", "--text", &text_path(&case.name)],
        ));
        assert_eq!(got, case.encoder_ids, "{}", case.name);
    }
}

#[test]
fn encode_writes_adapted_latents_or_pooled_states() {
    let store = tempfile::tempdir().unwrap();
    let out = store.path().join("x.npy");
    for (flag, kind) in [(None, "latents"), (Some("--raw"), "pooled")] {
        for case in ["long", "odd"] {
            let mut args = vec!["encode", "--text", &text_path(case)]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>();
            args.extend(["--out".into(), out.display().to_string()]);
            args.extend(flag.map(String::from));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // Dense f32: the parity precision.
            let mut full = vec!["--encoder-precision", "dense"];
            full.extend(args);
            ok(c3l(16, store.path(), &full));
            let (shape, got) = c3::npy::read_f32(&out).unwrap();
            let (want_shape, want) = lclm_npy(16, case, kind);
            assert_eq!(shape, want_shape, "{case} {kind}");
            let d = max_abs_diff(&got, &want);
            assert!(d < 1e-4, "{case} {kind}: {d}");
        }
    }
}

#[test]
fn one_shot_ask_over_a_file_matches_reference_ids() {
    let store = tempfile::tempdir().unwrap();
    for ratio in [4, 16] {
        for case in lclm_cases(ratio)
            .into_iter()
            .filter(|c| c.name == "long" || c.name == "specials")
        {
            let text = text_path(&case.name);
            let base = [
                "--encoder-precision",
                "dense",
                "ask",
                "--text",
                &text,
                "What is this text about?",
                "--ids",
                "--max-new-tokens",
                "40",
            ];
            // LCLM's default: repetition penalty 1.1.
            let ids = ids_of(c3l(ratio, store.path(), &base));
            let n = comparable(&case.rep_gap, case.rep_ids.len());
            assert_eq!(ids[..n], case.rep_ids[..n], "{ratio}x {}", case.name);
            let mut plain = base.to_vec();
            plain.extend(["--repetition-penalty", "1"]);
            let ids = ids_of(c3l(ratio, store.path(), &plain));
            let n = comparable(&case.greedy_gap, case.greedy_ids.len());
            assert_eq!(ids[..n], case.greedy_ids[..n], "{ratio}x {}", case.name);
        }
    }
}

#[test]
fn reconstruction_commands_are_refused_with_a_reason() {
    let store = tempfile::tempdir().unwrap();
    let o = c3l(4, store.path(), &["repeat", "--text", &text_path("odd")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("trained to answer") && err.contains("c3 ask"),
        "{err}"
    );
    for args in [&["expand", "0"][..], &["eval"][..]] {
        let o = c3l(4, store.path(), args);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("reconstruct"));
    }
}

fn source_tree(root: &Path) {
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("src/lib.rs"),
        "/// Adds one.\npub fn inc(x: u32) -> u32 {\n    x + 1\n}\n".repeat(60),
    )
    .unwrap();
    std::fs::write(
        root.join("notes.md"),
        "# Notes\n\nA literal <|memory|> and <|im_end|> and <think> are text here.\n",
    )
    .unwrap();
}

#[test]
fn a_store_end_to_end() {
    let store = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    source_tree(tree.path());
    let corpus = fixtures().join("corpus");
    let alice = corpus.join("alice-in-wonderland.txt");
    let pp = corpus.join("pride-and-prejudice.txt");
    let r = json(c3l(
        4,
        store.path(),
        &[
            "ingest",
            "--json",
            alice.to_str().unwrap(),
            pp.to_str().unwrap(),
            tree.path().to_str().unwrap(),
        ],
    ));
    assert_eq!(r["added"], 4, "{r}");
    assert_eq!(r["family"], "lclm");
    assert_eq!(r["chunk_tokens"], 1024, "a chunk is one encoder window");
    assert!(ok(c3l(4, store.path(), &["check"])).status.success());

    // Latents per chunk follow its tokens: ceil(T / 4).
    let ls = json(c3l(4, store.path(), &["ls", "--json"]));
    let docs = ls.as_array().unwrap();
    let mut latent_rows = 0u64;
    for d in docs {
        let id = d["id"].to_string();
        for n in 0..d["chunks"].as_u64().unwrap() {
            let c = json(c3l(
                4,
                store.path(),
                &["show", &id, "--chunk", &n.to_string(), "--json"],
            ));
            let tokens = c["tokens"].as_u64().unwrap();
            assert!(tokens <= 1024);
            assert_eq!(
                c["latents"]["shape"],
                serde_json::json!([tokens.div_ceil(4), 16])
            );
            latent_rows += tokens.div_ceil(4);
        }
    }
    let stats = json(c3l(4, store.path(), &["stats", "--json"]));
    assert_eq!(stats["latent_tokens"].as_u64(), Some(latent_rows));

    // ask --top-k: the JSON names family, ratio and latent positions.
    let a = json(c3l(
        4,
        store.path(),
        &[
            "ask",
            "Alice rabbit",
            "--top-k",
            "3",
            "--max-new-tokens",
            "8",
            "--json",
        ],
    ));
    assert_eq!(a["family"], "lclm", "{a}");
    assert_eq!(a["compression_ratio"], 4);
    assert_eq!(a["chunks"].as_array().unwrap().len(), 3);
    let lat = a["latent_tokens"].as_u64().unwrap();
    assert!(lat > 0 && a["prompt_tokens"].as_u64().unwrap() > lat);
    assert!(a["text_tokens_replaced"].as_u64().unwrap() >= 3 * lat);

    // ask --all: every chunk fits the tiny decoder's 262,144 positions...
    let o = c3l(
        4,
        store.path(),
        &["ask", "Alice", "--all", "--max-new-tokens", "2", "--json"],
    );
    let a: Value = json(o);
    let total: u64 = docs.iter().map(|d| d["chunks"].as_u64().unwrap()).sum();
    assert_eq!(a["chunks"].as_array().unwrap().len() as u64, total);
    assert_eq!(a["dropped"], 0);
    assert_eq!(a["latent_tokens"].as_u64(), Some(latent_rows));
    // One memory span per document: 2 markers each, a newline between.
    let n_docs = docs.len() as u64;
    assert!(a["prompt_tokens"].as_u64().unwrap() > latent_rows + 2 * n_docs);
    // ...and with room for only part of them, the best-scoring chunks that
    // fit (checked through the library: generating 261,000 tokens to make
    // room would take too long).
    {
        use c3::query::{prepare, AskRequest, Mode, Reader};
        let st = c3::store::Store::open(store.path()).unwrap();
        let ckpt = c3::cascade::lclm::LclmCheckpoint::open(&lclm_model(4)).unwrap();
        let dec = c3::cascade::lclm::LclmDecoder::load(
            &ckpt,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
            None,
        )
        .unwrap();
        let req = AskRequest {
            question: "Alice".into(),
            docs: vec![],
            pick: c3::retrieve::Pick::All,
            mode: Mode::Latent,
            gen: c3::generate::GenOptions {
                max_new_tokens: 262_144 - 5_000,
                ..Default::default()
            },
            progress: false,
        };
        let p = prepare(&st, Reader::Latent(&dec), &req).unwrap();
        assert!(p.dropped > 0);
        assert!(p.prompt_tokens() <= 5_000, "{}", p.prompt_tokens());
        assert!(
            p.prompt_tokens() > 4_000,
            "the budget is used: {}",
            p.prompt_tokens()
        );
    }

    // Text mode reads the same chunks as text.
    let t = json(c3l(
        4,
        store.path(),
        &[
            "ask",
            "Alice rabbit",
            "--top-k",
            "2",
            "--mode",
            "text",
            "--max-new-tokens",
            "4",
            "--json",
        ],
    ));
    assert_eq!(t["mode"], "text");
    assert_eq!(t["latent_tokens"], 0);

    // Export, import into a new store, export again: the same bytes.
    let e1 = store.path().join("a.c3x");
    ok(c3l(4, store.path(), &["export", e1.to_str().unwrap()]));
    let other = tempfile::tempdir().unwrap();
    ok(c3l(4, other.path(), &["import", e1.to_str().unwrap()]));
    assert!(ok(c3l(4, other.path(), &["check"])).status.success());
    let e2 = other.path().join("b.c3x");
    ok(c3l(4, other.path(), &["export", e2.to_str().unwrap()]));
    assert_eq!(std::fs::read(&e1).unwrap(), std::fs::read(&e2).unwrap());
}

#[test]
fn stores_of_the_two_families_refuse_each_other() {
    let c3_store = tempfile::tempdir().unwrap();
    let alice = fixtures().join("corpus/alice-in-wonderland.txt");
    let o = Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(c3_store.path())
        .arg("--model")
        .arg(common::golden_model())
        .args(["ingest", text_path("english").as_str()])
        .env_remove("C3_MODEL")
        .output()
        .unwrap();
    ok(o);
    let o = c3l(4, c3_store.path(), &["ingest", alice.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("a C3 model") && err.contains("an LCLM 4x model"),
        "{err}"
    );
    let o = c3l(4, c3_store.path(), &["ask", "What?"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("a C3 model") && err.contains("LCLM"), "{err}");

    // And an LCLM store refuses the C3 model, and the 16x one.
    let lclm_store = tempfile::tempdir().unwrap();
    ok(c3l(
        4,
        lclm_store.path(),
        &["ingest", &text_path("english")],
    ));
    let o = Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(lclm_store.path())
        .arg("--model")
        .arg(common::golden_model())
        .args(["ask", "What?"])
        .env_remove("C3_MODEL")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("an LCLM 4x model"));
    let o = c3l(16, lclm_store.path(), &["ingest", &text_path("odd")]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("an LCLM 16x model"));
}
