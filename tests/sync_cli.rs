//! Issue 23: `c3 sync` through the binary with the golden tiny model. A
//! tree edited between runs (files added, changed, removed, renamed) gives
//! the counts, and the store then holds what a fresh ingest of the final
//! tree holds; a sync killed with SIGKILL at random moments and run again
//! ends with the same export as an uninterrupted one.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{json, ok};
use serde_json::Value;

fn c3_cmd(store: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c3"));
    c.arg("--store")
        .arg(store)
        .arg("--model")
        .arg(common::golden_model())
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("C3_MODEL");
    c
}

fn c3(store: &Path, args: &[&str]) -> std::process::Output {
    c3_cmd(store, args).output().unwrap()
}

fn sync(store: &Path, tree: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "sync",
        tree.to_str().unwrap(),
        "--chunk-tokens",
        "150",
        "--json",
    ];
    args.extend_from_slice(extra);
    json(c3(store, &args))
}

/// The edits between runs: one file added, one changed, one removed, one
/// renamed.
fn edit(tree: &Path) {
    std::fs::write(
        tree.join("new.txt"),
        "A brand new file about the lantern.\n",
    )
    .unwrap();
    let p = tree.join("part01.txt");
    let t = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("An edited first line.\n{t}")).unwrap();
    std::fs::remove_file(tree.join("part02.txt")).unwrap();
    std::fs::rename(tree.join("part03.txt"), tree.join("renamed.txt")).unwrap();
}

/// The documents of an export, by source, without what differs between
/// two stores holding the same files (ids, ingest times). The manifest is
/// the last `{"format":"c3-export"` of the file (the header has one too).
fn export_view(store: &Path, file: &Path) -> BTreeMap<String, Value> {
    ok(common::c3(store, &["export", file.to_str().unwrap()]));
    let bytes = std::fs::read(file).unwrap();
    let start = bytes
        .windows(21)
        .rposition(|w| w == b"{\"format\":\"c3-export\"")
        .expect("a manifest");
    let mut lines = bytes[start..].split(|b| *b == b'\n');
    let head: Value = serde_json::from_slice(lines.next().unwrap()).unwrap();
    let n = head["documents"].as_u64().unwrap() as usize;
    lines
        .take(n)
        .map(|l| {
            let mut d: Value = serde_json::from_slice(l).unwrap();
            let o = d.as_object_mut().unwrap();
            o.remove("id");
            o.remove("ingested_at_ms");
            (o["source"].as_str().unwrap().to_string(), d)
        })
        .collect()
}

#[test]
fn sync_counts_edits_and_matches_a_fresh_ingest_of_the_final_tree() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    common::book_parts(&tree, "part", 6, 800, 1500);
    let store = work.path().join("store");

    let r = sync(&store, &tree, &["--meta", "project=alice"]);
    assert_eq!(
        (&r["new"], &r["changed"], &r["unchanged"], &r["removed"]),
        (&6.into(), &0.into(), &0.into(), &0.into()),
        "{r}"
    );
    let r = sync(&store, &tree, &["--meta", "project=alice"]);
    assert_eq!((&r["new"], &r["unchanged"]), (&0.into(), &6.into()), "{r}");

    edit(&tree);
    // Without --prune nothing is removed.
    let keep = work.path().join("keep");
    copy_dir(&store, &keep);
    let r = sync(&keep, &tree, &["--meta", "project=alice"]);
    assert_eq!(
        (&r["new"], &r["changed"], &r["unchanged"], &r["removed"]),
        (&2.into(), &1.into(), &3.into(), &0.into()),
        "{r}"
    );
    assert_eq!(
        json(common::c3(&keep, &["ls", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        8
    );

    let r = sync(&store, &tree, &["--prune", "--meta", "project=alice"]);
    assert_eq!(
        (&r["new"], &r["changed"], &r["unchanged"], &r["removed"]),
        (&2.into(), &1.into(), &3.into(), &2.into()),
        "{r}"
    );
    ok(common::c3(&store, &["check"]));
    // Documents from elsewhere are never pruned.
    let other = work.path().join("other.txt");
    std::fs::write(&other, "Somewhere else entirely.\n").unwrap();
    ok(c3(
        &store,
        &["ingest", other.to_str().unwrap(), "--chunk-tokens", "150"],
    ));
    let r = sync(&store, &tree, &["--prune", "--meta", "project=alice"]);
    assert_eq!(
        (&r["removed"], &r["unchanged"]),
        (&0.into(), &6.into()),
        "{r}"
    );
    ok(c3(&store, &["rm", other.to_str().unwrap()]));

    let fresh = work.path().join("fresh");
    ok(c3(
        &fresh,
        &[
            "ingest",
            tree.to_str().unwrap(),
            "--chunk-tokens",
            "150",
            "--meta",
            "project=alice",
        ],
    ));
    let a = export_view(&store, &work.path().join("a.c3x"));
    let b = export_view(&fresh, &work.path().join("b.c3x"));
    assert_eq!(a.len(), 6);
    assert_eq!(
        a, b,
        "synced store differs from a fresh ingest of the final tree"
    );
    let text = String::from_utf8(c3(&store, &["sync", "-"]).stderr).unwrap();
    assert!(text.contains("c3 sync reads files and folders"), "{text}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn sigkill_during_sync_then_rerun_matches_an_uninterrupted_sync() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    common::book_parts(&tree, "part", 12, 2000, 8000);
    let base = work.path().join("base");
    sync(&base, &tree, &[]);
    edit(&tree);
    // Enough changed text that a kill lands inside the run.
    for i in 4..10 {
        let p = tree.join(format!("part{i:02}.txt"));
        let t = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("{t}\nMore about part {i}.\n")).unwrap();
    }
    let run = |store: &Path| {
        let mut c = c3_cmd(
            store,
            &[
                "sync",
                tree.to_str().unwrap(),
                "--prune",
                "--chunk-tokens",
                "150",
                "--batch",
                "2",
            ],
        );
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };

    let clean = work.path().join("clean");
    copy_dir(&base, &clean);
    let t = Instant::now();
    assert!(run(&clean).status().unwrap().success());
    let span = t.elapsed().as_millis() as u64;

    let crashed = work.path().join("crashed");
    copy_dir(&base, &crashed);
    let mut clock = common::KillClock::new("sync_cli", 6, span);
    for i in 0..clock.runs() {
        clock.kill(i, run(&crashed).spawn().unwrap());
        ok(common::c3(&crashed, &["check"]));
    }
    let kills = clock.kills;
    assert!(
        kills > 0,
        "no run was interrupted (a clean run takes {span} ms)"
    );
    assert!(run(&crashed).status().unwrap().success());

    let (a, b) = (work.path().join("a.c3x"), work.path().join("b.c3x"));
    ok(common::c3(&clean, &["export", a.to_str().unwrap()]));
    ok(common::c3(&crashed, &["export", b.to_str().unwrap()]));
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "exports differ after {kills} kills"
    );
}
