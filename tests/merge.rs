//! `c3 ingest --shard` and `c3 merge` end to end with the golden tiny model:
//! N shards merged export the same bytes as one process ingesting the same
//! corpus; the newer document wins; models are not mixed; a merge killed at
//! random moments resumes to the same store.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use c3::ingest::Shard;
use serde_json::Value;

const EPOCH: &str = "1700000000";

fn c3_cmd(store: &Path, model: &Path, args: &[&str], epoch: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c3"));
    c.arg("--store")
        .arg(store)
        .arg("--model")
        .arg(model)
        .args(args)
        .env("SOURCE_DATE_EPOCH", epoch)
        .env_remove("C3_MODEL")
        .env_remove(c3::ingest::INDEX_ENV);
    c
}

fn run(store: &Path, args: &[&str]) -> Output {
    c3_cmd(store, &common::golden_model(), args, EPOCH)
        .output()
        .unwrap()
}

fn merge(out: &Path, inputs: &[PathBuf]) -> Output {
    merge_env(out, inputs, &[])
}

fn merge_env(out: &Path, inputs: &[PathBuf], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c3"));
    c.envs(env.iter().copied());
    c.arg("merge")
        .arg("--out")
        .arg(out)
        .arg("--json")
        .args(inputs);
    c.env("SOURCE_DATE_EPOCH", EPOCH).output().unwrap()
}

fn export(store: &Path, file: &Path) -> Vec<u8> {
    common::ok(common::c3(store, &["export", file.to_str().unwrap()]));
    fs::read(file).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Code, prose, markdown, nested directories whose walk order is not the
/// byte order of their paths (`b.txt` vs `b/c.md`), a non-UTF-8 file (a
/// failure) and a binary one (skipped).
fn corpus(root: &Path) {
    let book =
        fs::read_to_string(common::fixtures().join("corpus/alice-in-wonderland.txt")).unwrap();
    for d in ["src", "docs/b", "prose", "bad"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(
        root.join("src/lib.rs"),
        "/// Adds one.\npub fn inc(x: u32) -> u32 {\n    x + 1\n}\n".repeat(30),
    )
    .unwrap();
    fs::write(root.join("src/tool.py"), "def main():\n    print('hi')\n").unwrap();
    fs::write(root.join("src/app.js"), "export const f = (a) => a * 2;\n").unwrap();
    fs::write(
        root.join("docs/README.md"),
        "# Tool\n\nIt does things.\n\n## Usage\n\nRun it.\n".repeat(8),
    )
    .unwrap();
    fs::write(root.join("docs/b.txt"), &book[..3000]).unwrap();
    fs::write(root.join("docs/b/c.md"), "## Nested\n\nA note.\n").unwrap();
    fs::write(root.join("prose/alice-1.txt"), &book[3000..40_000]).unwrap();
    fs::write(root.join("prose/alice-2.txt"), &book[40_000..52_000]).unwrap();
    fs::write(root.join("prose/z.txt"), "The last one.\n").unwrap();
    fs::write(root.join("bad/latin1.txt"), b"caf\xe9 au lait\n").unwrap();
    fs::write(root.join("bad/blob.txt"), b"\x00\x01\x02binary").unwrap();
}

/// Source strings the store records for the corpus's text files.
fn sources(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![fs::canonicalize(root).unwrap()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[test]
fn shards_merged_export_equals_single_process_ingest() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("corpus");
    corpus(&tree);
    let t = tree.to_str().unwrap();
    let single = work.path().join("single");
    let o = run(&single, &["ingest", "--json", "--batch", "2", t]);
    // The non-UTF-8 file fails (exit 1), the binary one is skipped.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["added"], 9, "{r}");
    assert_eq!(r["failed"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["skipped"].as_array().unwrap().len(), 1, "{r}");
    let want = export(&single, &work.path().join("single.c3x"));
    let bad = fs::canonicalize(tree.join("bad/latin1.txt")).unwrap();

    for n in [1u32, 2, 3, 7] {
        let mut inputs = Vec::new();
        let mut taken = 0u64;
        for i in 0..n {
            let store = work.path().join(format!("n{n}-s{i}"));
            let spec = format!("{i}/{n}");
            let o = run(
                &store,
                &["ingest", "--json", "--batch", "2", "--shard", &spec, t],
            );
            let r: Value = serde_json::from_slice(&o.stdout)
                .unwrap_or_else(|e| panic!("shard {spec}: {e}: {}", stderr(&o)));
            // Only the shard holding the bad file fails.
            let has_bad = Shard::of(&bad.to_string_lossy(), n) == i;
            assert_eq!(o.status.code(), Some(has_bad as i32), "{spec}: {r}");
            assert_eq!(r["shard"]["index"], i, "{r}");
            assert_eq!(r["shard"]["files_total"], 11, "{r}");
            taken += r["shard"]["files"].as_u64().unwrap();
            // Half the shards hand over an export file, half their store.
            if i % 2 == 1 {
                let f = work.path().join(format!("n{n}-s{i}.c3x"));
                export(&store, &f);
                inputs.push(f);
            } else {
                inputs.push(store);
            }
        }
        assert_eq!(taken, 11, "the {n} shards partition the files");
        // Finishing order must not matter: give the shards in reverse.
        inputs.reverse();
        let out = work.path().join(format!("merged-{n}"));
        // With 7 shards the input stores are also closed and reopened
        // before every document (as a long merge does every 32 MiB).
        let reopen: &[(&str, &str)] = if n == 7 {
            &[("C3_MERGE_REOPEN_BYTES", "1")]
        } else {
            &[]
        };
        let o = merge_env(&out, &inputs, reopen);
        let rep = common::json(o);
        assert_eq!(rep["documents"], 9, "{rep}");
        assert_eq!(rep["replaced"].as_array().unwrap().len(), 0, "{rep}");
        assert!(!work.path().join(format!("merged-{n}.merging")).exists());
        common::ok(common::c3(&out, &["check"]));
        let got = export(&out, &work.path().join(format!("merged-{n}.c3x")));
        assert!(
            got == want,
            "{n} shards: merged export differs from the single-process one ({} vs {} bytes)",
            got.len(),
            want.len()
        );
    }
}

/// The local end-to-end run: 3 shard processes at once over both
/// books and a source tree, merged: `check` ok, export equal to one run.
#[test]
fn parallel_shards_over_books_and_tree() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    corpus(&tree);
    let books = common::fixtures().join("corpus");
    let paths = [books.to_str().unwrap(), tree.to_str().unwrap()];
    let single = work.path().join("single");
    let mut args = vec!["ingest"];
    args.extend(paths);
    let o = run(&single, &args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let want = export(&single, &work.path().join("single.c3x"));

    let n = 3;
    let mut children = Vec::new();
    for i in 0..n {
        let store = work.path().join(format!("s{i}"));
        let mut c = c3_cmd(
            &store,
            &common::golden_model(),
            &["ingest", "--shard", "auto/3", paths[0], paths[1]],
            EPOCH,
        );
        c.env(c3::ingest::INDEX_ENV, i.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        children.push((store, c.spawn().unwrap()));
    }
    let mut stores = Vec::new();
    for (store, child) in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.code().is_some_and(|c| c <= 1), "{}", stderr(&o));
        stores.push(store);
    }
    let out = work.path().join("merged");
    let rep = common::json(merge(&out, &stores));
    assert_eq!(rep["documents"], 11, "{rep}");
    common::ok(common::c3(&out, &["check"]));
    let got = export(&out, &work.path().join("merged.c3x"));
    assert!(got == want, "merged export differs from the single run");
    // The rebuilt BM25 index answers from the merged store.
    let s = common::ok(common::c3(&out, &["check", "--json"]));
    let v: Value = serde_json::from_slice(&s.stdout).unwrap();
    assert!(v["index"]["problems"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn newer_document_wins_whatever_the_input_order() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("docs");
    fs::create_dir_all(&dir).unwrap();
    let f = dir.join("note.txt");
    let other = dir.join("other.txt");
    fs::write(&f, "The old version of the note.\n").unwrap();
    fs::write(&other, "Another document.\n").unwrap();
    let (old, new) = (work.path().join("old"), work.path().join("new"));
    let ingest = |store: &Path, epoch: &str, file: &Path| {
        let o = c3_cmd(
            store,
            &common::golden_model(),
            &["ingest", file.to_str().unwrap()],
            epoch,
        )
        .output()
        .unwrap();
        common::ok(o);
    };
    ingest(&old, "1000", &f);
    ingest(&old, "1000", &other);
    fs::write(&f, "The new version of the note, rewritten.\n").unwrap();
    ingest(&new, "2000", &f);
    let mut exports = Vec::new();
    for (k, inputs) in [
        vec![old.clone(), new.clone()],
        vec![new.clone(), old.clone()],
    ]
    .into_iter()
    .enumerate()
    {
        let out = work.path().join(format!("m{k}"));
        let rep = common::json(merge(&out, &inputs));
        assert_eq!(rep["documents"], 2, "{rep}");
        let r = &rep["replaced"];
        assert_eq!(r.as_array().unwrap().len(), 1, "{rep}");
        assert_eq!(r[0]["kept"], new.to_str().unwrap(), "{rep}");
        assert_eq!(r[0]["dropped"], old.to_str().unwrap(), "{rep}");
        assert_eq!(r[0]["kept_ingested_at_ms"], 2_000_000, "{rep}");
        let show = common::ok(common::c3(
            &out,
            &["show", f.to_str().unwrap(), "--text", "--json"],
        ));
        assert!(
            String::from_utf8_lossy(&show.stdout).contains("new version"),
            "{}",
            String::from_utf8_lossy(&show.stdout)
        );
        exports.push(export(&out, &work.path().join(format!("m{k}.c3x"))));
    }
    assert!(
        exports[0] == exports[1],
        "input order changed the merged store"
    );
}

#[test]
fn merge_refuses_another_model_naming_the_input() {
    let work = tempfile::tempdir().unwrap();
    let f = work.path().join("a.txt");
    fs::write(&f, "Some text to compress.\n").unwrap();
    let (c3s, lclm) = (work.path().join("c3"), work.path().join("lclm"));
    common::ok(run(&c3s, &["ingest", f.to_str().unwrap()]));
    let lclm_model = common::fixtures().join("golden-lclm/lclm-tiny-4x");
    common::ok(
        c3_cmd(&lclm, &lclm_model, &["ingest", f.to_str().unwrap()], EPOCH)
            .output()
            .unwrap(),
    );
    let out = work.path().join("out");
    let o = merge(&out, &[c3s.clone(), lclm.clone()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(lclm.to_str().unwrap())
            && e.contains("an LCLM 4x model")
            && e.contains("cannot be merged"),
        "{e}"
    );
    assert!(!out.exists() && !work.path().join("out.merging").exists());
    // A missing input and an output that is not empty are refused too.
    let o = merge(&out, &[work.path().join("nope")]);
    assert!(
        stderr(&o).contains("nope") && !o.status.success(),
        "{}",
        stderr(&o)
    );
    let o = merge(&c3s, std::slice::from_ref(&lclm));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    let o = merge(&out, &[c3s.clone(), c3s.clone()]);
    assert!(stderr(&o).contains("given twice"), "{}", stderr(&o));
}

#[test]
fn bad_shard_values_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let f = work.path().join("a.txt");
    fs::write(&f, "text\n").unwrap();
    let store = work.path().join("s");
    for (spec, why) in [
        ("2/2", "index 2 is not below the shard count 2"),
        ("0/0", "at least 1"),
        ("x", "expected I/N"),
        ("auto/4", "JOB_COMPLETION_INDEX"),
    ] {
        let o = run(&store, &["ingest", "--shard", spec, f.to_str().unwrap()]);
        assert!(!o.status.success(), "{spec}");
        assert!(stderr(&o).contains(why), "{spec}: {}", stderr(&o));
    }
    let o = run(&store, &["ingest", "--shard", "0/2", "-"]);
    assert!(stderr(&o).contains("standard input"), "{}", stderr(&o));
    assert!(
        !store.join("db").exists(),
        "a refused ingest created the store"
    );
}

#[test]
fn prune_with_shard_only_prunes_that_shard() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("t");
    fs::create_dir_all(&tree).unwrap();
    // Enough files that both shards of 2 lose some.
    for i in 0..12 {
        fs::write(
            tree.join(format!("f{i:02}.txt")),
            format!("File number {i}.\n"),
        )
        .unwrap();
    }
    let store = work.path().join("s");
    common::ok(run(&store, &["ingest", tree.to_str().unwrap()]));
    let all = sources(&tree);
    for s in &all {
        fs::remove_file(s).unwrap();
    }
    let in0: Vec<&String> = all.iter().filter(|s| Shard::of(s, 2) == 0).collect();
    assert!(
        !in0.is_empty() && in0.len() < all.len(),
        "both shards need files"
    );
    let o = run(
        &store,
        &[
            "ingest",
            "--json",
            "--prune",
            "--shard",
            "0/2",
            tree.to_str().unwrap(),
        ],
    );
    let r = common::json(o);
    assert_eq!(r["pruned"], in0.len(), "{r}");
    let ls = common::json(common::c3(&store, &["ls", "--json"]));
    let left: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["source"].as_str().unwrap())
        .collect();
    assert_eq!(left.len(), all.len() - in0.len());
    assert!(left.iter().all(|s| Shard::of(s, 2) == 1), "{left:?}");
}

/// `c3 merge` killed with SIGKILL at random moments, then re-run, ends
/// with the same store as an uninterrupted merge.
#[test]
fn sigkill_during_merge_then_rerun_matches_clean_merge() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    common::book_parts(&src, "part", 40, 500, 1500);
    let shards: Vec<PathBuf> = (0..2)
        .map(|i| {
            let s = work.path().join(format!("s{i}"));
            let spec = format!("{i}/2");
            common::ok(run(
                &s,
                &[
                    "ingest",
                    "--chunk-tokens",
                    "100",
                    "--shard",
                    &spec,
                    src.to_str().unwrap(),
                ],
            ));
            s
        })
        .collect();
    let clean = work.path().join("clean");
    let t = Instant::now();
    common::ok(merge(&clean, &shards));
    let span = t.elapsed().as_millis() as u64;
    let want = export(&clean, &work.path().join("clean.c3x"));

    let out = work.path().join("crashed");
    let staged = work.path().join("crashed.merging");
    let mut clock = common::KillClock::new("merge_kill", 8, span);
    for i in 0..clock.runs() {
        if out.exists() {
            if clock.kills > 0 {
                break;
            }
            // Finished before any kill: start over, so there is something
            // to interrupt (the clock shortens the next delays).
            fs::remove_dir_all(&out).unwrap();
        }
        let mut c = Command::new(env!("CARGO_BIN_EXE_c3"));
        c.arg("merge").arg("--out").arg(&out).args(&shards);
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        clock.kill(i, child);
        // Either the merge is complete at its place or still staged.
        assert!(!(out.exists() && staged.exists()));
    }
    assert!(
        clock.kills > 0,
        "no merge was interrupted (a clean one takes {span} ms)"
    );
    if !out.exists() {
        let rep = common::json(merge(&out, &shards));
        eprintln!("resumed {} documents", rep["resumed_documents"]);
    }
    common::ok(common::c3(&out, &["check"]));
    let got = export(&out, &work.path().join("crashed.c3x"));
    assert!(got == want, "the resumed merge differs from the clean one");
}

#[test]
fn damaged_export_is_refused_naming_the_file_and_nothing_is_published() {
    let work = tempfile::tempdir().unwrap();
    let f = work.path().join("a.txt");
    fs::write(&f, "A document whose export gets damaged in transit.\n").unwrap();
    let store = work.path().join("s");
    common::ok(run(&store, &["ingest", f.to_str().unwrap()]));
    let file = work.path().join("s.c3x");
    let mut bytes = export(&store, &file);
    let at = bytes
        .windows(7)
        .position(|w| w == b"damaged")
        .expect("the text is in the export");
    bytes[at] ^= 0x20;
    fs::write(&file, &bytes).unwrap();
    let out = work.path().join("out");
    let o = merge(&out, std::slice::from_ref(&file));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(file.to_str().unwrap()) && e.contains("content hash"),
        "{e}"
    );
    assert!(!out.exists(), "a failed merge published its output");
    // The source store itself is untouched and still merges.
    let rep = common::json(merge(&work.path().join("out2"), &[store]));
    assert_eq!(rep["documents"], 1, "{rep}");
}
