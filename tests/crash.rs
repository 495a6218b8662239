//! Crash safety: SIGKILL an ingest at random moments, re-run it, and compare
//! the final export with that of an uninterrupted run.
//!
//! The ingest runs in a child process: this test binary re-executed with
//! `C3_CRASH_CHILD` set, running only `crash_child`.

mod common;
mod store_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use c3::chunk::Chunker;
use c3::ingest::{ingest, IngestOptions, Input};
use c3::store::{export, Store};
use store_support::{ByteSizer, FakeCompressor};

/// Runs an ingest when spawned by the crash test; a no-op otherwise.
#[test]
fn crash_child() {
    let (Ok(store), Ok(src)) = (
        std::env::var("C3_CRASH_CHILD"),
        std::env::var("C3_CRASH_SRC"),
    ) else {
        return;
    };
    let store = Store::open(Path::new(&store)).unwrap();
    let mut enc = FakeCompressor::new("crash-fp");
    enc.delay = Duration::from_millis(4);
    let chunker = Chunker::new(ByteSizer, 200).unwrap();
    let opts = IngestOptions {
        batch_size: 3,
        ..Default::default()
    };
    let r = ingest(
        &store,
        &enc,
        &chunker,
        &[Input::Path(PathBuf::from(src))],
        &opts,
    )
    .unwrap();
    assert!(r.ok());
}

fn child(store: &Path, src: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "crash_child", "--test-threads=1", "--nocapture"])
        .env("C3_CRASH_CHILD", store)
        .env("C3_CRASH_SRC", src)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

fn export_bytes(store: &Path, out: &Path) -> Vec<u8> {
    let s = Store::open(store).unwrap();
    let check = s.check().unwrap();
    assert!(check.ok(), "{:?}", check.problems);
    export::export(&s, out).unwrap();
    std::fs::read(out).unwrap()
}

#[test]
fn sigkill_at_random_moments_then_rerun_equals_clean_run() {
    if std::env::var("C3_CRASH_CHILD").is_ok() {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    common::book_parts(src.path(), "doc", 14, 1500, 9000);
    let work = tempfile::tempdir().unwrap();

    let clean = work.path().join("clean");
    let t = Instant::now();
    assert!(child(&clean, src.path()).status().unwrap().success());
    let full_ms = t.elapsed().as_millis() as u64;

    let crashed = work.path().join("crashed");
    let mut clock = common::KillClock::new("crash test", 6, full_ms.max(100));
    for i in 0..clock.runs() {
        let (d, _) = clock.kill(i, child(&crashed, src.path()).spawn().unwrap());
        // Between kills the store must already be consistent.
        let s = Store::open(&crashed).unwrap();
        let check = s.check().unwrap();
        assert!(check.ok(), "after kill at {d} ms: {:?}", check.problems);
    }
    assert!(
        clock.kills > 0,
        "no run was interrupted (full run took {full_ms} ms)"
    );
    assert!(child(&crashed, src.path()).status().unwrap().success());

    let a = export_bytes(&clean, &work.path().join("clean.c3"));
    let b = export_bytes(&crashed, &work.path().join("crashed.c3"));
    assert!(a == b, "export after crashes differs from the clean run");
}
