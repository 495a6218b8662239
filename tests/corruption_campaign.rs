//! Issue 21: a corruption campaign through the `c3` binary and the golden
//! tiny model. A small store is damaged many ways (bits flipped, ranges
//! zeroed, files truncated, at seeded random offsets of each of its files),
//! then `check`, `ls`, `show`, `ask`, `export` and `check` again run on it.
//!
//! Each variant must hold:
//! - no command panics (exit 101);
//! - either `export` gives back exactly the original export, or the first
//!   `check` exits non-zero and names every document that did not come
//!   back (by source);
//! - when that `check` found the store damaged, no command changed the
//!   evidence (the manifest files, the search index's commit) and the
//!   second `check` still fails.
//!
//! Bounded: `C3_CAMPAIGN_VARIANTS` variants (default 48) or 240 s, whichever
//! comes first; `C3_CAMPAIGN_SEED` picks another sequence. A failing
//! variant prints its seed, file, operation and offset.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::c3_pinned as c3;

fn show(o: &Output) -> String {
    format!(
        "exit {:?}; stdout: {}; stderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout)
            .chars()
            .take(1500)
            .collect::<String>(),
        String::from_utf8_lossy(&o.stderr)
            .chars()
            .take(1500)
            .collect::<String>()
    )
}

/// xorshift64*: a small seeded generator (no dependency, reproducible).
struct Rng(u64);

impl Rng {
    /// Seeded through splitmix64, so neighbouring seeds differ at once.
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
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

fn digest(p: &Path) -> Option<String> {
    std::fs::read(p)
        .ok()
        .map(|b| blake3::hash(&b).to_hex().to_string())
}

fn evidence(store: &Path) -> Vec<Option<String>> {
    ["manifest.json", "manifest.log", "bm25/meta.json"]
        .iter()
        .map(|f| digest(&store.join(f)))
        .collect()
}

/// The documents of an export, by source: (content hash, latents checksum).
fn export_docs(bytes: &[u8]) -> Vec<(String, String)> {
    let Some(st) = safetensors::SafeTensors::deserialize(bytes).ok() else {
        return Vec::new();
    };
    let Ok(m) = st.tensor("c3.manifest") else {
        return Vec::new();
    };
    String::from_utf8_lossy(m.data())
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["source"].as_str().unwrap_or("").to_string(),
                v.to_string(),
            )
        })
        .collect()
}

struct Variant {
    seed: u64,
    file: String,
    op: String,
}

/// Damage one file of `store`, as `rng` says.
fn damage(store: &Path, rng: &mut Rng, seed: u64) -> Variant {
    let mut all = Vec::new();
    files(store, &mut all);
    // Index segment files are named by random ids: order them by what
    // does not change from run to run, so a seed names the same damage.
    all.sort_by_key(|p| {
        let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let stable = p.file_stem().is_some_and(|s| s.len() == 32);
        let name = if stable {
            String::new()
        } else {
            p.to_string_lossy().into_owned()
        };
        (
            p.parent().map(Path::to_path_buf),
            p.extension().map(|e| e.to_os_string()),
            len,
            name,
        )
    });
    // Half the variants hit the log, where sled keeps every record.
    let db = store.join("db/db");
    let target = if rng.below(2) == 0 {
        db.clone()
    } else {
        all[rng.below(all.len() as u64) as usize].clone()
    };
    let mut bytes = std::fs::read(&target).unwrap();
    // The log is padded with zeros to a segment: aim at the written part.
    let used = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(bytes.len(), |i| i + 1)
        .max(1);
    let op = match rng.below(3) {
        0 => {
            let n = 1 + rng.below(3);
            let mut at = Vec::new();
            for _ in 0..n {
                let i = rng.below(used as u64) as usize;
                let bit = rng.below(8);
                if i < bytes.len() {
                    bytes[i] ^= 1 << bit;
                }
                at.push(format!("{i}:{bit}"));
            }
            format!("flip bits at {}", at.join(","))
        }
        1 => {
            let i = rng.below(used as u64) as usize;
            let len = 1 + rng.below(512) as usize;
            let end = (i + len).min(bytes.len());
            bytes[i..end].iter_mut().for_each(|b| *b = 0);
            format!("zero {i}..{end}")
        }
        _ => {
            let i = rng.below(used as u64) as usize;
            bytes.truncate(i);
            format!("truncate at {i}")
        }
    };
    std::fs::write(&target, &bytes).unwrap();
    Variant {
        seed,
        file: target
            .strip_prefix(store)
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        op,
    }
}

/// Runs the commands on a damaged store; `Err` says what broke the rules.
fn run_variant(store: &Path, original: &[u8], work: &Path) -> Result<String, String> {
    let model = common::golden_model().to_string_lossy().into_owned();
    let check1 = c3(store, &["check", "--json"]);
    let after_check = evidence(store);
    let out = work.join("out.c3x");
    let _ = std::fs::remove_file(&out);
    let runs: Vec<(&str, Output)> = vec![
        ("ls", c3(store, &["ls", "--json"])),
        ("show", c3(store, &["show", "0"])),
        (
            "ask",
            c3(
                store,
                &[
                    "--model",
                    &model,
                    "ask",
                    "--top-k",
                    "2",
                    "--max-new-tokens",
                    "4",
                    "Who?",
                ],
            ),
        ),
        ("export", c3(store, &["export", out.to_str().unwrap()])),
    ];
    let after_all = evidence(store);
    let check2 = c3(store, &["check", "--json"]);
    let mut all: Vec<(&str, &Output)> = runs.iter().map(|(n, o)| (*n, o)).collect();
    all.push(("check", &check1));
    all.push(("check again", &check2));
    for (name, o) in all {
        if o.status.code() == Some(101)
            || String::from_utf8_lossy(&o.stderr).contains("panicked at")
        {
            return Err(format!("`{name}` panicked: {}", show(o)));
        }
        if o.status.code().is_none() {
            return Err(format!("`{name}` was killed by a signal: {}", show(o)));
        }
    }
    let exported = runs[3].1.status.success();
    let got = if exported {
        std::fs::read(&out).unwrap_or_default()
    } else {
        Vec::new()
    };
    if exported && got == original {
        return Ok(format!(
            "data intact (check exit {:?})",
            check1.status.code()
        ));
    }
    // Something did not come back: check must have said so, by name.
    if check1.status.code() != Some(1) {
        return Err(format!(
            "the data changed (export {}) but check passed: {}",
            if exported { "differs" } else { "failed" },
            show(&check1)
        ));
    }
    let report = String::from_utf8_lossy(&check1.stdout).into_owned();
    let now = export_docs(&got);
    for (source, line) in export_docs(original) {
        let back = now.iter().any(|(s, l)| *s == source && *l == line);
        if !back && !report.contains(&source) {
            return Err(format!(
                "{source} did not come back and check does not name it: {}",
                show(&check1)
            ));
        }
    }
    let v: Value = serde_json::from_slice(&check1.stdout).unwrap_or(Value::Null);
    if v["manifest"] == "damaged" {
        if after_all != after_check {
            return Err(
                "a command changed the manifest or the search index of a damaged store".into(),
            );
        }
        if check2.status.code() != Some(1) {
            return Err(format!("the second check passed: {}", show(&check2)));
        }
    }
    Ok("damage named by check".into())
}

#[test]
fn damaged_store_files_never_panic_and_never_hide_a_loss() {
    let variants: u64 = std::env::var("C3_CAMPAIGN_VARIANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let base: u64 = std::env::var("C3_CAMPAIGN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    let budget = Duration::from_secs(240);
    eprintln!("corruption campaign: {variants} variants, seed {base}, budget {budget:?}");

    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    common::book_parts(&src, "doc", 3, 2500, 1500);
    let pristine = work.path().join("pristine");
    let model = common::golden_model().to_string_lossy().into_owned();
    // Two ingest runs and a read: a log with several sessions and a snapshot.
    for files in [vec!["doc00.txt", "doc01.txt"], vec!["doc02.txt"]] {
        let mut args = vec!["--model", model.as_str(), "ingest", "--chunk-tokens", "150"];
        let paths: Vec<String> = files
            .iter()
            .map(|f| src.join(f).to_string_lossy().into_owned())
            .collect();
        args.extend(paths.iter().map(String::as_str));
        let o = c3(&pristine, &args);
        assert!(o.status.success(), "{}", show(&o));
    }
    let o = c3(&pristine, &["ls"]);
    assert!(o.status.success(), "{}", show(&o));
    let original_file = work.path().join("original.c3x");
    let o = c3(&pristine, &["export", original_file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let original = std::fs::read(&original_file).unwrap();
    assert_eq!(export_docs(&original).len(), 3);

    let started = Instant::now();
    let mut failures = Vec::new();
    let mut ran = 0;
    for i in 0..variants {
        if started.elapsed() > budget {
            eprintln!("corruption campaign: time budget reached after {ran} variants");
            break;
        }
        let seed = base.wrapping_mul(1_000_003).wrapping_add(i);
        let mut rng = Rng::new(seed);
        let store = work.path().join(format!("v{i}"));
        copy_dir(&pristine, &store);
        let v = damage(&store, &mut rng, seed);
        let r = run_variant(&store, &original, work.path());
        ran += 1;
        match r {
            Ok(what) => eprintln!(
                "variant {i} (seed {}) {} {}: ok, {what}",
                v.seed, v.file, v.op
            ),
            Err(why) => {
                eprintln!(
                    "variant {i} (seed {}) {} {}: FAILED: {why}",
                    v.seed, v.file, v.op
                );
                failures.push(format!("seed {} file {} {}: {why}", v.seed, v.file, v.op));
            }
        }
        let _ = std::fs::remove_dir_all(&store);
    }
    assert!(
        ran >= 8.min(variants),
        "only {ran} variants ran in the time budget"
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} variants failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
