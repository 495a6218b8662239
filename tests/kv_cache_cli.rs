//! The prefix cache through the `c3` binary (issue 22): `ask --json`
//! reports what the cache did, `ingest --warm`, `warm`, `cache stats|clear`;
//! a `c3 warm` killed with SIGKILL at random moments leaves nothing a later
//! ask could misuse; two processes warming the same chunks into one
//! directory at once both succeed and leave sound blocks.
mod common;
mod lclm_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{json, ok};
use serde_json::Value;

/// `c3 --store STORE --model MODEL --kv-cache DIR ARGS...`.
fn c3(store: &Path, model: &Path, kv: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c3"));
    c.arg("--store")
        .arg(store)
        .arg("--model")
        .arg(model)
        .arg("--kv-cache")
        .arg(kv)
        .args(args)
        .env_remove("C3_MODEL")
        .env_remove("C3_KV_CACHE_SIZE")
        .env_remove("C3_KV_CACHE_DTYPE");
    c
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap()
}

/// The generated ids of `ask QUESTION --ids` (greedy, 12 tokens).
fn ask_ids(store: &Path, model: &Path, kv: &Path, extra: &[&str]) -> Vec<u64> {
    let mut args = vec!["ask", "Who is Alice?", "--max-new-tokens", "12", "--ids"];
    args.extend_from_slice(extra);
    let v = json(run(&mut c3(store, model, kv, &args)));
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn ask_json(store: &Path, model: &Path, kv: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["ask", "Who is Alice?", "--max-new-tokens", "4", "--json"];
    args.extend_from_slice(extra);
    json(run(&mut c3(store, model, kv, &args)))
}

fn block_files(kv: &Path) -> usize {
    std::fs::read_dir(kv).map_or(0, |rd| {
        rd.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "kvb"))
            .count()
    })
}

fn temp_files(kv: &Path) -> usize {
    std::fs::read_dir(kv).map_or(0, |rd| {
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .count()
    })
}

/// A store of `n` book parts ingested by `model` (150-token chunks).
fn store_of(dir: &Path, model: &Path, n: usize) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    common::book_parts(&src, "part", n, 1500, 3000);
    let store = dir.join("store");
    let kv = dir.join("unused-kv");
    ok(run(c3(
        &store,
        model,
        &kv,
        &["ingest", "--chunk-tokens", "150"],
    )
    .arg(&src)
    .stdout(Stdio::null())));
    store
}

#[test]
fn sigkill_during_warm_leaves_no_block_an_ask_could_misuse() {
    let tmp = tempfile::tempdir().unwrap();
    let m = common::golden_model();
    // Enough chunks that the warm-up, not the start, takes most of a run.
    let store = store_of(tmp.path(), &m, 16);
    let off = tmp.path().join("off");
    let reference = ask_ids(&store, &m, &off, &["--kv-cache-size", "0"]);

    let clean = tmp.path().join("clean-kv");
    let t = Instant::now();
    ok(run(&mut c3(&store, &m, &clean, &["warm", "--all"])));
    let span = t.elapsed().as_millis() as u64;
    let blocks_clean = block_files(&clean);

    let kv = tmp.path().join("kv");
    let mut clock = common::KillClock::new("kv_cache_cli warm", 10, span);
    for i in 0..clock.runs() {
        let child = c3(&store, &m, &kv, &["warm", "--all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (delay, killed) = clock.kill(i, child);
        let left = temp_files(&kv);
        let blocks = block_files(&kv);
        eprintln!(
            "run {i}: killed {killed} after {delay} ms: {blocks} of {blocks_clean} blocks, \
             {left} temporary files"
        );
        // The next ask: the answer is the uncached one, whatever was left.
        assert_eq!(
            ask_ids(&store, &m, &kv, &[]),
            reference,
            "run {i} (killed {killed} after {delay} ms, {left} temporary files left)"
        );
        // It swept the killed writer's temporary files; every block is sound.
        assert_eq!(temp_files(&kv), 0, "run {i}");
        let v = json(run(&mut c3(
            &store,
            &m,
            &kv,
            &["cache", "stats", "--verify", "--json"],
        )));
        assert_eq!(v["verified"]["removed"], 0, "run {i}: {v}");
        // The ask stored what the warm-up had not: the whole prompt now.
        clock_clear(&kv, i);
    }
    assert!(
        clock.kills > 0,
        "no warm-up was interrupted (a clean one takes {span} ms)"
    );
    // A finished warm-up after all that equals the clean one.
    ok(run(&mut c3(&store, &m, &kv, &["warm", "--all"])));
    assert_eq!(block_files(&kv), blocks_clean);
    let v = ask_json(&store, &m, &kv, &[]);
    assert_eq!(v["kv_cache"]["blocks_hit"], v["kv_cache"]["blocks"], "{v}");
}

/// Empties the cache between kill runs, so each run starts from nothing
/// (an ask that filled the cache would leave the next warm-up no work).
fn clock_clear(kv: &Path, i: usize) {
    if let Ok(rd) = std::fs::read_dir(kv) {
        for e in rd.flatten() {
            if e.path().is_file() {
                std::fs::remove_file(e.path()).unwrap_or_else(|err| panic!("run {i}: {err}"));
            }
        }
    }
}

#[test]
fn two_processes_warming_one_directory_at_once_both_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let m = common::golden_model();
    let a = store_of(tmp.path(), &m, 8);
    // A second store with the same chunks (a store has one process at a
    // time; the cache directory is shared).
    let b = tmp.path().join("store-b");
    assert!(Command::new("cp")
        .arg("-r")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap()
        .success());
    let kv = tmp.path().join("kv");
    let off = tmp.path().join("off");
    let reference = ask_ids(&a, &m, &off, &["--kv-cache-size", "0"]);
    let spawn = |store: &Path| {
        c3(store, &m, &kv, &["warm", "--all", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (spawn(&a), spawn(&b));
    let (oa, ob) = (
        pa.wait_with_output().unwrap(),
        pb.wait_with_output().unwrap(),
    );
    let (ra, rb) = (json(oa), json(ob));
    assert_eq!(ra["chunks"], rb["chunks"]);
    assert_eq!(temp_files(&kv), 0);
    let v = json(run(&mut c3(
        &a,
        &m,
        &kv,
        &["cache", "stats", "--verify", "--json"],
    )));
    assert_eq!(v["verified"]["removed"], 0, "{v}");
    assert_eq!(v["blocks"], ra["chunks"], "{v}");
    for store in [&a, &b] {
        let v = ask_json(store, &m, &kv, &[]);
        assert_eq!(v["kv_cache"]["blocks_hit"], v["kv_cache"]["blocks"], "{v}");
        assert_eq!(ask_ids(store, &m, &kv, &[]), reference);
    }
}

/// `ingest --warm`, `ask --json`'s report, a document added at the end,
/// `ask --doc` twice, `cache stats|clear`, and the cache turned off.
fn cli_flow(model: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    common::book_parts(&src, "part", 2, 1500, 500);
    let store = tmp.path().join("store");
    let kv = tmp.path().join("kv");
    let part = |i: usize| src.join(format!("part{i:02}.txt"));

    let v = json(run(c3(
        &store,
        model,
        &kv,
        &["ingest", "--chunk-tokens", "150", "--warm", "--json"],
    )
    .arg(part(0))));
    let warmed = v["warm"]["blocks_written"].as_u64().unwrap();
    assert!(warmed >= 2 && v["warm"]["chunks"] == warmed, "{v}");

    // The first question is already a (full) hit.
    let v = ask_json(&store, model, &kv, &[]);
    assert_eq!(v["kv_cache"]["blocks_hit"], warmed, "{v}");
    assert!(v["cached_positions"].as_u64().unwrap() > 0);
    assert_eq!(
        v["cached_positions"].as_u64().unwrap() + v["prefilled_positions"].as_u64().unwrap(),
        v["prompt_tokens"].as_u64().unwrap()
    );

    // A document added at the end: every earlier block is reused.
    ok(run(c3(
        &store,
        model,
        &kv,
        &["ingest", "--chunk-tokens", "150"],
    )
    .arg(part(1))
    .stdout(Stdio::null())));
    let v = ask_json(&store, model, &kv, &["--all"]);
    let u = &v["kv_cache"];
    assert_eq!(u["blocks_hit"], warmed, "{v}");
    assert_eq!(
        u["blocks_written"].as_u64().unwrap(),
        u["blocks"].as_u64().unwrap() - warmed,
        "{v}"
    );

    // `--doc 1` twice: the first prefills (another prefix), the second not.
    let v = ask_json(&store, model, &kv, &["--doc", "1"]);
    assert_eq!(v["kv_cache"]["blocks_hit"], 0, "{v}");
    let v = ask_json(&store, model, &kv, &["--doc", "1"]);
    assert_eq!(v["kv_cache"]["blocks_hit"], v["kv_cache"]["blocks"], "{v}");

    let s = json(run(&mut c3(
        &store,
        model,
        &kv,
        &["cache", "stats", "--json"],
    )));
    assert!(
        s["blocks"].as_u64().unwrap() > warmed && s["bytes"].as_u64().unwrap() > 0,
        "{s}"
    );
    assert_eq!(s["enabled"], true);
    let c = json(run(&mut c3(
        &store,
        model,
        &kv,
        &["cache", "clear", "--json"],
    )));
    assert_eq!(c["removed_files"], s["blocks"], "{c}");
    let s = json(run(&mut c3(
        &store,
        model,
        &kv,
        &["cache", "stats", "--json"],
    )));
    assert_eq!(
        (s["blocks"].as_u64(), s["bytes"].as_u64()),
        (Some(0), Some(0))
    );

    // Off: no report, nothing written; `warm` says why it cannot run.
    let v = ask_json(&store, model, &kv, &["--kv-cache-size", "0"]);
    assert!(
        v.get("kv_cache").is_none() && v["cached_positions"] == 0,
        "{v}"
    );
    assert_eq!(
        std::fs::read_dir(&kv)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .count(),
        0
    );
    let o = run(&mut c3(
        &store,
        model,
        &kv,
        &["--kv-cache-size", "0", "warm"],
    ));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--kv-cache-size 0"));
    // The default place is inside the store's directory.
    let o = run(Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(&store)
        .arg("--model")
        .arg(model)
        .args(["ask", "Who?", "--max-new-tokens", "2", "--json"])
        .env_remove("C3_KV_CACHE"));
    ok(o);
    assert!(store.join("kv-cache").is_dir());
}

#[test]
fn cli_reports_and_manages_the_cache_c3() {
    cli_flow(&common::golden_model());
}

#[test]
fn cli_reports_and_manages_the_cache_lclm() {
    cli_flow(&lclm_support::lclm_model(4));
}
