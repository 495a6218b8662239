//! Issue 23: `c3 mcp` over stdio spoken to line by line (JSON-RPC), without
//! any SDK, so it runs where Python is missing: the handshake, a tool
//! error that leaves the session up, progress notifications for an add,
//! and with an LCLM model `expand` with `reconstruct: true` refused with
//! the reason (LCLM cannot reconstruct) while the stored text is served.

mod common;
mod lclm_support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use common::ok;
use serde_json::{json, Value};

struct Session {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next: u64,
}

impl Session {
    fn start(store: &Path, model: &Path) -> Session {
        let mut child = Command::new(env!("CARGO_BIN_EXE_c3"))
            .arg("--store")
            .arg(store)
            .arg("--model")
            .arg(model)
            .args(["mcp", "--chunk-tokens", "40", "--batch", "1"])
            .env_remove("C3_MODEL")
            .env_remove("C3_API_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        let mut s = Session {
            child,
            input,
            output,
            next: 0,
        };
        let init = s.call(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw-test", "version": "0"}}),
            &mut Vec::new(),
        );
        assert_eq!(init["result"]["serverInfo"]["name"], "c3", "{init}");
        s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        s
    }

    fn send(&mut self, v: &Value) {
        writeln!(self.input, "{v}").unwrap();
        self.input.flush().unwrap();
    }

    /// Sends a request and reads lines until its answer; notifications
    /// that come first are pushed to `notes`.
    fn call(&mut self, method: &str, params: Value, notes: &mut Vec<Value>) -> Value {
        self.next += 1;
        let id = self.next;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            let n = self.output.read_line(&mut line).unwrap();
            assert!(n > 0, "the server closed stdout while {method} was pending");
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {line:?}"));
            if v["id"] == json!(id) {
                return v;
            }
            notes.push(v);
        }
    }

    fn tool(&mut self, name: &str, args: Value) -> Value {
        let r = self.call(
            "tools/call",
            json!({"name": name, "arguments": args}),
            &mut Vec::new(),
        );
        assert!(r["error"].is_null(), "{name}: protocol error {r}");
        r["result"].clone()
    }

    fn close(mut self) {
        drop(self.input);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "c3 mcp ended with {status}");
    }
}

fn error_text(r: &Value) -> String {
    assert_eq!(r["isError"], true, "expected a tool error: {r}");
    r["content"][0]["text"].as_str().unwrap().to_string()
}

#[test]
fn stdio_session_with_progress_and_tool_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let model = common::golden_model();
    let mut s = Session::start(&store, &model);
    let tools = s.call("tools/list", json!({}), &mut Vec::new());
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 9);

    // A bad call is a tool error; the session answers the next one.
    let e = error_text(&s.tool("ask", json!({"question": 3})));
    assert!(e.contains("argument `question`"), "{e}");
    let e = error_text(&s.tool("add_path", json!({"path": "/etc"})));
    assert!(e.contains("--allow-path"), "{e}");

    // An add with a progress token: notifications, then the job's record.
    let text = "The lantern is on the shelf by the door. ".repeat(40);
    let mut notes = Vec::new();
    let r = s.call(
        "tools/call",
        json!({"name": "add", "arguments": {"name": "shelf.txt", "text": text,
               "metadata": {"kind": "notes"}},
               "_meta": {"progressToken": "p1"}}),
        &mut notes,
    );
    let job = &r["result"]["structuredContent"];
    assert_eq!(job["state"], "done", "{r}");
    assert_eq!(job["result"]["action"], "added");
    let progress: Vec<&Value> = notes
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .collect();
    assert!(progress.len() >= 2, "{notes:?}");
    assert!(progress
        .iter()
        .all(|p| p["params"]["progressToken"] == "p1"));
    let last = &progress.last().unwrap()["params"];
    assert_eq!(last["progress"], last["total"], "{last}");
    assert!(
        last["total"].as_f64().unwrap() >= 2.0,
        "several chunks: {last}"
    );

    let listed = s.tool("list", json!({"where": {"kind": "notes"}}));
    assert_eq!(
        listed["structuredContent"]["documents"][0]["source"],
        "shelf.txt"
    );
    s.close();
    ok(common::c3(&store, &["check"]));
}

#[test]
fn lclm_refuses_reconstruct_with_its_reason_and_serves_the_text() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let model = lclm_support::lclm_model(4);
    let doc = tmp.path().join("doc.txt");
    std::fs::write(&doc, "A short note about the harbour and its boats.\n").unwrap();
    ok(Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(&store)
        .arg("--model")
        .arg(&model)
        .arg("ingest")
        .arg(&doc)
        .env_remove("C3_MODEL")
        .output()
        .unwrap());
    let mut s = Session::start(&store, &model);
    let e = error_text(&s.tool("expand", json!({"doc": 0, "chunk": 0, "reconstruct": true})));
    assert!(
        e.contains("LCLM") && e.contains("not to reconstruct"),
        "{e}"
    );
    let r = s.tool("expand", json!({"doc": 0, "chunk": 0}));
    assert_eq!(
        r["structuredContent"]["text"],
        "A short note about the harbour and its boats.\n"
    );
    s.close();
}
