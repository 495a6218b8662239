//! Ingest of books, source trees and stdin-like inputs with a fake encoder.

mod store_support;

use std::fs;
use std::path::Path;

use c3::chunk::Chunker;
use c3::ingest::{ingest, IngestOptions, Input};
use c3::store::Store;
use store_support::{ByteSizer, FakeCompressor};

fn run(
    store: &Store,
    enc: &FakeCompressor,
    paths: &[&Path],
    prune: bool,
) -> c3::ingest::IngestReport {
    let chunker = Chunker::new(ByteSizer, 1000).unwrap();
    let inputs: Vec<Input> = paths.iter().map(|p| Input::Path(p.to_path_buf())).collect();
    let opts = IngestOptions {
        prune,
        ..Default::default()
    };
    ingest(store, enc, &chunker, &inputs, &opts).unwrap()
}

/// A small source tree with every kind of file the walker must handle.
fn source_tree(root: &Path) {
    fs::create_dir_all(root.join("src/nested")).unwrap();
    fs::create_dir_all(root.join("target")).unwrap();
    fs::create_dir_all(root.join(".hidden")).unwrap();
    fs::write(root.join(".gitignore"), "target/\n*.log\n").unwrap();
    fs::write(
        root.join("README.md"),
        "# Demo\n\nSome *markdown* text.\n\n## Part\n\nMore.\n",
    )
    .unwrap();
    fs::write(
        root.join("src/main.rs"),
        "fn main() {\n    println!(\"hi\");\n}\n".repeat(50),
    )
    .unwrap();
    fs::write(
        root.join("src/nested/util.py"),
        "def f(x):\n    return x + 1\n\n".repeat(30),
    )
    .unwrap();
    fs::write(root.join("src/app.ts"), "export const x: number = 1;\n").unwrap();
    fs::write(
        root.join("src/lib.go"),
        "package lib\n\nfunc F() int { return 1 }\n",
    )
    .unwrap();
    fs::write(root.join("src/__init__.py"), "").unwrap();
    fs::write(root.join("target/out.txt"), "ignored build output").unwrap();
    fs::write(root.join("run.log"), "ignored log").unwrap();
    fs::write(root.join(".hidden/secret.txt"), "hidden").unwrap();
    fs::write(
        root.join("image.bin"),
        [0x89u8, b'P', b'N', b'G', 0, 0, 1, 2],
    )
    .unwrap();
    fs::write(root.join("latin1.txt"), b"caf\xe9 au lait").unwrap();
}

#[test]
fn books_and_tree_then_second_run_writes_nothing() {
    let store_dir = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    source_tree(tree.path());
    let enc = FakeCompressor::new("fp");
    let store = Store::open(store_dir.path()).unwrap();
    let pp = store_support::corpus("pride-and-prejudice.txt");
    let alice = store_support::corpus("alice-in-wonderland.txt");
    let r = run(&store, &enc, &[&pp, &alice, tree.path()], false);

    // Stored: 2 books + README, main.rs, util.py, app.ts, lib.go.
    assert_eq!(r.added, 7, "{r:?}");
    assert_eq!(r.failed.len(), 1, "{:?}", r.failed);
    assert!(r.failed[0].source.ends_with("latin1.txt") && r.failed[0].error.contains("UTF-8"));
    let skipped: Vec<&str> = r.skipped.iter().map(|s| s.source.as_str()).collect();
    assert!(
        skipped.iter().any(|s| s.ends_with("image.bin")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|s| s.ends_with("__init__.py")),
        "{skipped:?}"
    );
    let sources: Vec<String> = store.documents().map(|d| d.unwrap().source).collect();
    for gone in ["out.txt", "run.log", "secret.txt", ".gitignore"] {
        assert!(
            !sources.iter().any(|s| s.ends_with(gone)),
            "{gone} was ingested"
        );
    }
    let kinds: Vec<String> = store.documents().map(|d| d.unwrap().kind).collect();
    for k in [
        "code:rust",
        "code:python",
        "code:typescript",
        "code:go",
        "markdown",
        "text",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} document");
    }

    let check = store.check().unwrap();
    assert!(check.ok(), "{:?}", check.problems);
    let s = store.stats().unwrap();
    let book_bytes = fs::metadata(&pp).unwrap().len() + fs::metadata(&alice).unwrap().len();
    assert_eq!(s.documents, 7);
    assert_eq!(s.chunks, r.chunks);
    assert_eq!(s.text_tokens, r.tokens);
    assert_eq!(s.latent_tokens, r.chunks * 32);
    assert!(s.text_bytes > book_bytes);
    assert_eq!(check.chunks, s.chunks);
    // ~845 KB of books at ~4 bytes/token in <=1000-token windows, filled
    // at least half on average.
    assert!(s.chunks >= 212, "{} chunks", s.chunks);
    assert!(
        s.text_tokens / s.chunks >= 500,
        "{} tokens per chunk",
        s.text_tokens / s.chunks
    );

    let g = store.generation().unwrap();
    let r2 = run(&store, &enc, &[&pp, &alice, tree.path()], false);
    assert_eq!(
        (r2.added, r2.replaced, r2.unchanged, r2.chunks),
        (0, 0, 7, 0)
    );
    assert_eq!(
        store.generation().unwrap(),
        g,
        "second run changed the store"
    );
}

#[test]
fn changed_file_is_replaced_and_prune_removes_deleted() {
    let store_dir = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("fp");
    fs::write(tree.path().join("a.txt"), "first version").unwrap();
    fs::write(tree.path().join("b.txt"), "stays").unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let r = run(&store, &enc, &[tree.path()], false);
    assert_eq!(r.added, 2);
    let a = tree.path().join("a.txt");
    let old = store.resolve(a.to_str().unwrap()).unwrap();

    fs::write(&a, "second version, longer").unwrap();
    let r = run(&store, &enc, &[tree.path()], false);
    assert_eq!((r.added, r.replaced, r.unchanged), (0, 1, 1));
    let new = store.resolve(a.to_str().unwrap()).unwrap();
    assert_ne!(old.id, new.id);
    assert!(store.document(old.id).unwrap().is_none());
    let c = store.chunk_record(new.id, 0).unwrap();
    assert_eq!(store.chunk_text(&c).unwrap(), "second version, longer");

    fs::remove_file(&a).unwrap();
    let r = run(&store, &enc, &[tree.path()], false);
    assert_eq!(r.pruned, 0, "prune only when asked");
    assert_eq!(store.documents().count(), 2);
    let r = run(&store, &enc, &[tree.path()], true);
    assert_eq!(r.pruned, 1);
    assert_eq!(store.documents().count(), 1);
    assert!(store.check().unwrap().ok());
}

#[test]
fn per_file_failures_do_not_stop_the_rest() {
    let store_dir = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    let enc = FakeCompressor::new("fp");
    let empty = tree.path().join("empty.txt");
    let bad = tree.path().join("bad.txt");
    let refused = tree.path().join("refused.txt");
    let good = tree.path().join("good.txt");
    fs::write(&empty, "").unwrap();
    fs::write(&bad, [0xffu8, 0xfe, b'a']).unwrap();
    fs::write(&refused, "this one says FAIL_ENCODE to the fake encoder").unwrap();
    fs::write(&good, "fine text").unwrap();
    let missing = tree.path().join("missing.txt");
    let store = Store::open(store_dir.path()).unwrap();
    let r = run(
        &store,
        &enc,
        &[&empty, &bad, &missing, &refused, &good],
        false,
    );
    assert!(!r.ok());
    assert_eq!(r.added, 1);
    let failed: Vec<String> = r
        .failed
        .iter()
        .map(|f| format!("{}: {}", f.source, f.error))
        .collect();
    assert_eq!(failed.len(), 4, "{failed:?}");
    assert!(failed
        .iter()
        .any(|f| f.contains("empty.txt") && f.contains("empty")));
    assert!(failed
        .iter()
        .any(|f| f.contains("bad.txt") && f.contains("UTF-8")));
    assert!(failed.iter().any(|f| f.contains("missing.txt")));
    assert!(failed
        .iter()
        .any(|f| f.contains("refused.txt") && f.contains("encoding failed")));
    let check = store.check().unwrap();
    assert!(check.ok(), "{:?}", check.problems);
    assert_eq!(check.documents, 1);
}

#[test]
fn a_store_refuses_a_second_model() {
    let store_dir = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    fs::write(tree.path().join("a.txt"), "text").unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    run(
        &store,
        &FakeCompressor::new("model-one"),
        &[tree.path()],
        false,
    );
    let chunker = Chunker::new(ByteSizer, 1000).unwrap();
    let err = ingest(
        &store,
        &FakeCompressor::new("model-two"),
        &chunker,
        &[Input::Path(tree.path().to_path_buf())],
        &IngestOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, c3::Error::ModelMismatch { stored, .. } if stored.fingerprint == "model-one"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("holds latents of a C3 model model-one"),
        "{err}"
    );
    assert_eq!(store.documents().count(), 1);
}

#[cfg(unix)]
#[test]
fn symlink_loops_are_safe() {
    let store_dir = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    fs::create_dir(tree.path().join("d")).unwrap();
    fs::write(tree.path().join("d/f.txt"), "looped").unwrap();
    std::os::unix::fs::symlink(tree.path(), tree.path().join("d/up")).unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let r = run(&store, &FakeCompressor::new("fp"), &[tree.path()], false);
    assert_eq!(r.added, 1, "{r:?}");
    assert!(r.ok(), "{:?}", r.failed);
}

#[test]
fn large_files_are_streamed_in_sections() {
    let store_dir = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    let book = fs::read(store_support::corpus("alice-in-wonderland.txt")).unwrap();
    let big = tree.path().join("big.txt");
    fs::write(&big, &book).unwrap();
    let mut bad = book.clone();
    let at = bad.len() - 1000;
    bad[at] = 0xff;
    let late_bad = tree.path().join("late-bad.txt");
    fs::write(&late_bad, &bad).unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let chunker = Chunker::new(ByteSizer, 1000).unwrap();
    let opts = IngestOptions {
        section_bytes: 20_000,
        ..Default::default()
    };
    let inputs = [Input::Path(big.clone()), Input::Path(late_bad.clone())];
    let enc = FakeCompressor::new("fp");
    let r = ingest(&store, &enc, &chunker, &inputs, &opts).unwrap();
    assert_eq!(r.added, 1);
    assert_eq!(r.failed.len(), 1);
    assert!(
        r.failed[0].error.contains(&format!("offset {at}")),
        "{:?}",
        r.failed
    );
    let check = store.check().unwrap();
    assert!(check.ok(), "{:?}", check.problems);
    assert_eq!(check.chunks, r.chunks);
    let d = store.resolve(big.to_str().unwrap()).unwrap();
    let mut text = String::new();
    for i in 0..d.chunk_count {
        let c = store.chunk_record(d.id, i).unwrap();
        assert!(c.tokens <= 1000);
        text.push_str(&store.chunk_text(&c).unwrap());
    }
    assert_eq!(text.as_bytes(), &book[..]);
    // Unchanged on a second run, also when streamed.
    let r = ingest(&store, &enc, &chunker, &inputs[..1], &opts).unwrap();
    assert_eq!((r.added, r.unchanged), (0, 1));
}

// Issue 23: a sync stopped by its watch (an MCP client cancelling) must
// not prune the documents it never reached: they are not gone, only not
// visited yet.
#[test]
fn a_cancelled_sync_removes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..6 {
        fs::write(tree.join(format!("f{i}.txt")), format!("file number {i}\n")).unwrap();
    }
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let enc = FakeCompressor::new("sync-fp");
    assert_eq!(run(&store, &enc, &[&tree], false).added, 6);
    // Every file changes; the watch stops the run after the first document.
    for i in 0..6 {
        fs::write(
            tree.join(format!("f{i}.txt")),
            format!("file number {i}, edited\n"),
        )
        .unwrap();
    }
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let opts = IngestOptions {
        prune: true,
        watch: Some(c3::ingest::Watch(std::sync::Arc::new(
            move |t: &c3::ingest::Tick| {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                t.docs_done < 1
            },
        ))),
        ..Default::default()
    };
    let chunker = Chunker::new(ByteSizer, 1000).unwrap();
    let r = c3::ingest::sync(&store, &enc, &chunker, std::slice::from_ref(&tree), &opts).unwrap();
    assert!(r.cancelled, "{r:?}");
    assert_eq!(r.removed, 0, "{r:?}");
    assert!(calls.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert_eq!(
        store.documents().count(),
        6,
        "a cancelled sync pruned documents"
    );
    assert!(store.check().unwrap().ok());
}
