//! `c3 merge` throughput and peak memory: 10,000 synthetic release-size
//! chunk records (32 x 1536 bf16 latents = 96 KiB, ~4 KB of text each; 100
//! documents of 100 chunks) split over 2 and over 8 shards by the
//! `--shard` hash, merged by the `c3` binary under `/usr/bin/time -v` from
//! the shards' export files (what the Kubernetes Jobs hand over) and from
//! their store directories. Prints chunks/s of the copy, the wall time and
//! the peak RSS against the bytes of latents merged: the merge streams one
//! chunk at a time, so from exports the peak stays flat as the merge grows
//! (from store directories sled's read caches grow with it).
//! `cargo bench --bench merge`; smoke mode (`cargo test --benches`): 200
//! chunks of 16-wide latents. `C3_BENCH_DOCS=N`: N documents of 100 chunks
//! (to see that the peak does not grow with the size of the merge).

#[path = "../tests/store_support/mod.rs"]
mod store_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use c3::cascade::Compressor;
use c3::ingest::Shard;
use c3::store::{export, Store};
use store_support::{commit_doc, model, FakeCompressor};
use support::quick;

const CHUNKS_PER_DOC: usize = 100;

/// Shard stores holding `docs` documents of `CHUNKS_PER_DOC` chunks split over `n`.
fn write_shards(root: &Path, n: u32, docs: usize, enc: &FakeCompressor) -> Vec<PathBuf> {
    let book = std::fs::read_to_string(store_support::corpus("pride-and-prejudice.txt")).unwrap();
    let pieces: Vec<String> = (0..CHUNKS_PER_DOC)
        .map(|i| book[i * 4000..(i + 1) * 4000].to_string())
        .collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let dirs: Vec<PathBuf> = (0..n).map(|i| root.join(format!("shard-{i}"))).collect();
    let stores: Vec<Store> = dirs.iter().map(|d| Store::open(d).unwrap()).collect();
    for s in &stores {
        s.bind_model(&model(enc)).unwrap();
    }
    for d in 0..docs {
        let source = format!("/corpus/doc{d:04}.txt");
        // Distinct latents per document (the fake encoder keys them by text).
        let mut texts = refs.clone();
        let first = format!("{d:04}{}", &pieces[0][4..]);
        texts[0] = &first;
        let latents = enc.compress(&texts).unwrap();
        let s = &stores[Shard::of(&source, n) as usize];
        commit_doc(s, &source, &texts, &latents, |_| 1000);
    }
    dirs
}

/// Runs `c3 merge --json ARGS` under `/usr/bin/time -v`; prints its figures.
fn measure(what: &str, out: &Path, inputs: &[PathBuf], latent_bytes: u64) {
    let exe = env!("CARGO_BIN_EXE_c3");
    let timer = Path::new("/usr/bin/time");
    let mut c = if timer.exists() {
        let mut c = Command::new(timer);
        c.arg("-v").arg(exe);
        c
    } else {
        Command::new(exe)
    };
    let o = c
        .arg("merge")
        .arg("--json")
        .arg("--out")
        .arg(out)
        .args(inputs)
        .output()
        .expect("run c3 merge");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{what}: {}\n{stderr}", o.status);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("merge report");
    let rss = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse::<f64>().ok());
    let rss = match rss {
        Some(kb) => format!(
            "peak RSS {:.0} MiB ({:.1}% of the {:.0} MiB of latents merged)",
            kb / 1024.0,
            kb * 1024.0 / latent_bytes as f64 * 100.0,
            latent_bytes as f64 / (1 << 20) as f64
        ),
        None => "peak RSS not measured (no /usr/bin/time)".into(),
    };
    println!(
        "{what}: {} chunks, copy {:.0} chunks/s ({:.2} s), index {:.2} s, total {:.2} s \
         ({:.0} s per million chunks), {rss}",
        r["chunks"],
        r["chunks_per_second"].as_f64().unwrap_or(0.0),
        r["copy_seconds"].as_f64().unwrap_or(0.0),
        r["index_seconds"].as_f64().unwrap_or(0.0),
        r["seconds"].as_f64().unwrap_or(0.0),
        r["seconds"].as_f64().unwrap_or(0.0) / r["chunks"].as_f64().unwrap_or(1.0) * 1e6,
    );
    assert_eq!(
        r["chunks"].as_u64(),
        Some(latent_bytes / (32 * enc_hidden() as u64 * 2))
    );
}

fn enc_hidden() -> usize {
    if quick() {
        16
    } else {
        1536
    }
}

fn main() {
    let mut enc = FakeCompressor::new("bench-merge");
    enc.hidden = enc_hidden();
    // C3_BENCH_DOCS: documents of 100 chunks (default 100: 10,000 chunks).
    let docs = match std::env::var("C3_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) => n,
        None if quick() => 2,
        None => 100,
    };
    let chunks = (docs * CHUNKS_PER_DOC) as u64;
    let latent_bytes = chunks * 32 * enc.hidden as u64 * 2;
    let root = std::env::var_os("C3_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    for n in [2u32, 8] {
        let work = tempfile::tempdir_in(&root).unwrap();
        let stores = write_shards(work.path(), n, docs, &enc);
        let exports: Vec<PathBuf> = stores
            .iter()
            .map(|d| {
                let f = d.with_extension("c3x");
                export::export(&Store::open(d).unwrap(), &f).unwrap();
                f
            })
            .collect();
        let out = work.path().join("merged-exports");
        measure(
            &format!("merge {n} shard exports"),
            &out,
            &exports,
            latent_bytes,
        );
        std::fs::remove_dir_all(&out).unwrap();
        measure(
            &format!("merge {n} shard stores"),
            &work.path().join("merged-stores"),
            &stores,
            latent_bytes,
        );
    }
}
