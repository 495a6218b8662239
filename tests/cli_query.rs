//! `c3 ask`, `c3 expand`, `c3 eval` through the binary with the golden model.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{c3, json, ok};

fn model() -> String {
    common::golden_model().display().to_string()
}

fn err(o: Output) -> String {
    assert!(!o.status.success(), "expected a failure");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A store with one ingested document of several ~120-token chunks.
fn ingested(dir: &Path) -> (PathBuf, PathBuf) {
    let store = dir.join("store");
    let text = dir.join("book.txt");
    let alice =
        std::fs::read_to_string(common::fixtures().join("corpus/alice-in-wonderland.txt")).unwrap();
    let mut body: String = alice.chars().skip(2000).take(2400).collect();
    body.push_str("\n\nThe zyxquaffle was never seen again.\n");
    std::fs::write(&text, body).unwrap();
    let m = model();
    ok(c3(
        &store,
        &[
            "--model",
            &m,
            "ingest",
            text.to_str().unwrap(),
            "--chunk-tokens",
            "120",
            "--json",
        ],
    ));
    (store, text)
}

#[test]
fn expand_equals_repeat_on_the_chunk_text() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = ingested(tmp.path());
    let m = model();
    let show = json(c3(&store, &["show", "0", "--chunk", "1", "--json"]));
    let chunk = tmp.path().join("chunk1.txt");
    std::fs::write(&chunk, show["text"].as_str().unwrap()).unwrap();
    let args = ["--max-new-tokens", "40"];
    let exp = ok(c3(
        &store,
        &[
            &["--model", &m, "expand", "0", "--chunk", "1", "--ids"][..],
            &args,
        ]
        .concat(),
    ))
    .stdout;
    let rep = ok(c3(
        &store,
        &[
            &[
                "--model",
                &m,
                "repeat",
                "--text",
                chunk.to_str().unwrap(),
                "--ids",
            ][..],
            &args,
        ]
        .concat(),
    ))
    .stdout;
    assert_eq!(String::from_utf8_lossy(&exp), String::from_utf8_lossy(&rep));
    let ids: Vec<u32> = serde_json::from_slice(&exp).unwrap();
    assert!(!ids.is_empty());
    // And the printed text, streamed by expand, equals repeat's.
    let exp = ok(c3(
        &store,
        &[&["--model", &m, "expand", "0", "--chunk", "1"][..], &args].concat(),
    ))
    .stdout;
    let rep = ok(c3(
        &store,
        &[
            &["--model", &m, "repeat", "--text", chunk.to_str().unwrap()][..],
            &args,
        ]
        .concat(),
    ))
    .stdout;
    assert_eq!(String::from_utf8_lossy(&exp), String::from_utf8_lossy(&rep));

    // --diff shows the metrics; --json carries them.
    let d = ok(c3(
        &store,
        &[
            "--model",
            &m,
            "expand",
            "0",
            "--chunk",
            "1",
            "--diff",
            "--max-new-tokens",
            "8",
        ],
    ));
    assert!(String::from_utf8_lossy(&d.stdout).contains("precision"));
    let j = json(c3(
        &store,
        &[
            "--model",
            &m,
            "expand",
            "0",
            "--json",
            "--max-new-tokens",
            "4",
        ],
    ));
    let rows = j.as_array().unwrap();
    assert!(rows.len() >= 3);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["chunk"], i);
        let p = r["precision"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
    }
    // Out of range and unknown documents are clear errors.
    assert!(
        err(c3(&store, &["--model", &m, "expand", "0", "--chunk", "99"])).contains("no chunk 99")
    );
    assert!(err(c3(&store, &["--model", &m, "expand", "7"])).contains("no document"));
}

#[test]
fn eval_json_is_a_well_formed_table() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = ingested(tmp.path());
    let m = model();
    let v = json(c3(
        &store,
        &["--model", &m, "eval", "--json", "--max-new-tokens", "6"],
    ));
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["bucket"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "<600",
            "600-700",
            "700-800",
            "800-900",
            "900-1000",
            "1000-1100",
            "1100-1200",
            "1200-1300",
            ">=1300",
            "all"
        ]
    );
    let samples = v["samples"].as_array().unwrap();
    let total: u64 = rows[..9]
        .iter()
        .map(|r| r["chunks"].as_u64().unwrap())
        .sum();
    assert_eq!(total, samples.len() as u64);
    assert_eq!(rows[9]["chunks"].as_u64().unwrap(), total);
    let ls = json(c3(&store, &["ls", "--json"]));
    assert_eq!(total, ls[0]["chunks"].as_u64().unwrap());
    // ~120-token chunks all land below 600.
    assert_eq!(rows[0]["chunks"].as_u64().unwrap(), total);
    for s in samples {
        for k in ["precision", "edit_similarity"] {
            let x = s[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&x), "{k} {x}");
        }
        assert_eq!(s["latent_tokens"], 32);
    }
    let mean = |k: &str| {
        samples.iter().map(|s| s[k].as_f64().unwrap()).sum::<f64>() / samples.len() as f64
    };
    assert!((rows[9]["precision"].as_f64().unwrap() - mean("precision")).abs() < 1e-9);
    assert!(rows[1]["precision"].is_null(), "empty buckets have no mean");

    // --sample and --texts.
    let v = json(c3(
        &store,
        &[
            "--model",
            &m,
            "eval",
            "--json",
            "--sample",
            "2",
            "--max-new-tokens",
            "4",
        ],
    ));
    assert_eq!(v["samples"].as_array().unwrap().len(), 2);
    let texts = common::fixtures().join("golden/texts");
    let v = json(c3(
        &store,
        &[
            "--model",
            &m,
            "eval",
            "--json",
            "--texts",
            texts.to_str().unwrap(),
            "--max-new-tokens",
            "4",
        ],
    ));
    assert!(!v["samples"].as_array().unwrap().is_empty());
    let text = ok(c3(
        &store,
        &[
            "--model",
            &m,
            "eval",
            "--sample",
            "1",
            "--max-new-tokens",
            "4",
        ],
    ));
    assert!(String::from_utf8_lossy(&text.stdout).contains("PRECISION"));
}

#[test]
fn ask_json_top_k_and_index_upkeep() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = ingested(tmp.path());
    let m = model();
    // Ingest built the index.
    let chk = json(c3(&store, &["check", "--json"]));
    assert_eq!(chk["index"]["status"], "ok");

    let v = json(c3(
        &store,
        &[
            "--model",
            &m,
            "ask",
            "the zyxquaffle",
            "--top-k",
            "1",
            "--json",
            "--max-new-tokens",
            "8",
        ],
    ));
    let chunks = v["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 1);
    let last = json(c3(&store, &["ls", "--json"]))[0]["chunks"]
        .as_u64()
        .unwrap()
        - 1;
    assert_eq!(
        chunks[0]["chunk"].as_u64().unwrap(),
        last,
        "the rare word is in the last chunk"
    );
    assert!(chunks[0]["score"].as_f64().unwrap() > 0.0);
    assert_eq!(v["latent_tokens"], 32);
    assert!(v["text_tokens_replaced"].as_u64().unwrap() > 0);
    assert!(v["prompt_tokens"].as_u64().unwrap() > 32);
    assert!(v["answer"].is_string());
    for k in [
        "first_token_ms",
        "time_to_first_token_ms",
        "tokens_per_s",
        "total_ms",
    ] {
        assert!(v["timings"][k].is_number(), "{k}");
    }

    // --all (default) with every chunk; streamed text on stdout.
    let out = ok(c3(
        &store,
        &[
            "--model",
            &m,
            "ask",
            "What happened?",
            "--max-new-tokens",
            "8",
        ],
    ));
    assert!(String::from_utf8_lossy(&out.stderr).contains("first token"));
    let v = json(c3(
        &store,
        &[
            "--model",
            &m,
            "ask",
            "What happened?",
            "--json",
            "--max-new-tokens",
            "8",
            "--mode",
            "text",
        ],
    ));
    assert_eq!(v["latent_tokens"], 0);
    assert_eq!(v["chunks"].as_array().unwrap().len() as u64, last + 1);

    // Deleted index: check says missing (not an error), ask rebuilds it.
    std::fs::remove_dir_all(store.join("bm25")).unwrap();
    assert_eq!(
        json(c3(&store, &["check", "--json"]))["index"]["status"],
        "missing"
    );
    let v = json(c3(
        &store,
        &[
            "--model",
            &m,
            "ask",
            "zyxquaffle",
            "--top-k",
            "1",
            "--json",
            "--max-new-tokens",
            "2",
        ],
    ));
    assert_eq!(v["chunks"][0]["chunk"].as_u64().unwrap(), last);
    assert_eq!(
        json(c3(&store, &["check", "--json"]))["index"]["status"],
        "ok"
    );
    // Corrupt index: check fails, ask still works and repairs it.
    std::fs::write(store.join("bm25/meta.json"), "garbage").unwrap();
    let chk = c3(&store, &["check"]);
    assert!(!chk.status.success());
    ok(c3(
        &store,
        &[
            "--model",
            &m,
            "ask",
            "zyxquaffle",
            "--top-k",
            "1",
            "--max-new-tokens",
            "2",
        ],
    ));
    ok(c3(&store, &["check"]));
    // rm keeps it in step.
    ok(c3(&store, &["rm", "0"]));
    assert_eq!(
        json(c3(&store, &["check", "--json"]))["index"]["status"],
        "ok"
    );
}

#[test]
fn ask_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model();
    let none = tmp.path().join("none");
    assert!(err(c3(&none, &["--model", &m, "ask", "hello"])).contains("no store"));
    let (store, _) = ingested(tmp.path());
    assert!(err(c3(&store, &["--model", &m, "ask", "   "])).contains("empty"));
    assert!(err(c3(&store, &["ask", "hello"])).contains("no model"));
    assert!(
        err(c3(&store, &["--model", &m, "ask", "hello", "--doc", "9"])).contains("no document")
    );
    assert!(err(c3(
        &store,
        &["--model", &m, "ask", "qqqqzzzz", "--top-k", "2"]
    ))
    .contains("shares a word"));
    assert!(err(c3(
        &store,
        &["--model", &m, "ask", "hi", "--max-new-tokens", "40000"]
    ))
    .contains("no room"));
    let e = err(c3(
        &store,
        &[
            "--model",
            &m,
            "ask",
            "hi",
            "--mode",
            "latent",
            "--answer-model",
            "/nope",
        ],
    ));
    assert!(e.contains("--mode text"), "{e}");
    let e = err(c3(
        &store,
        &[
            "--model",
            &m,
            "ask",
            "hi",
            "--mode",
            "text",
            "--answer-model",
            "/nope",
        ],
    ));
    assert!(e.contains("/nope"), "{e}");
    // Nothing was lost along the way.
    ok(c3(&store, &["check"]));
}
