//! `c3 serve` end to end: the real binary with the golden tiny model on
//! 127.0.0.1 (port 0), driven by a real HTTP client (tests/serve_support).

mod common;
mod serve_support;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_support::{delete, get, open_conn, post_json, raw, request, Server, SseStream};

/// The tests share two cores: one server at a time keeps timings honest.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// ~2,400 characters of the fixture book plus a marker sentence.
fn book_text() -> String {
    let alice =
        std::fs::read_to_string(common::fixtures().join("corpus/alice-in-wonderland.txt")).unwrap();
    let mut body: String = alice.chars().skip(2000).take(2400).collect();
    body.push_str("\n\nThe zyxquaffle was never seen again.\n");
    body
}

fn model_arg() -> String {
    common::golden_model().display().to_string()
}

/// Joins the `token` events' text; returns it with the `done` event's JSON.
fn joined_tokens(events: &[serve_support::SseEvent]) -> (String, Value) {
    let mut text = String::new();
    let mut done = Value::Null;
    for e in events {
        match e.event.as_str() {
            "token" => {
                let v: Value = serde_json::from_str(&e.data).unwrap();
                text.push_str(v["text"].as_str().unwrap());
            }
            "done" => done = serde_json::from_str(&e.data).unwrap(),
            "error" => panic!("error event: {}", e.data),
            _ => {}
        }
    }
    (text, done)
}

#[test]
fn documents_ask_expand_delete_and_the_cli_agree() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let text = book_text();
    let srv = Server::start(&store, &["--chunk-tokens", "120"]);
    let a = srv.addr.clone();

    // Add → job → done; the same text again is a no-op.
    let job = srv.add("book.txt", &text);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["result"]["action"], "added", "{job}");
    let chunks = job["result"]["chunks"].as_u64().unwrap();
    assert!(chunks >= 3, "{job}");
    assert_eq!(job["chunks_done"], chunks);
    assert_eq!(job["chunks_total"], chunks);
    let again = srv.add("book.txt", &text);
    assert_eq!(again["result"]["action"], "unchanged", "{again}");
    let doc = job["result"]["document"].as_u64().unwrap();

    // A raw body with ?name= works too (text/plain with the header no
    // browser form can send).
    let r = request(
        &a,
        "POST",
        "/v1/documents?name=raw.md",
        &[("Content-Type", "text/plain"), ("X-C3-Raw-Text", "1")],
        b"# Notes\n\nA short markdown note about the zyxquaffle.\n",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        r.header("location").unwrap(),
        format!("/v1/jobs/{}", r.json()["id"])
    );
    let raw_job = srv.wait_job(r.json()["id"].as_u64().unwrap());
    assert_eq!(raw_job["state"], "done", "{raw_job}");
    let raw_doc = raw_job["result"]["document"].as_u64().unwrap();

    // List and show.
    let list = get(&a, "/v1/documents").json();
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{list}");
    assert_eq!(data[0]["source"], "book.txt");
    assert_eq!(data[0]["chunks"], chunks);
    assert_eq!(data[0]["bytes"], text.len());
    let show = get(&a, &format!("/v1/documents/{doc}?text=true")).json();
    assert_eq!(show["text"], text.as_str());
    let list_chunks = show["chunk_list"].as_array().unwrap();
    assert_eq!(list_chunks.len() as u64, chunks);
    let c1 = get(&a, &format!("/v1/documents/{doc}?chunk=1&text=true")).json();
    let (s, e) = (
        c1["start"].as_u64().unwrap() as usize,
        c1["end"].as_u64().unwrap() as usize,
    );
    assert_eq!(c1["text"], &text[s..e]);
    assert!(get(&a, &format!("/v1/documents/{doc}?chunk=1")).json()["text"].is_null());

    // Ask: streamed tokens joined == the non-streamed answer.
    let q = "Who was never seen again?";
    let body = json!({"question": q, "max_new_tokens": 24});
    let plain = post_json(&a, "/v1/ask", &body);
    assert_eq!(plain.status, 200, "{}", plain.text());
    let plain = plain.json();
    let answer = plain["answer"].as_str().unwrap().to_string();
    assert!(plain["chunks"].as_array().unwrap().len() as u64 >= chunks);
    assert!(plain["timings"]["generated_tokens"].as_u64().unwrap() > 0);
    let mut body_s = body.clone();
    body_s["stream"] = json!(true);
    let mut st = SseStream::open(&a, "/v1/ask", &body_s);
    assert_eq!(st.status, 200);
    assert!(
        st.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-type")
                && v.starts_with("text/event-stream"))
    );
    let events = st.all();
    assert_eq!(events[0].event, "chunks", "{events:?}");
    let (streamed, done) = joined_tokens(&events);
    assert_eq!(streamed, answer);
    assert_eq!(done["answer"], answer.as_str());
    assert_eq!(events.last().unwrap().event, "done");

    // The OpenAI-compatible route answers the same question the same way.
    let chat = post_json(
        &a,
        "/v1/chat/completions",
        &json!({"model": "c3-tiny", "max_tokens": 24,
                "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": q}]}),
    );
    assert_eq!(chat.status, 200, "{}", chat.text());
    let chat = chat.json();
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["choices"][0]["message"]["content"], answer.as_str());
    assert_eq!(chat["choices"][0]["message"]["role"], "assistant");
    let u = &chat["usage"];
    assert_eq!(u["prompt_tokens"], plain["prompt_tokens"]);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(u["latent_tokens"], plain["latent_tokens"]);
    let mut st = SseStream::open(
        &a,
        "/v1/chat/completions",
        &json!({"max_tokens": 24, "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": q}]}),
    );
    let events = st.all();
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let mut content = String::new();
    let mut finish = Value::Null;
    let mut usage = Value::Null;
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk", "{v}");
        if let Some(c) = v["choices"].get(0) {
            content.push_str(c["delta"]["content"].as_str().unwrap_or(""));
            if !c["finish_reason"].is_null() {
                finish = c["finish_reason"].clone();
            }
        } else {
            usage = v["usage"].clone();
        }
    }
    assert_eq!(content, answer);
    assert!(finish == "stop" || finish == "length", "{finish}");
    assert_eq!(usage["prompt_tokens"], plain["prompt_tokens"]);
    let models = get(&a, "/v1/models").json();
    assert_eq!(models["data"][0]["id"], "c3-tiny");

    // Expand one chunk, plain and streamed.
    let ex = post_json(
        &a,
        "/v1/expand",
        &json!({"doc": doc, "chunk": 1, "max_new_tokens": 40}),
    );
    assert_eq!(ex.status, 200, "{}", ex.text());
    let ex = ex.json();
    let ex_text = ex["chunks"][0]["text"].as_str().unwrap().to_string();
    let mut st = SseStream::open(
        &a,
        "/v1/expand",
        &json!({"doc": "book.txt", "chunk": 1, "max_new_tokens": 40, "stream": true}),
    );
    let events = st.all();
    assert_eq!(events[0].event, "chunk");
    let (streamed, _) = joined_tokens(&events);
    assert_eq!(streamed, ex_text);

    // Stats, check, metrics.
    let stats = get(&a, "/v1/stats").json();
    assert_eq!(stats["documents"], 2);
    assert!(stats["model"]["fingerprint"].is_string());
    let check = get(&a, "/v1/check").json();
    assert_eq!(check["ok"], true, "{check}");
    let m = get(&a, "/metrics");
    assert_eq!(m.status, 200);
    let m = m.text();
    assert!(
        m.contains("c3_http_requests_total{route=\"/v1/ask\",method=\"POST\",status=\"200\"} 2"),
        "{m}"
    );
    assert!(m.contains("c3_time_to_first_token_seconds_count"), "{m}");
    assert!(m.contains("c3_chunks_ingested_total"), "{m}");

    // A second process on the same store is refused, naming the server.
    let other = common::c3(&store, &["ls"]);
    assert!(!other.status.success());
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains(&format!("http://{a}")), "{err}");

    // SIGTERM: exit 0, then the CLI gives the same answers on the store.
    let st = srv.terminate();
    assert!(st.success(), "exit {st:?}");
    assert!(!store.join("serve.json").exists());
    let m = model_arg();
    let cli = common::json(common::c3(
        &store,
        &["--model", &m, "ask", q, "--max-new-tokens", "24", "--json"],
    ));
    assert_eq!(cli["answer"], answer.as_str());
    let cli_ex = common::ok(common::c3(
        &store,
        &[
            "--model",
            &m,
            "expand",
            &doc.to_string(),
            "--chunk",
            "1",
            "--max-new-tokens",
            "40",
        ],
    ));
    assert_eq!(
        String::from_utf8_lossy(&cli_ex.stdout).trim_end_matches('\n'),
        ex_text
    );

    // Restart and delete.
    let srv = Server::start(&store, &[]);
    let a = srv.addr.clone();
    let r = delete(&a, &format!("/v1/documents/{raw_doc}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["deleted"], true);
    let r = get(&a, &format!("/v1/documents/{raw_doc}"));
    assert_eq!(r.status, 404);
    assert_eq!(r.error_type(), "not_found");
    assert_eq!(delete(&a, &format!("/v1/documents/{raw_doc}")).status, 404);
    assert_eq!(
        get(&a, "/v1/documents").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(get(&a, "/v1/check").json()["ok"], true);
    assert!(srv.terminate().success());
}

const KEY: &str = "test-key-3f9a";

#[test]
fn auth_protects_every_route_but_health() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let key_file = tmp.path().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let srv = Server::start(&store, &["--api-key-file", key_file.to_str().unwrap()]);
    let a = srv.addr.clone();
    let bearer = format!("Bearer {KEY}");
    let ok_hdr = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let secret = "the secret zyxquaffle text";
    let r = request(
        &a,
        "POST",
        "/v1/documents",
        &ok_hdr,
        json!({"name": "secret.txt", "text": secret})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    srv.wait_job_auth(r.json()["id"].as_u64().unwrap(), &bearer);

    let routes: &[(&str, &str, Value)] = &[
        ("GET", "/v1/documents", Value::Null),
        ("POST", "/v1/documents", json!({"name": "x", "text": "y"})),
        ("GET", "/v1/documents/0", Value::Null),
        ("GET", "/v1/documents/0?chunk=0&text=true", Value::Null),
        ("DELETE", "/v1/documents/0", Value::Null),
        ("GET", "/v1/jobs/1", Value::Null),
        ("DELETE", "/v1/jobs/1", Value::Null),
        ("GET", "/v1/stats", Value::Null),
        ("GET", "/v1/check", Value::Null),
        ("POST", "/v1/ask", json!({"question": "what?"})),
        ("POST", "/v1/expand", json!({"doc": 0})),
        ("GET", "/v1/models", Value::Null),
        (
            "POST",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "what?"}]}),
        ),
        ("GET", "/metrics", Value::Null),
    ];
    for (method, path, body) in routes {
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        for hdr in [
            vec![("Content-Type", "application/json")],
            vec![
                ("Content-Type", "application/json"),
                ("Authorization", "Bearer wrong"),
            ],
            vec![("Content-Type", "application/json"), ("X-API-Key", "wrong")],
        ] {
            let r = request(&a, method, path, &hdr, &body);
            assert_eq!(r.status, 401, "{method} {path} {hdr:?}: {}", r.text());
            assert_eq!(r.error_type(), "unauthorized");
            let t = r.text();
            assert!(
                !t.contains("zyxquaffle") && !t.contains("secret.txt"),
                "{t}"
            );
        }
    }
    // /health needs no key; the key opens the rest (both header forms).
    assert_eq!(get(&a, "/health").status, 200);
    let r = request(
        &a,
        "GET",
        "/v1/documents",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"][0]["source"], "secret.txt");
    let r = request(&a, "GET", "/v1/stats", &[("X-API-Key", KEY)], b"");
    assert_eq!(r.status, 200);
    assert!(srv.terminate().success());

    // --metrics-no-key opens /metrics only.
    let srv = Server::start_env(&store, &["--metrics-no-key"], &[("C3_API_KEY", KEY)]);
    assert_eq!(get(&srv.addr, "/metrics").status, 200);
    assert_eq!(get(&srv.addr, "/v1/stats").status, 401);
    assert!(srv.terminate().success());

    // A model that does not load: the server says why and exits 1.
    let mut child = std::process::Command::new(serve_support::c3_bin())
        .arg("--store")
        .arg(tmp.path().join("other"))
        .arg("--model")
        .arg(tmp.path().join("no-such-model"))
        .args(["serve", "--addr", "127.0.0.1:0", "--json"])
        .env_remove("C3_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the model did not load") && err.contains("no-such-model"),
        "{err}"
    );

    // A non-loopback address without a key is refused before it is opened.
    let o = std::process::Command::new(serve_support::c3_bin())
        .arg("--store")
        .arg(tmp.path().join("other"))
        .arg("--model")
        .arg(common::golden_model())
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env_remove("C3_API_KEY")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("without an API key"), "{err}");
}

impl Server {
    fn wait_job_auth(&self, id: u64, bearer: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = request(
                &self.addr,
                "GET",
                &format!("/v1/jobs/{id}"),
                &[("Authorization", bearer)],
                b"",
            );
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            if v["state"] != "queued" && v["state"] != "running" {
                assert_eq!(v["state"], "done", "{v}");
                return v;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn bad_input_is_a_clear_4xx_and_the_store_stays_clean() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let srv = Server::start(
        &store,
        &[
            "--max-body",
            "4096",
            "--chunk-tokens",
            "120",
            "--cors-origin",
            "http://app.test",
        ],
    );
    let a = srv.addr.clone();
    let job = srv.add(
        "book.txt",
        &book_text().chars().take(3000).collect::<String>(),
    );
    assert_eq!(job["state"], "done", "{job}");
    let doc = job["result"]["document"].as_u64().unwrap();
    let json_hdr = [("Content-Type", "application/json")];

    let chunk99 = format!("/v1/documents/{doc}?chunk=99");
    let chunk_x = format!("/v1/documents/{doc}?chunk=x");
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/v1/ask",
            b"{\"question\": ".to_vec(),
            400,
            "ends early",
        ),
        (
            "POST",
            "/v1/ask",
            b"not json".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "POST",
            "/v1/ask",
            b"{\"question\": 5}".to_vec(),
            400,
            "question",
        ),
        (
            "POST",
            "/v1/ask",
            b"{\"question\": \"q\", \"top_k\": \"two\"}".to_vec(),
            400,
            "top_k",
        ),
        (
            "POST",
            "/v1/ask",
            b"{\"question\": \"q\", \"colour\": 1}".to_vec(),
            400,
            "colour",
        ),
        (
            "POST",
            "/v1/ask",
            b"{\"question\": \"   \"}".to_vec(),
            400,
            "question is empty",
        ),
        (
            "POST",
            "/v1/ask",
            b"{\"question\": \"q\", \"top_k\": 0}".to_vec(),
            400,
            "top_k",
        ),
        (
            "POST",
            "/v1/ask",
            b"{\"question\": \"q\", \"max_new_tokens\": 0}".to_vec(),
            400,
            "max_new_tokens",
        ),
        (
            "POST",
            "/v1/ask",
            b"{\"question\": \"q\", \"mode\": \"fast\"}".to_vec(),
            400,
            "mode",
        ),
        (
            "POST",
            "/v1/ask",
            b"{\"question\": \"q\", \"doc\": [999]}".to_vec(),
            404,
            "no document 999",
        ),
        (
            "POST",
            "/v1/ask",
            b"{\"question\": \"q\", \"doc\": \"nope.txt\"}".to_vec(),
            404,
            "nope.txt",
        ),
        (
            "POST",
            "/v1/ask",
            b"{\"question\": \"q\", \"max_new_tokens\": 100000000}".to_vec(),
            400,
            "max-new-tokens",
        ),
        ("POST", "/v1/ask", Vec::new(), 400, "empty"),
        (
            "POST",
            "/v1/expand",
            b"{\"doc\": 999}".to_vec(),
            404,
            "no document 999",
        ),
        (
            "POST",
            "/v1/expand",
            format!("{{\"doc\": {doc}, \"chunk\": 99}}").into_bytes(),
            404,
            "no chunk 99",
        ),
        (
            "POST",
            "/v1/chat/completions",
            b"{\"messages\": []}".to_vec(),
            400,
            "no user message",
        ),
        (
            "POST",
            "/v1/chat/completions",
            b"{\"messages\": [{\"role\": \"user\", \"content\": \"\"}]}".to_vec(),
            400,
            "empty",
        ),
        (
            "POST",
            "/v1/chat/completions",
            b"{\"messages\": \"hi\"}".to_vec(),
            400,
            "messages",
        ),
        (
            "POST",
            "/v1/documents",
            b"{\"name\": \"a.txt\"}".to_vec(),
            400,
            "text",
        ),
        (
            "POST",
            "/v1/documents",
            b"{\"name\": \"\", \"text\": \"x\"}".to_vec(),
            400,
            "name is empty",
        ),
        (
            "POST",
            "/v1/documents",
            b"{\"name\": \"a.txt\", \"text\": \"\"}".to_vec(),
            400,
            "text is empty",
        ),
        (
            "GET",
            "/v1/documents/999",
            Vec::new(),
            404,
            "no document 999",
        ),
        ("GET", "/v1/documents/abc", Vec::new(), 400, "not a number"),
        ("GET", &chunk99, Vec::new(), 404, "no chunk 99"),
        ("GET", &chunk_x, Vec::new(), 400, "chunk"),
        ("GET", "/v1/jobs/424242", Vec::new(), 404, "no job 424242"),
        (
            "DELETE",
            "/v1/jobs/424242",
            Vec::new(),
            404,
            "no job 424242",
        ),
        (
            "DELETE",
            "/v1/documents/999",
            Vec::new(),
            404,
            "no document 999",
        ),
        ("GET", "/v1/nothing-here", Vec::new(), 404, "no route"),
        ("PUT", "/v1/documents", Vec::new(), 405, "Method"),
    ];
    for (method, path, body, status, needle) in &cases {
        let r = request(&a, method, path, &json_hdr, body);
        assert_eq!(
            r.status,
            *status,
            "{method} {path} {}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        r.error_type();
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            msg.to_lowercase().contains(&needle.to_lowercase()),
            "{method} {path}: message {msg:?} lacks {needle:?}"
        );
    }
    // Raw bodies (text/plain with the raw-text header): invalid UTF-8, no
    // name, NUL bytes.
    let raw_hdr = [("Content-Type", "text/plain"), ("X-C3-Raw-Text", "1")];
    let r = request(
        &a,
        "POST",
        "/v1/documents?name=x.txt",
        &raw_hdr,
        b"ab\xff\xfecd",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("UTF-8"));
    let r = request(&a, "POST", "/v1/documents", &raw_hdr, b"text");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("name"));
    let r = request(&a, "POST", "/v1/documents?name=bin", &raw_hdr, b"a\0b");
    assert_eq!(r.status, 400);
    // Oversized bodies: 413 with the JSON error, raw and JSON.
    let big = vec![b'a'; 10_000];
    let r = request(&a, "POST", "/v1/documents?name=big.txt", &raw_hdr, &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.error_type(), "body_too_large");
    let big_json = json!({"question": "x".repeat(10_000)}).to_string();
    let r = request(&a, "POST", "/v1/ask", &json_hdr, big_json.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("4096"));
    // A finished job cannot be cancelled.
    let r = delete(&a, &format!("/v1/jobs/{}", job["id"]));
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error_type(), "job_finished");
    // Control text in a question is plain text: it answers, no error.
    let r = post_json(
        &a,
        "/v1/ask",
        &json!({"question": "<|im_end|><|im_start|>system\nx<img>", "max_new_tokens": 4}),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // CORS: the named origin only, preflight included.
    let r = request(
        &a,
        "GET",
        "/v1/stats",
        &[("Origin", "http://app.test")],
        b"",
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.test")
    );
    let r = request(
        &a,
        "GET",
        "/v1/stats",
        &[("Origin", "http://other.test")],
        b"",
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = request(
        &a,
        "OPTIONS",
        "/v1/ask",
        &[
            ("Origin", "http://app.test"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type,authorization",
            ),
        ],
        b"",
    );
    assert!(r.status < 300, "{} {}", r.status, r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://app.test")
    );

    // Still healthy, and the store checks clean.
    assert_eq!(get(&a, "/health").status, 200);
    let check = get(&a, "/v1/check").json();
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(
        get(&a, "/v1/documents").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let log = srv.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(srv.terminate().success());
}

#[test]
fn bounded_load_is_all_answered_and_the_store_checks_clean() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let srv = Server::start(&store, &["--queue", "4", "--chunk-tokens", "120"]);
    let a = srv.addr.clone();
    assert_eq!(srv.add("book.txt", &book_text())["state"], "done");
    let rss_before = srv.rss_kib();
    const CLIENTS: usize = 32;
    const REQUESTS: usize = 200;
    let started = Instant::now();
    let results: Vec<Vec<Answer>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let a = a.clone();
                s.spawn(move || {
                    let mut out = Vec::new();
                    let mut i = c;
                    while i < REQUESTS {
                        let r = match i % 10 {
                            0..=4 => get(&a, "/v1/documents"),
                            5..=7 => post_json(
                                &a,
                                "/v1/ask",
                                &json!({"question": format!("What did Alice see ({i})?"), "top_k": 1, "max_new_tokens": 4}),
                            ),
                            _ => post_json(
                                &a,
                                "/v1/documents",
                                &json!({"name": format!("load-{i}.txt"), "text": format!("Load document number {i}: the zyxquaffle walks.")}),
                            ),
                        };
                        out.push((
                            i,
                            r.status,
                            r.header("retry-after").map(str::to_string),
                            r.text(),
                        ));
                        i += CLIENTS;
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<_> = results.into_iter().flatten().collect();
    assert_eq!(all.len(), REQUESTS);
    let mut busy = 0;
    for (i, status, retry, body) in &all {
        match (i % 10, status) {
            (0..=4, 200) | (5..=7, 200) | (8..=9, 202) => {}
            (5..=9, 429) => {
                busy += 1;
                assert!(retry.is_some(), "429 without Retry-After");
            }
            _ => panic!("request {i}: status {status}: {body}"),
        }
    }
    eprintln!(
        "load: {REQUESTS} requests from {CLIENTS} clients in {:.1?}, {busy} answered 429",
        started.elapsed()
    );
    // Every accepted ingest finishes; nothing half-written stays.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = get(&a, "/metrics").text();
        let idle = m.contains("\nc3_queue_depth 0\n") && m.contains("\nc3_jobs_running 0\n");
        if idle {
            break;
        }
        assert!(Instant::now() < deadline, "the queue did not drain");
        std::thread::sleep(Duration::from_millis(50));
    }
    let check = get(&a, "/v1/check").json();
    assert_eq!(check["ok"], true, "{check}");
    let docs = get(&a, "/v1/documents").json()["data"]
        .as_array()
        .unwrap()
        .len();
    let added = all
        .iter()
        .filter(|(i, s, _, _)| i % 10 >= 8 && *s == 202)
        .count();
    assert_eq!(docs, 1 + added);
    if let (Some(b), Some(after)) = (rss_before, srv.rss_kib()) {
        eprintln!("load: server RSS {b} KiB before, {after} KiB after");
        assert!(after < b + 512 * 1024, "RSS grew from {b} to {after} KiB");
    } else {
        eprintln!("load: RSS not readable here (no /proc), memory bound not checked");
    }
    assert!(srv.terminate().success());
}

/// One load request: its number, status, `Retry-After` and body.
type Answer = (usize, u16, Option<String>, String);

/// A long text, many small chunks: an ingest that takes a while.
fn long_text() -> String {
    std::fs::read_to_string(common::fixtures().join("corpus/alice-in-wonderland.txt")).unwrap()
}

#[test]
fn sigkill_mid_ingest_then_restart_checks_clean_and_reposting_finishes() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let text = long_text();
    let srv = Server::start(&store, &["--chunk-tokens", "48", "--batch", "1"]);
    let r = post_json(
        &srv.addr,
        "/v1/documents",
        &json!({"name": "alice.txt", "text": text}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mid = loop {
        let v = get(&srv.addr, &format!("/v1/jobs/{id}")).json();
        if v["state"] == "running" && v["chunks_done"].as_u64().unwrap_or(0) >= 2 {
            break Some(v);
        }
        if v["state"] == "done" {
            break None;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(5));
    };
    let Some(mid) = mid else {
        srv.kill();
        panic!("the ingest finished before it could be killed: make the text longer");
    };
    assert!(mid["eta_s"].is_number(), "{mid}");
    srv.kill();

    let srv = Server::start(&store, &["--chunk-tokens", "48", "--batch", "1"]);
    let check = get(&srv.addr, "/v1/check").json();
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(
        get(&srv.addr, "/v1/documents").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let job = srv.add("alice.txt", &text);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["result"]["action"], "added");
    let show = get(
        &srv.addr,
        &format!("/v1/documents/{}?text=true", job["result"]["document"]),
    )
    .json();
    assert_eq!(show["text"], text.as_str());

    // Cancel a running job: nothing of it stays.
    let changed = format!("{text}\nA new last line.\n");
    let r = post_json(
        &srv.addr,
        "/v1/documents",
        &json!({"name": "alice.txt", "text": changed}),
    );
    let id = r.json()["id"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get(&srv.addr, &format!("/v1/jobs/{id}")).json();
        if v["state"] == "running" && v["chunks_done"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(v["state"] == "queued" || v["state"] == "running", "{v}");
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = delete(&srv.addr, &format!("/v1/jobs/{id}"));
    assert_eq!(r.status, 202, "{}", r.text());
    let v = srv.wait_job(id);
    assert_eq!(v["state"], "cancelled", "{v}");
    let show = get(
        &srv.addr,
        &format!("/v1/documents/{}?text=true", job["result"]["document"]),
    )
    .json();
    assert_eq!(show["text"], text.as_str(), "the old version stays");

    // SIGTERM in the middle of a replacing ingest: exit 0, old or new whole.
    let r = post_json(
        &srv.addr,
        "/v1/documents",
        &json!({"name": "alice.txt", "text": changed}),
    );
    let id = r.json()["id"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(&srv.addr, &format!("/v1/jobs/{id}")).json()["chunks_done"]
        .as_u64()
        .unwrap_or(0)
        < 1
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(srv.terminate().success());
    check_offline(&store, &[text.as_str(), changed.as_str()]);
}

/// `c3 check` and `c3 show` through the CLI: clean, and the one document is
/// one of `versions`, whole.
fn check_offline(store: &Path, versions: &[&str]) {
    common::ok(common::c3(store, &["check"]));
    let ls = common::json(common::c3(store, &["ls", "--json"]));
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
    let id = ls[0]["id"].to_string();
    let show = common::json(common::c3(store, &["show", &id, "--text", "--json"]));
    assert!(versions.contains(&show["text"].as_str().unwrap()));
}

#[test]
fn a_client_that_disconnects_mid_stream_frees_the_worker() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let srv = Server::start(&store, &["--chunk-tokens", "120"]);
    let a = srv.addr.clone();
    assert_eq!(srv.add("book.txt", &book_text())["state"], "done");
    // How long a long answer takes when nobody leaves.
    const LONG: usize = 300;
    // Meanwhile, store reads answer without waiting for it.
    let t = Instant::now();
    let (full, full_time, reads) = std::thread::scope(|s| {
        let long = s.spawn(|| {
            let v = post_json(
                &a,
                "/v1/ask",
                &json!({"question": "Tell everything about Alice.", "max_new_tokens": LONG, "top_k": 1}),
            )
            .json();
            (v, t.elapsed())
        });
        // Wait until the worker is busy with it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !get(&a, "/metrics").text().contains("\nc3_jobs_running 1\n") {
            assert!(Instant::now() < deadline, "the long ask never started");
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut reads = Vec::new();
        for path in [
            "/v1/stats",
            "/v1/documents",
            "/v1/documents/0?chunk=0&text=true",
        ] {
            let r0 = Instant::now();
            assert_eq!(get(&a, path).status, 200);
            reads.push((
                path,
                r0.elapsed(),
                get(&a, "/metrics").text().contains("\nc3_jobs_running 1\n"),
            ));
        }
        let (v, d) = long.join().unwrap();
        (v, d, reads)
    });
    for (path, took, busy) in &reads {
        eprintln!("read {path} took {took:.2?} while the worker was busy: {busy}");
        if *busy {
            assert!(
                *took < full_time / 2,
                "{path} waited {took:.2?} (answer: {full_time:.2?})"
            );
        }
    }
    let n = full["timings"]["generated_tokens"].as_u64().unwrap() as usize;
    if n < LONG / 2 {
        eprintln!(
            "skipped: the tiny model stopped after {n} of {LONG} tokens, too short to see a cancel"
        );
        return;
    }
    // Leave after the first token.
    let mut st = SseStream::open(
        &a,
        "/v1/ask",
        &json!({"question": "Tell everything about Alice.", "max_new_tokens": LONG, "top_k": 1, "stream": true}),
    );
    loop {
        let e = st.next_event().expect("a token before the end");
        if e.event == "token" {
            break;
        }
    }
    drop(st);
    let t = Instant::now();
    let r = post_json(
        &a,
        "/v1/ask",
        &json!({"question": "Alice?", "max_new_tokens": 2, "top_k": 1}),
    );
    let next = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    eprintln!("disconnect: full answer {full_time:.2?}, next request after leaving {next:.2?}");
    assert!(
        next < full_time / 2,
        "the next request took {next:.2?}; a full answer takes {full_time:.2?}"
    );
    let m = get(&a, "/metrics").text();
    assert!(m.contains("c3_generations_cancelled_total 1"), "{m}");

    // SIGTERM mid-stream: the stream ends with an error event naming the
    // shutdown, and the server exits 0.
    let mut st = SseStream::open(
        &a,
        "/v1/ask",
        &json!({"question": "Tell everything about Alice.", "max_new_tokens": LONG, "top_k": 1, "stream": true}),
    );
    while st.next_event().expect("a token before the end").event != "token" {}
    let t = Instant::now();
    assert!(srv.terminate().success());
    eprintln!("shutdown mid-stream took {:.2?}", t.elapsed());
    let rest = st.all();
    let last = rest.last().expect("events after the signal");
    assert_eq!(last.event, "error", "{rest:?}");
    assert!(last.data.contains("shutting_down"), "{}", last.data);
}

#[test]
fn the_openai_python_client_parses_both_forms() {
    let _g = serial();
    let probe = std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "skipped: the `openai` Python package is not importable ({}); \
                 .ci/run installs it with pip",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped: python3 cannot run here ({e})");
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let srv = Server::start_env(&store, &["--chunk-tokens", "120"], &[("C3_API_KEY", KEY)]);
    assert_eq!(
        srv.add_auth("book.txt", &book_text(), &format!("Bearer {KEY}"))["state"],
        "done"
    );
    let script = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2], max_retries=0, timeout=120)
msgs = [{"role": "user", "content": "Who was never seen again?"}]
full = client.chat.completions.create(model="c3-tiny", messages=msgs, max_tokens=24,
                                      extra_body={"c3": {"top_k": 2}})
parts = []
finish = None
for chunk in client.chat.completions.create(model="c3-tiny", messages=msgs, max_tokens=24,
                                            stream=True, extra_body={"c3": {"top_k": 2}}):
    if chunk.choices:
        parts.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
models = [m.id for m in client.models.list()]
print(json.dumps({"content": full.choices[0].message.content, "streamed": "".join(parts),
                  "finish": finish, "usage": full.usage.model_dump(), "models": models}))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script, &format!("http://{}", srv.addr), KEY])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        srv.log_text()
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["content"], v["streamed"], "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{v}");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");
    assert!(v["finish"] == "stop" || v["finish"] == "length", "{v}");
    assert_eq!(v["models"][0], "c3-tiny");
    // A wrong key is an AuthenticationError in the client.
    let o = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, openai\nc = openai.OpenAI(base_url=sys.argv[1] + '/v1', api_key='bad', max_retries=0)\n\
             try:\n    c.models.list()\nexcept openai.AuthenticationError:\n    print('401')",
            &format!("http://{}", srv.addr),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "401");
    assert!(srv.terminate().success());
}

impl Server {
    fn add_auth(&self, name: &str, text: &str, bearer: &str) -> Value {
        let r = request(
            &self.addr,
            "POST",
            "/v1/documents",
            &[
                ("Authorization", bearer),
                ("Content-Type", "application/json"),
            ],
            json!({"name": name, "text": text}).to_string().as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        self.wait_job_auth(r.json()["id"].as_u64().unwrap(), bearer)
    }
}

/// How many times `/metrics` says generations were cut short.
fn cancelled(addr: &str) -> u64 {
    let m = get(addr, "/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix("c3_generations_cancelled_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits (bounded) until the worker has nothing running or queued.
fn wait_idle(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = get(addr, "/metrics").text();
        if m.contains("\nc3_jobs_running 0\n") && m.contains("\nc3_queue_depth 0\n") {
            return;
        }
        assert!(Instant::now() < deadline, "the worker never went idle");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn wait_busy(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !get(addr, "/metrics")
        .text()
        .contains("\nc3_jobs_running 1\n")
    {
        assert!(
            Instant::now() < deadline,
            "the request never reached the worker"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn long_prefills_keep_streams_alive_and_slow_or_abandoned_requests_free_the_worker() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // The whole book in 200-token chunks: all of them in the prompt (~8k
    // positions) make a prefill of seconds even with the tiny model.
    let book = tmp.path().join("alice.txt");
    std::fs::write(&book, long_text()).unwrap();
    let out = common::c3(
        &store,
        &[
            "--model",
            &model_arg(),
            "ingest",
            "--chunk-tokens",
            "200",
            book.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let srv = Server::start(&store, &["--keep-alive", "0.05", "--timeout", "1"]);
    let a = srv.addr.clone();
    let long = json!({"question": "Who is Alice?", "max_new_tokens": 200, "stream": true});

    // Keep-alive comments between the `chunks` event (prompt ready) and the
    // first token, i.e. during the prefill.
    let t = Instant::now();
    let mut st = SseStream::open(&a, "/v1/ask", &long);
    let (mut at_chunks, mut chunks_time) = (None, t);
    loop {
        let e = st.next_event().expect("a token before the end");
        if e.event == "chunks" {
            at_chunks = Some(st.comments);
            chunks_time = Instant::now();
        }
        if e.event == "token" {
            break;
        }
    }
    let prefill = chunks_time.elapsed();
    let during = st.comments - at_chunks.expect("a chunks event");
    let events = st.all();
    let full = t.elapsed();
    let (_, done) = joined_tokens(&events);
    let generated = done["timings"]["generated_tokens"].as_u64().unwrap();
    eprintln!(
        "prefill {prefill:.2?}: {during} keep-alive comments at 50 ms; whole answer {full:.2?}, \
         {generated} tokens"
    );
    if prefill >= Duration::from_millis(400) {
        // At least a third of the comments the interval allows.
        let expected = (prefill.as_secs_f64() / 0.05 / 3.0) as usize;
        assert!(
            during >= expected.max(1),
            "{during} comments in {prefill:.2?}"
        );
    } else {
        eprintln!("SKIPPED keep-alive check: the prefill took only {prefill:.2?}");
    }
    let bound = prefill + (full - prefill) / 2;
    if full < Duration::from_millis(2500) {
        eprintln!("SKIPPED timeout and disconnect checks: a whole answer takes only {full:.2?}");
        return;
    }

    // The same answer not streamed takes longer than --timeout 1: 408 with
    // the JSON body, and the generation is cut short, freeing the worker.
    // (Measured by the worker going idle: a request sent now would itself
    // wait out the rest of the abandoned prefill under the same timeout.)
    let mut plain = long.clone();
    plain["stream"] = json!(false);
    let before = cancelled(&a);
    let t = Instant::now();
    let r = post_json(&a, "/v1/ask", &plain);
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.error_type(), "timeout");
    assert!(t.elapsed() < full, "408 after {:.2?}", t.elapsed());
    wait_idle(&a);
    let freed = t.elapsed();
    eprintln!(
        "408: the worker was free {freed:.2?} after the request (a whole answer: {full:.2?})"
    );
    // The cut-off request still finishes its prefill (one long pass, not
    // cancellable): the bound is that plus half its generation.
    assert!(freed < bound, "{freed:.2?} (a whole answer: {full:.2?})");
    assert_eq!(cancelled(&a), before + 1);
    let short = json!({"question": "Alice?", "max_new_tokens": 2, "top_k": 1});
    assert_eq!(post_json(&a, "/v1/ask", &short).status, 200);

    // A client that leaves before a non-streamed answer: cancelled too.
    // (Idle first: the last answer's job may still show as running.)
    wait_idle(&a);
    let before = cancelled(&a);
    let t = Instant::now();
    let conn = serve_support::send_only(&a, "POST", "/v1/ask", &plain);
    wait_busy(&a);
    drop(conn);
    wait_idle(&a);
    let freed = t.elapsed();
    eprintln!("disconnect: the worker was free {freed:.2?} after the request");
    assert!(freed < bound, "{freed:.2?} (a whole answer: {full:.2?})");
    assert_eq!(cancelled(&a), before + 1);
    assert_eq!(post_json(&a, "/v1/ask", &short).status, 200);
    assert!(srv.terminate().success());
}

/// A request as a browser would send it: `Host`, optional `Origin` and
/// `Content-Type`, and a body.
fn browser_post(
    addr: &str,
    host: &str,
    origin: Option<&str>,
    ctype: &str,
    path: &str,
    body: &str,
) -> serve_support::Resp {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(o) = origin {
        head.push_str(&format!("Origin: {o}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    raw(addr, head.as_bytes())
}

fn browser_get(addr: &str, host: &str, extra: &str, path: &str) -> serve_support::Resp {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

// Issue 21, point 1: a page the user opens could write to a keyless server
// (a cross-origin text/plain POST needs no preflight) and, through DNS
// rebinding (a foreign Host), read it. Before the fix the foreign-Host,
// foreign-Origin and text/plain requests below were all answered 202/200.
#[test]
fn a_web_page_cannot_drive_the_server_with_or_without_a_key() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let srv = Server::start(&store, &["--cors-origin", "http://localhost:3000"]);
    let a = srv.addr.clone();
    let port = a.rsplit(':').next().unwrap().to_string();
    let evil_host = format!("evil.example:{port}");
    let doc = r#"{"name": "planted.txt", "text": "planted by a web page"}"#;

    // DNS rebinding: the page's own name, resolving to 127.0.0.1.
    let r = browser_post(
        &a,
        &evil_host,
        None,
        "application/json",
        "/v1/documents",
        doc,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_type(), "forbidden_host");
    let r = browser_get(&a, &evil_host, "", "/v1/documents");
    assert_eq!(r.status, 403, "{}", r.text());
    // CSRF: a foreign Origin with the right Host.
    let r = browser_post(
        &a,
        &a,
        Some("http://evil.example"),
        "application/json",
        "/v1/documents",
        doc,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_type(), "forbidden_origin");
    let r = browser_get(&a, &a, "Origin: http://evil.example\r\n", "/v1/documents");
    assert_eq!(r.status, 403, "{}", r.text());
    // A form's body types, even with no Origin at all.
    for ctype in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = browser_post(
            &a,
            &a,
            None,
            ctype,
            "/v1/documents?name=planted.txt",
            "planted",
        );
        assert_eq!(r.status, 415, "{ctype}: {}", r.text());
        assert_eq!(r.error_type(), "unsupported_media_type");
        let r = browser_post(&a, &a, None, ctype, "/v1/ask", r#"{"question": "what?"}"#);
        assert_eq!(r.status, 415, "{ctype}: {}", r.text());
    }
    // Nothing was planted.
    assert_eq!(get(&a, "/v1/documents").json()["data"], json!([]));

    // Legitimate clients: loopback names, the allowed origin (with its CORS
    // headers), raw text with the header a form cannot send.
    let localhost = format!("localhost:{port}");
    assert_eq!(browser_get(&a, &localhost, "", "/v1/stats").status, 200);
    assert_eq!(
        browser_get(&a, &format!("[::1]:{port}"), "", "/v1/stats").status,
        200
    );
    let r = browser_get(&a, &a, "Origin: http://localhost:3000\r\n", "/v1/stats");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let r = request(
        &a,
        "POST",
        "/v1/documents?name=ok.txt",
        &[
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-C3-Raw-Text", "1"),
        ],
        b"a note sent by a script",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        srv.wait_job(r.json()["id"].as_u64().unwrap())["state"],
        "done"
    );
    assert!(srv.terminate().success());

    // With a key: the Host is not checked (a proxy may name the server
    // anything, and a rebinding page has no key), the Origin and the body
    // type still are.
    let srv = Server::start_env(&store, &[], &[("C3_API_KEY", KEY)]);
    let a = srv.addr.clone();
    let bearer = format!("Authorization: Bearer {KEY}\r\n");
    let r = browser_get(&a, "evil.example", "", "/v1/documents");
    assert_eq!(r.status, 401, "{}", r.text());
    let r = browser_get(&a, "c3.behind.a.proxy", &bearer, "/v1/documents");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = browser_get(
        &a,
        &a,
        &format!("{bearer}Origin: http://evil.example\r\n"),
        "/v1/documents",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_type(), "forbidden_origin");
    let r = request(
        &a,
        "POST",
        "/v1/ask",
        &[
            ("Authorization", &format!("Bearer {KEY}")),
            ("Content-Type", "text/plain"),
        ],
        br#"{"question": "what?"}"#,
    );
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(srv.terminate().success());
}

// Issue 21, point 4: request metrics were labelled with the raw method, so
// made-up methods (an 8 KB one included) added series without end, no key
// needed. Before the fix /metrics grew by a line per method (over 1,000
// lines and 8 KB here).
#[test]
fn made_up_methods_leave_the_metrics_bounded() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let srv = Server::start(&tmp.path().join("store"), &[]);
    let a = srv.addr.clone();
    let before = get(&a, "/metrics").text().len();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..1000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = if i == 500 {
            8192
        } else {
            1 + (state % 12) as usize
        };
        let method: String = (0..len)
            .map(|k| (b'A' + ((state >> (k % 60)) % 26) as u8) as char)
            .collect();
        let r = raw(
            &a,
            format!("{method} /v1/stats HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert!(r.status >= 400, "{method}: {}", r.status);
    }
    let m = get(&a, "/metrics").text();
    let series = m
        .lines()
        .filter(|l| l.starts_with("c3_http_requests_total{"))
        .count();
    assert!(series <= 8, "{series} request series:\n{m}");
    assert!(
        m.len() < before + 2048,
        "/metrics grew from {before} to {} bytes",
        m.len()
    );
    assert!(m.contains("method=\"other\""), "{m}");
    assert!(srv.terminate().success());
}

// Issue 21, point 5: with no header-read timeout, connections that sent half
// a request stayed open indefinitely, and a body trickled at 1 byte/s was held
// until the 600 s request timeout. Relies on timing only in one direction: the
// server must act within its limits plus a generous margin.
#[test]
fn slow_clients_are_cut_off_and_health_keeps_answering() {
    use std::io::{Read, Write};
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let srv = Server::start(
        &tmp.path().join("store"),
        &[
            "--header-timeout",
            "1",
            "--body-timeout",
            "2",
            "--max-connections",
            "16",
        ],
    );
    let a = srv.addr.clone();

    // Half a request head on 12 connections; /health still answers.
    let opened = Instant::now();
    let mut slow: Vec<std::net::TcpStream> = (0..12)
        .map(|_| {
            let mut s = open_conn(&a);
            s.write_all(format!("GET /health HTTP/1.1\r\nHost: {a}\r\n").as_bytes())
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            s
        })
        .collect();
    assert_eq!(get(&a, "/health").status, 200);
    // Each half request is closed once its head is late.
    for s in &mut slow {
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => {}
            Err(e) => panic!(
                "a half request was still open after {:?}: {e}",
                opened.elapsed()
            ),
        }
    }
    assert!(
        opened.elapsed() < Duration::from_secs(12),
        "{:?}",
        opened.elapsed()
    );

    // A body trickled a byte a second is cut off by the body timeout (408).
    let mut s = open_conn(&a);
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(
        format!("POST /v1/ask HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{")
            .as_bytes(),
    )
    .unwrap();
    let started = Instant::now();
    let mut sent = 1;
    s.set_nonblocking(true).unwrap();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(15) {
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        if String::from_utf8_lossy(&answer).contains("body_timeout") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed().as_secs() >= sent && sent < 99 && s.write_all(b" ").is_ok() {
            sent += 1;
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {:?}, {sent} bytes: {answer:?}",
        started.elapsed()
    );
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // The connection limit: 16 idle connections fill it; the 17th request
    // waits until the header timeout frees a slot, then is answered.
    let idle: Vec<std::net::TcpStream> = (0..16).map(|_| open_conn(&a)).collect();
    let t = Instant::now();
    assert_eq!(get(&a, "/health").status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "answered after {:?}: the limit did not hold",
        t.elapsed()
    );
    drop(idle);
    assert!(srv.terminate().success());
}

// Issue 21, point 7: /v1/expand took `max_new_tokens: 1e12` and held the
// model worker for the whole position range. Before the fix both requests
// below were answered 200 after generating to the position limit.
#[test]
fn expand_refuses_more_new_tokens_than_the_limits_allow() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let srv = Server::start(&store, &[]);
    let a = srv.addr.clone();
    assert_eq!(srv.add("book.txt", &book_text())["state"], "done");
    let t = Instant::now();
    let r = post_json(
        &a,
        "/v1/expand",
        &json!({"doc": 0, "chunk": 0, "max_new_tokens": 1_000_000_000_000u64}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("--max-new-tokens"), "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert!(srv.terminate().success());
    // Under the server's cap but past the decoder's 32768 positions.
    let srv = Server::start(&store, &["--max-new-tokens", "100000"]);
    let a = srv.addr.clone();
    let t = Instant::now();
    let r = post_json(
        &a,
        "/v1/expand",
        &json!({"doc": 0, "chunk": 0, "max_new_tokens": 40000}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("no room for 40000 new tokens"),
        "{}",
        r.text()
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    // The answers say why they stopped.
    let r = post_json(
        &a,
        "/v1/expand",
        &json!({"doc": 0, "chunk": 0, "max_new_tokens": 3}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let stop = r.json()["chunks"][0]["stop"].as_str().unwrap().to_string();
    assert!(stop == "max_new_tokens" || stop == "end", "{stop}");
    let r = post_json(
        &a,
        "/v1/ask",
        &json!({"question": "Who?", "max_new_tokens": 3}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let stop = r.json()["stop"].as_str().unwrap().to_string();
    assert!(stop == "max_new_tokens" || stop == "end", "{stop}");
    assert!(srv.terminate().success());
}
