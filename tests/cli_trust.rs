//! Issue 21 through the real `c3` binary: what reaches a terminal is
//! escaped, a closed pipe ends a command quietly, generation settings and
//! checkpoint configs are range-checked, and a generation says when it
//! stopped at the position limit.

mod common;
mod store_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use c3::store::Store;
use common::{c3, fixtures, golden_model};
use store_support::{model, put_doc, FakeCompressor};

/// A document name and text that would act on a terminal printed raw:
/// clear the screen, set the window title, move the cursor, reverse the
/// line (a bidi override).
const EVIL_NAME: &str = "notes\x1b[2J\x1b]0;pwned\x07\r\u{202e}txt.md";
const EVIL_TEXT: &str = "before \x1b[31mred\x1b[0m\x1b[2J after\n";

fn evil_store(dir: &Path) {
    let enc = FakeCompressor::new("trust-fp");
    let store = Store::open(dir).unwrap();
    store.bind_model(&model(&enc)).unwrap();
    put_doc(&store, &enc, EVIL_NAME, &[EVIL_TEXT]);
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn has_control(s: &str) -> bool {
    s.chars()
        .any(|c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
}

// Issue 21, point 9: names with control characters were printed raw by
// `ls` and `show`. Before the fix both outputs below held the escape
// sequences themselves.
#[test]
fn control_characters_in_names_are_shown_escaped_and_json_stays_exact() {
    let tmp = tempfile::tempdir().unwrap();
    evil_store(tmp.path());
    for args in [&["ls"][..], &["show", "0"], &["show", "0", "--chunk", "0"]] {
        let o = c3(tmp.path(), args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            !has_control(out.split("\n---\n").next().unwrap()),
            "{args:?} printed a control character: {out:?}"
        );
        assert!(
            out.contains("notes\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{d}\\u{202e}txt.md"),
            "{args:?}: {out}"
        );
    }
    // JSON output is exact: JSON escapes itself.
    let o = c3(tmp.path(), &["ls", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["source"], EVIL_NAME);
    let o = c3(tmp.path(), &["show", "0", "--text", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["text"], EVIL_TEXT);
    // A text written to a pipe or a file keeps its exact bytes.
    let o = c3(tmp.path(), &["show", "0", "--chunk", "0"]);
    assert!(
        stdout(&o).ends_with(&format!("---\n{EVIL_TEXT}\n")),
        "{:?}",
        stdout(&o)
    );
    // Error messages that name the document are escaped too.
    let o = c3(tmp.path(), &["show", "0", "--chunk", "9"]);
    assert!(!o.status.success());
    assert!(!has_control(&stderr(&o)), "{:?}", stderr(&o));
    assert!(stderr(&o).contains("\\u{1b}[2J"), "{}", stderr(&o));
}

/// `script` gives a command a terminal, for the text that is escaped only
/// on one.
fn script_available() -> bool {
    Command::new("script")
        .args(["-qec", "true", "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_documents_text_is_escaped_on_a_terminal() {
    if !script_available() {
        eprintln!("skipped: `script` (util-linux) is not available to give c3 a terminal");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    evil_store(tmp.path());
    let cmd = format!(
        "{} --store {} show 0 --text",
        env!("CARGO_BIN_EXE_c3"),
        tmp.path().display()
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = stdout(&o).replace("\r\n", "\n");
    assert!(
        out.contains("before \\u{1b}[31mred\\u{1b}[0m\\u{1b}[2J after"),
        "{out:?}"
    );
    assert!(!out.contains('\x1b'), "{out:?}");
}

// Issue 21, point 9: `c3 ingest - --name` stored any name; it now follows
// the server's rule (no control characters). Before the fix this failed
// only for want of a model.
#[test]
fn a_stdin_name_with_control_characters_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(tmp.path().join("s"))
        .args(["ingest", "-", "--name", "a\x1b[2Jb.md"])
        .env_remove("C3_MODEL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("--name") && e.contains("control character"),
        "{e}"
    );
    assert!(!has_control(&e), "{e:?}");
}

/// Runs c3 with stdout and stderr on a pipe whose reader is already gone
/// (`c3 … 2>&1 | head -c 0`).
fn into_closed_pipe(store: &Path, args: &[&str]) -> std::process::ExitStatus {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let err = writer.try_clone().unwrap();
    Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("C3_MODEL")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(err)
        .status()
        .unwrap()
}

// Issue 21, point 11: `c3 ls 2>&1 | head -c 10` panicked (exit 101) on the
// closed pipe. Before the fix every command below exited 101.
#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    evil_store(tmp.path());
    let text = tmp.path().join("t.txt");
    std::fs::write(&text, "A short text to tokenize.").unwrap();
    let model = golden_model();
    let m = model.to_str().unwrap();
    let t = text.to_str().unwrap();
    let export = tmp.path().join("x.c3");
    let x = export.to_str().unwrap();
    for args in [
        &["ls"][..],
        &["ls", "--json"],
        &["show", "0"],
        &["show", "0", "--text"],
        &["show", "0", "--json"],
        &["show", "0", "--chunk", "0"],
        &["stats"],
        &["stats", "--json"],
        &["check"],
        &["check", "--json"],
        &["export", x],
        &["--help"],
        &["ls", "--help"],
        &["--version"],
        &["--model", m, "tokenize", "--text", t],
        &["--model", m, "repeat", "--text", t, "--max-new-tokens", "4"],
    ] {
        let st = into_closed_pipe(tmp.path(), args);
        assert_eq!(st.code(), Some(0), "c3 {args:?} into a closed pipe: {st:?}");
    }
    // A real error still fails (quietly: its stderr is gone too).
    assert_eq!(
        into_closed_pipe(tmp.path(), &["show", "nope"]).code(),
        Some(1)
    );
}

/// A copy of the tiny model whose files are links, with `edit` applied to
/// one of its configs.
fn model_with(dir: &Path, file: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let src = golden_model();
    let dst = dir.join("model");
    std::fs::create_dir_all(dst.join("llm1")).unwrap();
    for rel in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "qwen.tiktoken",
        "llm1/config.json",
        "llm1/model.safetensors",
    ] {
        if rel.ends_with(".json") {
            std::fs::copy(src.join(rel), dst.join(rel)).unwrap();
        } else {
            std::os::unix::fs::symlink(src.join(rel), dst.join(rel)).unwrap();
        }
    }
    let path = dst.join(file);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    dst
}

fn golden_text() -> PathBuf {
    fixtures().join("golden/texts/english.txt")
}

// Issue 21, point 10: a config with `rms_norm_eps: -1` or `rope_theta: 0`
// loaded and generated nothing, exit 0. Before the fix `repeat` succeeded
// with each of these.
#[test]
fn out_of_range_config_numbers_are_refused_with_file_and_key() {
    for (file, key, value) in [
        ("config.json", "rms_norm_eps", serde_json::json!(-1.0)),
        ("config.json", "rope_theta", serde_json::json!(0.0)),
        ("llm1/config.json", "rms_norm_eps", serde_json::json!(0.0)),
        (
            "llm1/config.json",
            "rope_theta",
            serde_json::json!(-10000.0),
        ),
        (
            "config.json",
            "max_position_embeddings",
            serde_json::json!(1u64 << 40),
        ),
        (
            "config.json",
            "latent_token_len",
            serde_json::json!(1 << 20),
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let m = model_with(tmp.path(), file, |v| v[key] = value.clone());
        let o = c3(
            &tmp.path().join("s"),
            &[
                "--model",
                m.to_str().unwrap(),
                "repeat",
                "--text",
                golden_text().to_str().unwrap(),
                "--max-new-tokens",
                "4",
            ],
        );
        let e = stderr(&o);
        assert!(!o.status.success(), "{file} {key}={value}: exit 0\n{e}");
        assert!(e.contains(file) && e.contains(key), "{file} {key}: {e}");
    }
}

// Issue 21, point 8: the CLI took `--temperature NaN|inf` and `--top-p
// 5|0|NaN`, which the server refuses. Before the fix each ran (exit 0).
#[test]
fn out_of_range_sampling_flags_are_refused_before_the_model_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let m = golden_model();
    let t = golden_text();
    for (flags, named) in [
        (&["--temperature", "NaN"][..], "--temperature"),
        (&["--temperature", "inf"], "--temperature"),
        (&["--temperature=-1"], "--temperature"),
        (&["--temperature", "0.7", "--top-p", "5"], "--top-p"),
        (&["--temperature", "0.7", "--top-p", "0"], "--top-p"),
        (&["--temperature", "0.7", "--top-p", "NaN"], "--top-p"),
        (&["--max-new-tokens", "0"], "--max-new-tokens"),
    ] {
        let mut args = vec![
            "--model",
            m.to_str().unwrap(),
            "repeat",
            "--text",
            t.to_str().unwrap(),
        ];
        if !flags.contains(&"--max-new-tokens") {
            args.extend(["--max-new-tokens", "4"]);
        }
        args.extend(flags);
        let o = c3(tmp.path(), &args);
        let e = stderr(&o);
        assert!(!o.status.success(), "{flags:?} was accepted");
        assert!(e.contains(named), "{flags:?}: {e}");
    }
}

/// Ingests the golden English text with model `m` into `store`.
fn ingest(store: &Path, m: &Path) {
    let o = c3(
        store,
        &[
            "--model",
            m.to_str().unwrap(),
            "ingest",
            golden_text().to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Runs c3, killing it after `limit` (a generation that never ends).
fn c3_within(store: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("C3_MODEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("c3 {args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

// Issue 21, point 7: `c3 expand --max-new-tokens 40000` silently generated
// to the position limit (32768 positions for the tiny model). Before the fix
// it was still generating when the limit below killed it.
#[test]
fn expand_refuses_more_new_tokens_than_the_positions_and_says_when_it_hit_them() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("s");
    let m = golden_model();
    ingest(&store, &m);
    let o = c3_within(
        &store,
        &[
            "--model",
            m.to_str().unwrap(),
            "expand",
            "0",
            "--chunk",
            "0",
            "--max-new-tokens",
            "40000",
        ],
        Duration::from_secs(120),
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("no room for 40000 new tokens") && e.contains("32768"),
        "{e}"
    );

    // ask --json names why its answer ended.
    let o = c3(
        &store,
        &[
            "--model",
            m.to_str().unwrap(),
            "ask",
            "What?",
            "--max-new-tokens",
            "3",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        ["end", "max_new_tokens"].contains(&v["stop"].as_str().unwrap()),
        "{v}"
    );

    // A model with 80 positions (the same weights, so the same store):
    // asking for exactly the room the 64-position prompt leaves runs to the
    // limit, and says so.
    let small = model_with(tmp.path(), "config.json", |v| {
        v["max_position_embeddings"] = 80.into()
    });
    let sm = small.to_str().unwrap();
    let o = c3(
        &store,
        &[
            "--model",
            sm,
            "expand",
            "0",
            "--chunk",
            "0",
            "--max-new-tokens",
            "80",
        ],
    );
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    let prompt: usize = e
        .split("the prompt takes ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no prompt length in {e}"));
    let room = (80 - prompt).to_string();
    let o = c3(
        &store,
        &[
            "--model",
            sm,
            "expand",
            "0",
            "--chunk",
            "0",
            "--max-new-tokens",
            &room,
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The tiny model's reconstruction runs 40 tokens without an end id
    // (tests/fixtures/golden/expected).
    assert_eq!(v[0]["stop"], "position_limit", "{v}");
    assert!(
        stderr(&o).contains("stopped at the model's position limit"),
        "{}",
        stderr(&o)
    );
}
