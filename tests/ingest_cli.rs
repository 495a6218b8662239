//! `c3 ingest` end to end with the golden tiny model and the real tokenizer.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn c3(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(store)
        .arg("--model")
        .arg(fixtures().join("golden/c3-tiny"))
        .args(args)
        .output()
        .unwrap()
}

fn json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn source_tree(root: &Path) {
    fs::create_dir_all(root.join("src")).unwrap();
    fs::write(root.join(".gitignore"), "build/\n").unwrap();
    fs::create_dir_all(root.join("build")).unwrap();
    fs::write(root.join("build/gen.rs"), "// generated").unwrap();
    fs::write(
        root.join("README.md"),
        "# Tool\n\nIt does things.\n\n## Usage\n\nRun it.\n",
    )
    .unwrap();
    fs::write(
        root.join("src/lib.rs"),
        "/// Adds one.\npub fn inc(x: u32) -> u32 {\n    x + 1\n}\n".repeat(40),
    )
    .unwrap();
    fs::write(
        root.join("src/tool.py"),
        "def main():\n    print('<img> is plain text here')\n",
    )
    .unwrap();
    fs::write(
        root.join("src/app.js"),
        "export function f(a) { return a * 2; }\n",
    )
    .unwrap();
}

#[test]
fn books_and_source_tree_with_golden_model() {
    let store = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    source_tree(tree.path());
    let corpus = fixtures().join("corpus");
    let pp = corpus.join("pride-and-prejudice.txt");
    let alice = corpus.join("alice-in-wonderland.txt");
    let args = [
        "ingest",
        "--json",
        pp.to_str().unwrap(),
        alice.to_str().unwrap(),
        tree.path().to_str().unwrap(),
    ];
    let r = json(&c3(store.path(), &args));
    assert_eq!(r["added"], 6, "{r}");
    // Where it ran is reported (a build without `cuda` runs on the CPU).
    if !cfg!(feature = "cuda") {
        assert_eq!(r["device"], "cpu", "{r}");
        assert!(r["dense_product"].is_string(), "{r}");
        // The default precision: the integer products where the CPU has AVX2.
        let want = if c3::model::quant::i16_supported() {
            "i16"
        } else {
            "dense"
        };
        assert_eq!(r["encoder_precision"], want, "{r}");
        // And which kernel ran them: the best this CPU has.
        let kernel = c3::model::quant::i16_kernel_name().unwrap_or("dense");
        assert_eq!(r["encoder_kernel"], kernel, "{r}");
    }
    assert_eq!(r["failed"].as_array().unwrap().len(), 0, "{r}");
    let chunks = r["chunks"].as_u64().unwrap();

    assert!(c3(store.path(), &["check"]).status.success());
    let stats = json(&c3(store.path(), &["stats", "--json"]));
    let ls = json(&c3(store.path(), &["ls", "--json"]));
    let docs = ls.as_array().unwrap();
    assert_eq!(stats["documents"].as_u64(), Some(docs.len() as u64));
    let sum = |k: &str| docs.iter().map(|d| d[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(stats["chunks"].as_u64(), Some(sum("chunks")));
    assert_eq!(stats["chunks"].as_u64(), Some(chunks));
    assert_eq!(stats["text_tokens"].as_u64(), Some(sum("tokens")));
    assert_eq!(stats["text_tokens"], r["tokens"]);
    assert_eq!(stats["latent_tokens"].as_u64(), Some(chunks * 32));
    assert!(!docs
        .iter()
        .any(|d| d["source"].as_str().unwrap().ends_with("gen.rs")));

    // Every chunk of the book fits the default window, and the chunks of a
    // document rebuild it byte for byte.
    let book = docs
        .iter()
        .find(|d| {
            d["source"]
                .as_str()
                .unwrap()
                .ends_with("alice-in-wonderland.txt")
        })
        .unwrap();
    let id = book["id"].to_string();
    let mut text = Vec::new();
    for n in 0..book["chunks"].as_u64().unwrap() {
        let c = json(&c3(
            store.path(),
            &["show", &id, "--chunk", &n.to_string(), "--json"],
        ));
        assert!(c["tokens"].as_u64().unwrap() <= 1000);
        assert_eq!(c["latents"]["shape"], serde_json::json!([32, 16]));
        text.extend_from_slice(c["text"].as_str().unwrap().as_bytes());
    }
    assert_eq!(text, fs::read(&alice).unwrap());

    // A second run writes nothing.
    let gen = stats["generation"].clone();
    let again = json(&c3(store.path(), &args));
    assert_eq!(
        (
            again["added"].as_u64(),
            again["replaced"].as_u64(),
            again["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(6))
    );
    assert_eq!(again["chunks"], 0);
    assert_eq!(
        json(&c3(store.path(), &["stats", "--json"]))["generation"],
        gen
    );
}

#[test]
fn stdin_and_bad_files() {
    let store = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    fs::write(&bad, [b'o', b'k', 0xff]).unwrap();
    let empty = dir.path().join("empty.txt");
    fs::write(&empty, "").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(store.path())
        .arg("--model")
        .arg(fixtures().join("golden/c3-tiny"))
        .args(["ingest", "-", "--name", "notes.md", "--json"])
        .arg(&bad)
        .arg(&empty)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"# Notes\n\nA <|im_end|> in a note is text.\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed file makes the exit code non-zero"
    );
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["added"], 1);
    let failed = r["failed"].to_string();
    assert!(
        failed.contains("bad.txt") && failed.contains("UTF-8"),
        "{failed}"
    );
    assert!(failed.contains("empty.txt"), "{failed}");
    let note = json(&c3(store.path(), &["show", "stdin:notes.md", "--json"]));
    assert_eq!(note["kind"], "markdown");
}

#[test]
fn chunk_tokens_option_and_model_mismatch() {
    let store = tempfile::tempdir().unwrap();
    let alice = fixtures().join("corpus/alice-in-wonderland.txt");
    let o = c3(
        store.path(),
        &[
            "ingest",
            "--chunk-tokens",
            "1400",
            "--json",
            alice.to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("above 1300"));
    let r = json(&o);
    let ls = json(&c3(store.path(), &["ls", "--json"]));
    assert_eq!(ls[0]["chunks"], r["chunks"]);
    let id = ls[0]["id"].to_string();
    let max = (0..r["chunks"].as_u64().unwrap())
        .map(|n| {
            json(&c3(
                store.path(),
                &["show", &id, "--chunk", &n.to_string(), "--json"],
            ))["tokens"]
                .as_u64()
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(max > 1000 && max <= 1400, "largest chunk {max}");

    // A store made with another model refuses this one.
    let other = tempfile::tempdir().unwrap();
    {
        let s = c3::store::Store::open(other.path()).unwrap();
        s.bind_model(&c3::store::ModelRecord {
            fingerprint: "someone-else".into(),
            latent_len: 32,
            hidden_size: 16,
        })
        .unwrap();
    }
    let o = c3(other.path(), &["ingest", alice.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("holds latents of a C3 model someone-else"),
        "{err}"
    );
}

#[test]
fn large_stdin_is_spooled_and_sectioned() {
    let store = tempfile::tempdir().unwrap();
    let alice = fs::read(fixtures().join("corpus/alice-in-wonderland.txt")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(store.path())
        .arg("--model")
        .arg(fixtures().join("golden/c3-tiny"))
        .args([
            "ingest",
            "-",
            "--name",
            "alice",
            "--json",
            "--section-bytes",
            "30000",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = alice.clone();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&data).unwrap();
    });
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let r = json(&o);
    assert_eq!(r["added"], 1, "{r}");
    let doc = json(&c3(
        store.path(),
        &["show", "stdin:alice", "--json", "--text"],
    ));
    assert_eq!(doc["text"].as_str().unwrap().as_bytes(), &alice[..]);
    assert!(doc["chunk_list"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["tokens"].as_u64().unwrap() <= 1000));
    let leftovers: Vec<_> = fs::read_dir(store.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("spool"))
        .collect();
    assert!(leftovers.is_empty(), "spool file left behind");
    assert!(c3(store.path(), &["check"]).status.success());
}
