//! The store commands through the `c3` binary.

mod common;
mod store_support;

use std::path::Path;

use c3::store::Store;
use common::{c3, json};
use serde_json::Value;
use store_support::{model, put_doc, FakeCompressor};

/// A store with two documents: "book" (3 chunks) and "notes" (1 chunk).
fn sample(dir: &Path) {
    let enc = FakeCompressor::new("cli-fp");
    let store = Store::open(dir).unwrap();
    store.bind_model(&model(&enc)).unwrap();
    put_doc(
        &store,
        &enc,
        "/books/book.txt",
        &["It is a truth ", "universally\r\n", "acknowledged."],
    );
    put_doc(&store, &enc, "stdin:notes", &["ünïcode notes"]);
}

#[test]
fn ls_show_stats_rm() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    let ls = json(c3(dir.path(), &["ls", "--json"]));
    let docs = ls.as_array().unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["id"], 0);
    assert_eq!(docs[0]["source"], "/books/book.txt");
    assert_eq!(docs[0]["chunks"], 3);
    assert_eq!(
        docs[0]["bytes"],
        "It is a truth universally\r\nacknowledged.".len()
    );
    assert_eq!(docs[0]["tokens"], 14 + 13 + 13);
    let table = c3(dir.path(), &["ls"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("stdin:notes"));

    let chunk = json(c3(dir.path(), &["show", "0", "--chunk", "1", "--json"]));
    assert_eq!(chunk["text"], "universally\r\n");
    assert_eq!(
        (chunk["start"].as_u64(), chunk["end"].as_u64()),
        (Some(14), Some(27))
    );
    assert_eq!(chunk["latents"]["shape"], serde_json::json!([32, 16]));
    assert_eq!(chunk["latents"]["dtype"], "bf16");
    let by_source = json(c3(dir.path(), &["show", "stdin:notes", "--json", "--text"]));
    assert_eq!(by_source["text"], "ünïcode notes");
    assert_eq!(by_source["chunk_list"].as_array().unwrap().len(), 1);
    let missing = c3(dir.path(), &["show", "0", "--chunk", "9"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no chunk 9"));
    let nodoc = c3(dir.path(), &["show", "nope"]);
    assert!(String::from_utf8_lossy(&nodoc.stderr).contains("no document `nope`"));

    let stats = json(c3(dir.path(), &["stats", "--json"]));
    assert_eq!(stats["documents"], 2);
    assert_eq!(stats["chunks"], 4);
    assert_eq!(stats["latent_tokens"], 4 * 32);
    assert_eq!(stats["model"]["fingerprint"], "cli-fp");
    assert!(stats["bytes_on_disk"].as_u64().unwrap() > 0);

    assert!(c3(dir.path(), &["rm", "/books/book.txt"]).status.success());
    let ls = json(c3(dir.path(), &["ls", "--json"]));
    assert_eq!(ls.as_array().unwrap().len(), 1);
    assert!(c3(dir.path(), &["check"]).status.success());
}

#[test]
fn check_and_show_report_a_flipped_byte_by_key() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    assert!(c3(dir.path(), &["check"]).status.success());
    {
        let db = c3_migrations::open_db(dir.path()).unwrap();
        let t = db.open_tree("chunks").unwrap();
        let mut key = 0u64.to_be_bytes().to_vec();
        key.extend_from_slice(&2u32.to_be_bytes());
        let mut v = t.get(&key).unwrap().unwrap().to_vec();
        v[10] ^= 0xff;
        t.insert(key, v).unwrap();
        db.flush().unwrap();
    }
    let check = c3(dir.path(), &["check", "--json"]);
    assert_eq!(check.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&check.stdout).unwrap();
    let problems = r["problems"].to_string();
    assert!(problems.contains("doc 0 chunk 2"), "{problems}");
    let show = c3(dir.path(), &["show", "0", "--chunk", "2"]);
    assert_eq!(show.status.code(), Some(1));
    let err = String::from_utf8_lossy(&show.stderr);
    assert!(
        err.contains("`chunks`") && err.contains("doc 0 chunk 2"),
        "{err}"
    );
    // Undamaged records are still served.
    assert!(c3(dir.path(), &["show", "1", "--chunk", "0"])
        .status
        .success());
}

#[test]
fn export_then_import_round_trips() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    sample(a.path());
    let f1 = files.path().join("a.c3");
    let f2 = files.path().join("b.c3");
    assert!(c3(a.path(), &["export", f1.to_str().unwrap()])
        .status
        .success());
    let imp = json(c3(b.path(), &["import", f1.to_str().unwrap(), "--json"]));
    assert_eq!(imp["documents"], 2);
    assert!(c3(b.path(), &["export", f2.to_str().unwrap()])
        .status
        .success());
    assert_eq!(std::fs::read(&f1).unwrap(), std::fs::read(&f2).unwrap());
}

#[test]
fn ingest_without_model_and_newer_store_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("typo");
    let o = c3(&none, &["ls"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no store at"));
    assert!(!none.exists(), "ls created a store");
    let o = c3(dir.path(), &["ingest", "x.txt"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--model"));
    {
        let db = c3_migrations::open_db(dir.path()).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", &7u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let o = c3(dir.path(), &["ls"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("schema version 7 is newer"), "{err}");
}

#[test]
fn a_store_in_use_is_reported_not_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path());
    let held = Store::open(dir.path()).unwrap();
    let o = c3(dir.path(), &["ls"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("another c3 process"), "{err}");
    drop(held);
    assert!(c3(dir.path(), &["check"]).status.success());
}
