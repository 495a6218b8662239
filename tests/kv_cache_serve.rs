//! The prefix cache in `c3 serve` (issue 22): `POST /v1/warm`, asks that
//! resume from it (through the in-memory tier), its counters in `/metrics`,
//! and a server with the cache off. The real binary with the golden tiny
//! model on 127.0.0.1 (tests/serve_support).

mod common;
mod serve_support;

use serde_json::{json, Value};
use serve_support::{get, post_json, Server};

/// `name value` of a metric line in the Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn book() -> String {
    std::fs::read_to_string(common::fixtures().join("corpus/alice-in-wonderland.txt"))
        .unwrap()
        .chars()
        .skip(1000)
        .take(3000)
        .collect()
}

#[test]
fn warm_then_ask_resumes_and_metrics_count_it() {
    let tmp = tempfile::tempdir().unwrap();
    // Documents are added after the model loads: the cache is there anyway.
    let srv = Server::start(&tmp.path().join("store"), &["--chunk-tokens", "120"]);
    let a = srv.addr.clone();
    let job = srv.add("book.txt", &book());
    assert_eq!(job["state"], "done", "{job}");
    let chunks = job["result"]["chunks"].as_u64().unwrap();
    let doc = job["result"]["document"].as_u64().unwrap();

    let r = post_json(&a, "/v1/warm", &json!({"doc": doc}));
    assert_eq!(r.status, 200, "{}", r.text());
    let w = r.json();
    assert_eq!(w["chunks"], chunks, "{w}");
    assert_eq!(w["blocks_written"], chunks, "{w}");
    assert!(w["positions"].as_u64().unwrap() > 0);

    let ask = |q: &str| -> Value {
        let r = post_json(&a, "/v1/ask", &json!({"question": q, "max_new_tokens": 6}));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let first = ask("Who is Alice?");
    let u = &first["kv_cache"];
    assert_eq!(u["blocks_hit"], chunks, "{first}");
    assert_eq!(u["blocks_written"], 0, "{first}");
    assert_eq!(first["cached_positions"], w["positions"], "{first}");
    let second = ask("What did she see?");
    assert_eq!(second["kv_cache"]["blocks_hit"], chunks, "{second}");
    // Chat completions resume too, and say so as OpenAI does.
    let r = post_json(
        &a,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Who is Alice?"}], "max_tokens": 4}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    assert_eq!(
        c["usage"]["prompt_tokens_details"]["cached_tokens"], w["positions"],
        "{c}"
    );

    let m = get(&a, "/metrics").text();
    let v = |n: &str| metric(&m, n).unwrap_or_else(|| panic!("no {n} in\n{m}"));
    assert_eq!(v("c3_kv_cache_hits_total"), 3.0 * chunks as f64);
    assert_eq!(
        v("c3_kv_cache_misses_total"),
        chunks as f64,
        "the warm-up's lookups"
    );
    // Warmed blocks are held in memory: every ask was served from it.
    assert_eq!(v("c3_kv_cache_memory_hits_total"), 3.0 * chunks as f64);
    assert!(v("c3_kv_cache_memory_bytes") > 0.0);
    assert!(v("c3_kv_cache_disk_bytes") > 0.0);
    assert_eq!(
        v("c3_kv_cache_written_bytes_total"),
        v("c3_kv_cache_disk_bytes")
    );
    assert_eq!(v("c3_kv_cache_evictions_total"), 0.0);
    assert_eq!(v("c3_kv_cache_corrupt_total"), 0.0);
    assert_eq!(
        v("c3_kv_cache_cached_positions_total"),
        3.0 * w["positions"].as_f64().unwrap()
    );

    // Bad requests are clear 4xx with the JSON error body.
    let r = post_json(&a, "/v1/warm", &json!({"doc": 99}));
    assert_eq!(r.status, 404, "{}", r.text());
    r.error_type();
    let r = post_json(&a, "/v1/warm", &json!({"doc": doc, "all": true}));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = post_json(&a, "/v1/warm", &json!({"docs": [doc], "colour": "red"}));
    assert_eq!(r.status, 400, "{}", r.text());
    r.error_type();
    assert!(srv.terminate().success());
}

#[test]
fn a_server_with_the_cache_off_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    // The global flag goes before the subcommand: through the environment.
    let srv = Server::start_env(
        &tmp.path().join("store2"),
        &["--chunk-tokens", "120"],
        &[("C3_KV_CACHE_SIZE", "0")],
    );
    let a = srv.addr.clone();
    let job = srv.add("book.txt", &book());
    assert_eq!(job["state"], "done", "{job}");
    let r = post_json(&a, "/v1/warm", &json!({}));
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error_type(), "cache_off");
    let r = post_json(
        &a,
        "/v1/ask",
        &json!({"question": "Who?", "max_new_tokens": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(
        v.get("kv_cache").is_none() && v["cached_positions"] == 0,
        "{v}"
    );
    assert!(!get(&a, "/metrics").text().contains("c3_kv_cache_"));
    assert!(!tmp.path().join("store2/kv-cache").exists());
    assert!(srv.terminate().success());
}
