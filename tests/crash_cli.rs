//! `c3 ingest` killed with SIGKILL at random moments, then re-run, ends with
//! the same `c3 export` as an uninterrupted run (golden tiny model).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// `c3 ingest` of `src` into `store`, with ingest times pinned so that two
/// runs export identical bytes.
fn ingest(store: &Path, src: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c3"));
    c.arg("--store")
        .arg(store)
        .arg("--model")
        .arg(common::golden_model())
        .args(["ingest", "--chunk-tokens", "150", "--batch", "2"])
        .arg(src)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[test]
fn sigkill_during_ingest_then_rerun_matches_clean_export() {
    let src = tempfile::tempdir().unwrap();
    common::book_parts(src.path(), "part", 12, 2000, 8000);
    let work = tempfile::tempdir().unwrap();
    let clean = work.path().join("clean");
    let t = Instant::now();
    assert!(ingest(&clean, src.path()).status().unwrap().success());
    let span = t.elapsed().as_millis() as u64;

    let crashed = work.path().join("crashed");
    let mut clock = common::KillClock::new("crash_cli", 6, span);
    for i in 0..clock.runs() {
        clock.kill(i, ingest(&crashed, src.path()).spawn().unwrap());
        // A kill while the model was still loading leaves no store yet.
        if crashed.join("db").exists() {
            common::ok(common::c3(&crashed, &["check"]));
        }
    }
    let kills = clock.kills;
    assert!(
        kills > 0,
        "no run was interrupted (a clean run takes {span} ms)"
    );
    assert!(ingest(&crashed, src.path()).status().unwrap().success());

    let (a, b) = (work.path().join("a.c3"), work.path().join("b.c3"));
    common::ok(common::c3(&clean, &["export", a.to_str().unwrap()]));
    common::ok(common::c3(&crashed, &["export", b.to_str().unwrap()]));
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "exports differ after {kills} kills"
    );
}
