//! `c3 ingest` killed with SIGKILL at random moments, then re-run, ends with
//! the same `c3 export` as an uninterrupted run (golden tiny model).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `c3 ingest` of `src` into `store`, with ingest times pinned so that two
/// runs export identical bytes.
fn ingest(store: &Path, src: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c3"));
    c.arg("--store")
        .arg(store)
        .arg("--model")
        .arg(fixtures().join("golden/c3-tiny"))
        .args(["ingest", "--chunk-tokens", "150", "--batch", "2"])
        .arg(src)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn c3_ok(store: &Path, args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "c3 {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Documents cut from the fixture books, copied so their mtimes are equal
/// for both runs.
fn corpus(dir: &Path) {
    let book = std::fs::read_to_string(fixtures().join("corpus/alice-in-wonderland.txt")).unwrap();
    let mut pos = 0;
    for i in 0..12 {
        let len = 2000 + (i * 2654435761usize) % 8000;
        let mut end = (pos + len).min(book.len());
        while !book.is_char_boundary(end) {
            end += 1;
        }
        std::fs::write(dir.join(format!("part{i:02}.txt")), &book[pos..end]).unwrap();
        pos = end;
    }
}

/// Kill delays spread over the clean run's duration, from a clock seed
/// printed for replay.
fn delays(n: usize, span_ms: u64) -> Vec<u64> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash_cli seed {seed}");
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % span_ms.max(1)
        })
        .collect()
}

#[test]
fn sigkill_during_ingest_then_rerun_matches_clean_export() {
    let src = tempfile::tempdir().unwrap();
    corpus(src.path());
    let work = tempfile::tempdir().unwrap();
    let clean = work.path().join("clean");
    let t = Instant::now();
    assert!(ingest(&clean, src.path()).status().unwrap().success());
    let span = t.elapsed().as_millis() as u64;

    let crashed = work.path().join("crashed");
    let mut kills = 0;
    for d in delays(6, span) {
        let mut child = ingest(&crashed, src.path()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(d));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        // A kill while the model was still loading leaves no store yet.
        if crashed.join("db").exists() {
            c3_ok(&crashed, &["check"]);
        }
    }
    assert!(
        kills > 0,
        "no run was interrupted (a clean run takes {span} ms)"
    );
    assert!(ingest(&crashed, src.path()).status().unwrap().success());

    let (a, b) = (work.path().join("a.c3"), work.path().join("b.c3"));
    c3_ok(&clean, &["export", a.to_str().unwrap()]);
    c3_ok(&crashed, &["export", b.to_str().unwrap()]);
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "exports differ after {kills} kills"
    );
}
