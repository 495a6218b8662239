//! Issue 23: `c3 mcp` driven by a client nobody here wrote, the official
//! Python `mcp` SDK (tests/mcp/client.py): over stdio it lists the tools,
//! calls each, reads resources, tries bad input (every case a tool error,
//! the session going on) and its results are compared with `c3 ask
//! --json`, `c3 search --json`, `c3 show` and `c3 ls --json` on the same
//! store; then the same over streamable HTTP (`c3 mcp --http`, and `/mcp`
//! under `c3 serve`) with the key, and without it (401) or from a web page
//! (403). The store checks clean afterwards.
//!
//! Python is `C3_MCP_PYTHON`, else `target/mcp-venv/bin/python`, else
//! `python3`, whichever imports `mcp` 2.x first; without one the test
//! prints why and returns (`.ci/run` installs `mcp==2.3.0`).

mod common;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{json, ok};
use serde_json::{json, Value};
use serve_support::{request, Server};

fn python() -> Result<String, String> {
    let mut tried = Vec::new();
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mcp-venv/bin/python");
    let candidates: Vec<String> = std::env::var("C3_MCP_PYTHON")
        .into_iter()
        .chain([venv.display().to_string(), "python3".to_string()])
        .collect();
    for py in candidates {
        // tests/mcp/client.py is written against the 2.x API (snake_case
        // fields, httpx2); a 1.x SDK is reported like a missing one.
        let probe = "import importlib.metadata as m, mcp, sys; \
                     v = m.version('mcp'); \
                     sys.exit(0 if int(v.split('.')[0]) >= 2 else f'mcp {v} is older than 2')";
        match Command::new(&py).args(["-c", probe]).output() {
            Ok(o) if o.status.success() => return Ok(py),
            Ok(o) => tried.push(format!(
                "{py}: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            )),
            Err(e) => tried.push(format!("{py}: {e}")),
        }
    }
    Err(tried.join("; "))
}

fn c3(store: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(store)
        .arg("--model")
        .arg(common::golden_model())
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("C3_MODEL")
        .env_remove("C3_API_KEY")
        .output()
        .unwrap()
}

struct Tree {
    root: PathBuf,
    outside: PathBuf,
    big_files: usize,
}

/// The allowed root: `docs/` (three documents with metadata, ingested
/// before MCP starts), `extra/` (one file and a symlink out of the root),
/// `big/` (many documents, for the cancellation), `link` (a symlink to the
/// folder outside); and `outside/` beside it.
fn tree(base: &Path, store: &Path) -> Tree {
    let root = base.join("root");
    let outside = base.join("outside");
    for d in ["docs", "extra", "big"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "Nobody may read this.\n").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("extra/secret.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    std::fs::write(root.join("extra/e1.txt"), "An extra page about rivers.\n").unwrap();
    let big_files = 40;
    common::book_parts(&root.join("big"), "part", big_files, 3000, 3000);
    let docs = [
        (
            "a.txt",
            "The lantern hangs in the hall of the code room.\n",
            ["kind=code", "year=1999"],
        ),
        (
            "b.txt",
            "A license for the lantern: use it freely.\n",
            ["kind=license", "year=2005"],
        ),
        (
            "c.txt",
            "Notes: the lantern was moved on Tuesday.\n",
            ["kind=notes", "year=2001"],
        ),
    ];
    for (name, text, meta) in docs {
        let p = root.join("docs").join(name);
        std::fs::write(&p, text).unwrap();
        let mut args = vec!["ingest", p.to_str().unwrap()];
        for m in &meta {
            args.extend(["--meta", m]);
        }
        ok(c3(store, &args));
    }
    Tree {
        root: std::fs::canonicalize(root).unwrap(),
        outside,
        big_files,
    }
}

/// What the command line says about the store, to compare with MCP.
struct Expected {
    ask: Value,
    ask_where: Value,
    search: Value,
    chunk0: Value,
    doc0: Value,
    ls: Value,
    stats: Value,
}

fn expected(store: &Path) -> Expected {
    let ask = |extra: &[&str], n: &str| {
        let mut a = vec![
            "ask",
            "Where is the lantern?",
            "--json",
            "--max-new-tokens",
            n,
        ];
        a.extend_from_slice(extra);
        json(c3(store, &a))
    };
    Expected {
        ask: ask(&["--top-k", "2"], "6"),
        ask_where: ask(&["--where", "kind=license"], "4"),
        search: json(c3(store, &["search", "lantern", "--top-k", "3", "--json"])),
        chunk0: json(c3(store, &["show", "0", "--chunk", "0", "--json"])),
        doc0: json(c3(store, &["show", "0", "--json", "--text"])),
        ls: json(c3(store, &["ls", "--json"])),
        stats: json(c3(store, &["stats", "--json"])),
    }
}

fn run_client(py: &str, mode: &str, cfg: &Value, dir: &Path) -> Value {
    let cfg_path = dir.join(format!("{mode}.json"));
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/client.py");
    let o = Command::new(py)
        .arg(&script)
        .arg(mode)
        .arg(&cfg_path)
        .env_remove("C3_MODEL")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python client ({mode}) failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "client output is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// The chunks an answer read, without scores.
fn chunks(v: &Value) -> Vec<(u64, u64)> {
    v["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["doc"].as_u64().unwrap(), c["chunk"].as_u64().unwrap()))
        .collect()
}

/// What both transports must agree on with the command line.
fn compare(got: &Value, want: &Expected) {
    assert_eq!(got["ask"]["answer"], want.ask["answer"], "ask answer");
    assert_eq!(chunks(&got["ask"]), chunks(&want.ask), "ask chunks");
    assert_eq!(got["ask_where"]["answer"], want.ask_where["answer"]);
    assert_eq!(
        chunks(&got["ask_where"]),
        vec![(1, 0)],
        "ask where kind=license"
    );
    assert_eq!(chunks(&want.ask_where), vec![(1, 0)]);
    let hits = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["doc"].clone(), h["chunk"].clone(), h["snippet"].clone()))
            .collect()
    };
    assert_eq!(hits(&got["search"]), hits(&want.search), "search");
    let where_docs: Vec<Value> = got["search_where"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["doc"].clone())
        .collect();
    assert_eq!(where_docs, vec![json!(1)], "search where kind=license");
    assert_eq!(
        got["expand"]["text"], want.chunk0["text"],
        "expand = c3 show --chunk"
    );
    assert_eq!(got["resource_chunk"], want.chunk0["text"]);
    assert_eq!(
        got["resource_doc"], want.doc0["text"],
        "c3://doc/0 = c3 show --text"
    );
    assert!(got["reconstruct"]["text"].is_string() || got["reconstruct"].is_object());
    assert_eq!(got["list"]["documents"], want.ls, "list = c3 ls --json");
    let years: Vec<i64> = got["list_where"]["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["metadata"]["year"].as_i64().unwrap())
        .collect();
    assert!(
        years.iter().all(|y| *y > 2000) && !years.is_empty(),
        "{years:?}"
    );
    assert_eq!(got["stats"]["documents"], want.stats["documents"]);
    assert_eq!(
        got["templates"],
        json!(["c3://doc/{id}", "c3://doc/{id}/chunk/{n}"])
    );
    let n = want.ls.as_array().unwrap().len();
    assert_eq!(got["resources"].as_array().unwrap().len(), n);
}

#[test]
fn the_python_mcp_sdk_drives_c3_over_stdio_and_http() {
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: no Python with the `mcp` package ({why}); .ci/run installs it");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let t = tree(tmp.path(), &store);
    let want = expected(&store);

    // stdio: every tool, resources, bad input, writes, cancellation.
    let cfg = json!({
        "c3": env!("CARGO_BIN_EXE_c3"),
        "store": store,
        "model": common::golden_model(),
        "roots": [t.root],
        "outside": t.outside,
        "link": "link",
        "big": "big",
        "cancel_after": 1.0,
    });
    let got = run_client(&py, "stdio", &cfg, tmp.path());
    compare(&got, &want);
    for (case, msg) in got["errors"].as_object().unwrap() {
        eprintln!("{case}: {msg}");
    }
    assert!(got["add_progress"].as_array().unwrap().len() >= 2);
    assert_eq!(got["add"]["result"]["action"], "added");
    let sync = &got["sync"]["result"];
    assert_eq!(sync["unchanged"], 3, "{sync}");
    ok(c3(&store, &["check"]));
    let ls = json(c3(&store, &["ls", "--json"]));
    let docs = ls.as_array().unwrap();
    let source = |d: &Value| d["source"].as_str().unwrap().to_string();
    assert!(
        !docs.iter().any(|d| source(d).ends_with("notes.md")),
        "deleted"
    );
    assert!(
        !docs.iter().any(|d| source(d).contains("secret")),
        "read outside the root"
    );
    let extra = docs
        .iter()
        .find(|d| source(d).ends_with("extra/e1.txt"))
        .expect("add_path stored extra/e1.txt");
    assert_eq!(extra["metadata"], json!({"kind": "extra"}));
    let big = docs.iter().filter(|d| source(d).contains("/big/")).count();
    eprintln!(
        "cancellation: {big} of {} files stored before the cancel (timed out: {})",
        t.big_files, got["cancel_timed_out"]
    );
    if got["cancel_timed_out"] == true {
        assert!(big < t.big_files, "the cancelled add_path ran to its end");
    }

    // Streamable HTTP: `c3 mcp --http`, with and without the key.
    let want = expected(&store);
    let key_file = tmp.path().join("key");
    std::fs::write(&key_file, "s3cret-key\n").unwrap();
    let root = t.root.to_str().unwrap();
    let key = key_file.to_str().unwrap();
    let server = Server::start_cmd(
        &store,
        &["mcp", "--http", "127.0.0.1:0", "--json"],
        &["--api-key-file", key, "--allow-path", root],
        &[],
    );
    http_refusals(&server.addr);
    let mut cfg = cfg.clone();
    cfg["url"] = json!(format!("http://{}/mcp", server.addr));
    cfg["key"] = json!("s3cret-key");
    let got = run_client(&py, "http", &cfg, tmp.path());
    compare(&got, &want);
    // Only /mcp and /health: the /v1 API is not served by `c3 mcp --http`.
    let r = request(
        &server.addr,
        "GET",
        "/v1/stats",
        &[("Authorization", "Bearer s3cret-key")],
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(server.terminate().success());

    // `/mcp` mounted in `c3 serve`, beside the /v1 API.
    let server = Server::start(&store, &["--api-key-file", key, "--allow-path", root]);
    http_refusals(&server.addr);
    cfg["url"] = json!(format!("http://{}/mcp", server.addr));
    let got = run_client(&py, "http", &cfg, tmp.path());
    compare(&got, &want);
    assert!(server.terminate().success());
    ok(c3(&store, &["check"]));
}

/// Without the key: 401 with a JSON body; from a web page (a foreign
/// `Origin`): 403, whatever the key.
fn http_refusals(addr: &str) {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
    .to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    let r = request(addr, "POST", "/mcp", &headers, init.as_bytes());
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "unauthorized");
    let wrong = [headers[0], headers[1], ("Authorization", "Bearer wrong")];
    assert_eq!(
        request(addr, "POST", "/mcp", &wrong, init.as_bytes()).status,
        401
    );
    let page = [
        headers[0],
        headers[1],
        ("Authorization", "Bearer s3cret-key"),
        ("Origin", "http://evil.example"),
    ];
    let r = request(addr, "POST", "/mcp", &page, init.as_bytes());
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["type"], "forbidden_origin");
    // A form post (text/plain, no preflight) is refused before the key.
    let form = [
        ("Content-Type", "text/plain"),
        ("Authorization", "Bearer s3cret-key"),
    ];
    assert_eq!(
        request(addr, "POST", "/mcp", &form, init.as_bytes()).status,
        415
    );
}
