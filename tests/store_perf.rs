//! Store speed at release geometry (32 x 1536 bf16 latents, 96 KiB/chunk).
//! Ignored by default; run with
//! `cargo test --release --test store_perf -- --ignored --nocapture`.

mod store_support;

use std::time::Instant;

use c3::encode::Compressor;
use c3::store::{NewDoc, Store};
use store_support::{model, FakeCompressor};

#[test]
#[ignore]
fn write_and_load_1000_release_size_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut enc = FakeCompressor::new("perf");
    enc.hidden = 1536;
    let store = Store::open(dir.path()).unwrap();
    store.bind_model(&model(&enc)).unwrap();
    let book = std::fs::read_to_string(store_support::corpus("pride-and-prejudice.txt")).unwrap();
    // ~4 KB of text per chunk, 10 documents of 100 chunks.
    let pieces: Vec<&str> = (0..100).map(|i| &book[i * 4000..(i + 1) * 4000]).collect();
    let latents = enc.compress(&pieces).unwrap();
    let t = Instant::now();
    for d in 0..10 {
        let mut w = store.begin(None).unwrap();
        let mut pos = 0;
        for (p, l) in pieces.iter().zip(&latents) {
            w.put_chunk(pos, 1000, p, l).unwrap();
            pos += p.len() as u64;
        }
        let text = pieces.concat();
        w.commit(NewDoc {
            source: format!("doc{d}"),
            content_hash: *blake3::hash(text.as_bytes()).as_bytes(),
            size: text.len() as u64,
            mtime_ms: None,
            ingested_at_ms: 0,
            kind: "text".into(),
            chunk_tokens: 1000,
        })
        .unwrap();
    }
    let write = t.elapsed();
    let disk = store.bytes_on_disk();
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let t = Instant::now();
    let mut n = 0;
    for d in 0..10 {
        n += store.doc_latents(d).unwrap().len();
    }
    let cold = t.elapsed();
    let t = Instant::now();
    for d in 0..10 {
        store.doc_latents(d).unwrap();
    }
    let warm = t.elapsed();
    assert_eq!(n, 1000);
    println!(
        "write: {:.3} ms/chunk (incl. commit+flush per 100); load 1000 latents: cold {:.1} ms, warm {:.1} ms; {} bytes on disk ({} per chunk)",
        write.as_secs_f64() * 1000.0 / 1000.0,
        cold.as_secs_f64() * 1000.0,
        warm.as_secs_f64() * 1000.0,
        disk,
        disk / 1000
    );
}
