//! `c3 serve` with the golden tiny model: requests per second of `GET
//! /v1/documents` and `GET /v1/stats` with 1 and 16 clients, and the time
//! to the first token of an ask through HTTP (streamed, the connection
//! dropped after the first token) against the same ask through the library.
//! `cargo bench --bench serve`; smoke mode (`cargo test --benches`) runs each
//! once.

#[path = "../tests/serve_support/mod.rs"]
mod serve_support;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use c3::cascade::c3::C3Checkpoint;
use c3::cascade::c3::C3Decoder;
use c3::generate::GenOptions;
use c3::query::{self, AskRequest, Mode, Reader};
use c3::retrieve::Pick;
use c3::store::Store;
use criterion::{Criterion, Throughput};
use serde_json::json;
use serve_support::{get, Server, SseStream};
use support::quick;

const QUESTION: &str = "Who was late for the party?";

fn book() -> String {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/alice-in-wonderland.txt");
    let alice = std::fs::read_to_string(p).unwrap();
    alice
        .chars()
        .skip(2000)
        .take(if quick() { 2400 } else { 12_000 })
        .collect()
}

/// `n` requests of `path` spread over `clients` threads; the wall time.
fn burst(addr: &str, path: &str, clients: usize, n: u64) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            s.spawn(move || {
                let mut i = c as u64;
                while i < n {
                    assert_eq!(get(addr, path).status, 200);
                    i += clients as u64;
                }
            });
        }
    });
    t.elapsed()
}

/// Time to the first streamed token of the ask over HTTP.
fn http_ttft(addr: &str) -> Duration {
    let t = Instant::now();
    let mut st = SseStream::open(
        addr,
        "/v1/ask",
        &json!({"question": QUESTION, "top_k": 4, "max_new_tokens": 64, "stream": true}),
    );
    loop {
        let e = st.next_event().expect("a token");
        if e.event == "token" {
            return t.elapsed();
        }
    }
}

/// Time to the first token of the same ask through the library.
fn library_ttft(store: &Store, dec: &C3Decoder) -> Duration {
    let req = AskRequest {
        question: QUESTION.into(),
        docs: Vec::new(),
        pick: Pick::TopK(4),
        mode: Mode::Latent,
        gen: GenOptions {
            max_new_tokens: 64,
            ..GenOptions::default()
        },
        progress: false,
    };
    let t = Instant::now();
    let mut first = None;
    let reader = Reader::Latent(dec);
    query::prepare(store, reader, &req)
        .unwrap()
        .run(reader, &req.gen, |_| {
            first.get_or_insert_with(|| t.elapsed());
            false
        })
        .unwrap();
    first.unwrap_or_else(|| t.elapsed())
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    c = if quick() {
        c.sample_size(10)
            .measurement_time(Duration::from_millis(100))
            .warm_up_time(Duration::from_millis(10))
    } else {
        c.sample_size(20).measurement_time(Duration::from_secs(5))
    };
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");

    // Fill the store through the server, then measure the reads.
    let srv = Server::start(&store_dir, &["--chunk-tokens", "120"]);
    let job = srv.add("book.txt", &book());
    assert_eq!(job["state"], "done", "{job}");
    {
        let mut g = c.benchmark_group("serve");
        g.throughput(Throughput::Elements(1));
        for path in ["/v1/documents", "/v1/stats"] {
            for clients in [1usize, 16] {
                let name = format!("{}/{clients}-clients", path.trim_start_matches("/v1/"));
                g.bench_function(&name, |b| {
                    b.iter_custom(|iters| {
                        burst(&srv.addr, path, clients, iters.max(clients as u64))
                    })
                });
            }
        }
        g.bench_function("ask_ttft/http", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| http_ttft(&srv.addr)).sum())
        });
        g.finish();
    }
    assert!(srv.terminate().success());

    // The same ask through the library on the same store.
    let store = Store::open(&store_dir).unwrap();
    let ckpt = C3Checkpoint::open(&serve_support::model()).unwrap();
    let dec = C3Decoder::load(&ckpt, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    {
        let mut g = c.benchmark_group("serve");
        g.bench_function("ask_ttft/library", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| library_ttft(&store, &dec)).sum())
        });
        g.finish();
    }
    c.final_summary();
}
