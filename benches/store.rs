//! The memory store at release size (32 x 1536 bf16 latents, ~4 KB of text
//! per chunk): writing 1000 chunk records (10 documents of 100, each
//! committed and flushed), reading the 1000 chunk records back, and loading
//! the latents of 1000 chunks as a query over the whole store does.
//! `cargo bench --bench store`; smoke mode (`cargo test --benches`) uses 100
//! chunks of 16-wide latents.

#[path = "../tests/store_support/mod.rs"]
mod store_support;
mod support;

use c3::cascade::Compressor;
use c3::store::Store;
use candle_core::Tensor;
use criterion::{Criterion, Throughput};
use std::time::{Duration, Instant};
use store_support::{commit_doc, model, FakeCompressor};
use support::quick;

const CHUNKS_PER_DOC: usize = 100;

struct Fixture {
    enc: FakeCompressor,
    pieces: Vec<String>,
    latents: Vec<Tensor>,
    docs: usize,
}

impl Fixture {
    fn new() -> Self {
        let mut enc = FakeCompressor::new("bench");
        let docs = if quick() { 1 } else { 10 };
        if !quick() {
            enc.hidden = 1536;
        }
        let book =
            std::fs::read_to_string(store_support::corpus("pride-and-prejudice.txt")).unwrap();
        let pieces: Vec<String> = (0..CHUNKS_PER_DOC)
            .map(|i| book[i * 4000..(i + 1) * 4000].to_string())
            .collect();
        let refs: Vec<&str> = pieces.iter().map(|s| s.as_str()).collect();
        let latents = enc.compress(&refs).unwrap();
        Fixture {
            enc,
            pieces,
            latents,
            docs,
        }
    }

    fn chunks(&self) -> usize {
        self.docs * CHUNKS_PER_DOC
    }

    /// A fresh store holding every document; returns the write time.
    fn write(&self, dir: &std::path::Path) -> Duration {
        let store = Store::open(dir).unwrap();
        store.bind_model(&model(&self.enc)).unwrap();
        let refs: Vec<&str> = self.pieces.iter().map(String::as_str).collect();
        let t = Instant::now();
        for d in 0..self.docs {
            commit_doc(&store, &format!("doc{d}"), &refs, &self.latents, |_| 1000);
        }
        t.elapsed()
    }
}

fn doc_ids(store: &Store) -> Vec<u64> {
    store.documents().map(|d| d.unwrap().id).collect()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    if quick() {
        c = c
            .sample_size(10)
            .measurement_time(Duration::from_millis(100));
    } else {
        c = c.sample_size(10).measurement_time(Duration::from_secs(5));
    }
    let fx = Fixture::new();
    let n = fx.chunks();
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(n as u64));

    g.bench_function(format!("write {n} chunks (commit + flush per 100)"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| fx.write(tempfile::tempdir().unwrap().path()))
                .sum()
        })
    });

    let dir = tempfile::tempdir().unwrap();
    fx.write(dir.path());
    let store = Store::open(dir.path()).unwrap();
    let ids = doc_ids(&store);
    g.bench_function(format!("read {n} chunk records + texts"), |b| {
        b.iter(|| {
            for &d in &ids {
                for o in 0..CHUNKS_PER_DOC as u32 {
                    let rec = store.chunk_record(d, o).unwrap();
                    std::hint::black_box(store.chunk_text(&rec).unwrap());
                }
            }
        })
    });
    g.bench_function(format!("load latents of {n} chunks (warm)"), |b| {
        b.iter(|| {
            let total: usize = ids
                .iter()
                .map(|&d| store.doc_latents(d).unwrap().len())
                .sum();
            assert_eq!(total, n);
        })
    });
    g.finish();

    // Cold: the store reopened (sled's cache empty; the OS page cache may
    // still hold the files).
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let t = Instant::now();
    let total: usize = ids
        .iter()
        .map(|&d| store.doc_latents(d).unwrap().len())
        .sum();
    println!(
        "store: latents of {total} chunks after reopening: {:.1} ms (goal < 100 ms); {} bytes on disk ({} per chunk)",
        t.elapsed().as_secs_f64() * 1e3,
        store.bytes_on_disk(),
        store.bytes_on_disk() / total as u64
    );
    c.final_summary();
}
