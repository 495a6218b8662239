//! The documentation stays true: its commands run and its links resolve.
//!
//! `commands_run` reads README.md and every `docs/*.md`, takes the commands
//! that invoke c3 from their ```sh / ```bash / ```shell / ```console blocks
//! (a line starting `c3 ` or `cargo run --release -- `, after optional
//! `NAME=value` assignments; in a console block only `$ ` lines), and runs
//! them with the built binary, in order, one working directory per page.
//!
//! The working directory holds a link `tests` to the repository's `tests/`,
//! so the fixtures are found by the paths the pages use, and everything a
//! command writes (stores, exports, `.npy` files) stays in it. The
//! environment: `C3_MODEL` = the tiny C3 model, `C3_STORE` = a store of the
//! page's own, `HF_HUB_OFFLINE=1` and `HF_HOME` inside the directory (no
//! network, no user cache); an `export NAME=value ...` line in a block sets
//! variables for the page's later commands. An absolute path outside the
//! repository (`/tmp/c3-demo`) is moved into the directory, and `--model` /
//! `--store` values that are placeholders (`DIR`, `M`) become the tiny model
//! and the page's store.
//!
//! A command is skipped, with its reason printed and never counted as run,
//! when (the first rule that applies):
//! 1. it uses shell syntax this test does not interpret (pipes, redirection,
//!    `$`, globs, `;`, `&`, the brackets of a synopsis);
//! 2. it is `pull` (network), `serve` or `mcp` (run until stopped) or `tui`
//!    (interactive), or has no subcommand;
//! 3. it passes `--download`, or asks for CUDA (`--device cuda`,
//!    `C3_DEVICE=cuda`);
//! 4. its model (`--model`, else `C3_MODEL`) or `--answer-model` names a hub
//!    repo id (`org/name`) that is not a path here (real weights), or its
//!    answer model does not exist here;
//! 5. it has another placeholder (an all-capitals word such as `DOC`, `FILE`,
//!    `I/N`);
//! 6. it reads standard input (`-`, or `tokenize` / `encode` / `repeat`
//!    without `--text`);
//! 7. an input it names (ingest's, sync's and merge's paths, import's file, `--text`,
//!    `--texts`) does not exist when it would run (neither under `tests/` nor
//!    made by an earlier command of the page).
//!
//! Every other command must exit 0 within [`TIMEOUT`]; a failure names the
//! page, line, command and the end of its stderr. A generating command
//! (`repeat`, `ask`, `expand`, `eval`) that does not set `--max-new-tokens`
//! gets [`MAX_NEW_TOKENS`], so the tiny models' random output stays short.
//!
//! `links_resolve` checks every relative link of README.md, ARCHITECTURE.md
//! and `docs/*.md`: the file must exist and an anchor (`#...`) into a
//! markdown file must be one of its headings' GitHub slugs.

#![cfg(unix)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest one documented command may take with the tiny models.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Commands that generate text, and the most tokens they are given here
/// when the page does not say (the tiny models' output is random, so it runs
/// to the limit: 4096 tokens took ~50 s).
const GENERATING: &[&str] = &["repeat", "ask", "expand", "eval"];
const MAX_NEW_TOKENS: usize = 64;

/// Options (of any subcommand) that take a value.
const VALUE_OPTS: &[&str] = &[
    "--model",
    "--store",
    "--dtype",
    "--decoder-quant",
    "--encoder-precision",
    "--device",
    "--name",
    "--chunk-tokens",
    "--batch",
    "--shard",
    "--section-bytes",
    "--out",
    "--text",
    "--texts",
    "--doc",
    "--top-k",
    "--mode",
    "--answer-model",
    "--max-new-tokens",
    "--temperature",
    "--top-p",
    "--sample-top-k",
    "--seed",
    "--repetition-penalty",
    "--chunk",
    "--sample",
    "--addr",
    "--api-key-file",
    "--queue",
    "--max-body",
    "--cors-origin",
    "--timeout",
    "--keep-alive",
    "--kv-cache",
    "--kv-cache-size",
    "--kv-cache-dtype",
    "--kv-cache-memory",
    "--from-export",
    "--where",
    "--meta",
    "--allow-path",
    "--http",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn c3_tiny() -> PathBuf {
    root().join("tests/fixtures/golden/c3-tiny")
}

/// README.md, then `docs/*.md` in name order.
fn pages() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "md"))
                .collect()
        })
        .unwrap_or_default();
    docs.sort();
    let mut all = vec![root().join("README.md")];
    all.extend(docs);
    all
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// One shell line of a page's code block.
struct Line {
    /// 1-based line number of its first line in the page.
    number: usize,
    text: String,
}

/// The shell lines of the page's sh / bash / shell / console blocks, with
/// `\` continuations joined and console prompts removed.
fn shell_lines(md: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut fence: Option<(String, bool)> = None; // (marker, runnable)
    let mut pending: Option<Line> = None;
    let mut console = false;
    for (i, raw) in md.lines().enumerate() {
        let trimmed = raw.trim_start();
        if let Some((marker, _)) = &fence {
            if trimmed.trim_end() == marker.as_str() {
                fence = None;
                pending = None;
                continue;
            }
        } else {
            if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
                let marker: String = trimmed
                    .chars()
                    .take_while(|&c| c == '`' || c == '~')
                    .collect();
                let lang = trimmed[marker.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                console = lang == "console";
                let runnable = matches!(lang, "sh" | "bash" | "shell" | "console");
                fence = Some((marker, runnable));
            }
            continue;
        }
        if !fence.as_ref().is_some_and(|f| f.1) {
            continue;
        }
        let text = raw.trim();
        let (number, text) = match pending.take() {
            Some(p) => (p.number, format!("{} {text}", p.text)),
            None if console => match text.strip_prefix("$ ") {
                Some(t) => (i + 1, t.to_string()),
                None => continue,
            },
            None => (i + 1, text.to_string()),
        };
        finish(&mut out, &mut pending, number, text);
    }
    out
}

fn finish(out: &mut Vec<Line>, pending: &mut Option<Line>, number: usize, text: String) {
    match text.strip_suffix('\\') {
        Some(head) => {
            *pending = Some(Line {
                number,
                text: head.trim_end().to_string(),
            })
        }
        None => out.push(Line { number, text }),
    }
}

/// Splits a shell line into words (quotes and backslashes as sh reads them,
/// a `#` word ends the line), or names the shell syntax it does not take.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("an unclosed quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("an unclosed quote".into()),
                        },
                        Some(c @ ('$' | '`')) => return Err(format!("shell syntax `{c}`")),
                        Some(c) => cur.push(c),
                        None => return Err("an unclosed quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '`' | '$' | '*' | '?' | '[' | ']' => {
                return Err(format!("shell syntax `{c}`"));
            }
            '~' if !in_word => return Err("shell syntax `~`".into()),
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `NAME=value`, split.
fn assignment(w: &str) -> Option<(String, String)> {
    let (name, value) = w.split_once('=')?;
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    ok.then(|| (name.to_string(), value.to_string()))
}

/// What a shell line is to this test.
enum Parsed {
    /// Not a c3 command.
    Other,
    /// `export NAME=value ...`.
    Export(Vec<(String, String)>),
    /// A c3 command: its own environment and its arguments.
    C3 {
        env: Vec<(String, String)>,
        args: Vec<String>,
    },
    /// A c3 command in a form this test does not run.
    Unreadable(String),
}

fn parse(text: &str) -> Parsed {
    // Decide from the words before lexing: lines that are not c3 commands
    // may use any shell syntax.
    let head: Vec<&str> = text.split_whitespace().collect();
    let lead = head.iter().take_while(|w| assignment(w).is_some()).count();
    let rest = &head[lead..];
    let is_c3 =
        rest.first() == Some(&"c3") || rest.starts_with(&["cargo", "run", "--release", "--"]);
    let is_export = lead == 0 && rest.first() == Some(&"export");
    if !is_c3 && !is_export {
        return Parsed::Other;
    }
    let w = match words(text) {
        Ok(w) => w,
        Err(e) => return Parsed::Unreadable(e),
    };
    if is_export {
        let vars: Option<Vec<_>> = w[1..].iter().map(|w| assignment(w)).collect();
        return vars.map_or(Parsed::Other, Parsed::Export);
    }
    let lead = w.iter().take_while(|w| assignment(w).is_some()).count();
    let env = w[..lead].iter().filter_map(|w| assignment(w)).collect();
    let args = if w.get(lead).is_some_and(|x| x == "c3") {
        w[lead + 1..].to_vec()
    } else if w.len() >= lead + 4 && w[lead..lead + 4] == ["cargo", "run", "--release", "--"] {
        w[lead + 4..].to_vec()
    } else {
        return Parsed::Unreadable("quoted words before the command".into());
    };
    Parsed::C3 { env, args }
}

/// `org/name` or `org/name@rev`.
fn is_repo_id(s: &str) -> bool {
    let s = s.split('@').next().unwrap_or("");
    let part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    match s.split_once('/') {
        Some((org, name)) => part(org) && part(name) && !org.starts_with(['.', '-']),
        None => false,
    }
}

/// `DIR`, `FILE.npy`, `I/N`, `ID...`: an all-capitals word of a synopsis.
fn is_placeholder(s: &str) -> bool {
    let base = s.trim_end_matches("...");
    let base = base.split('.').next().unwrap_or(base);
    base.chars().any(|c| c.is_ascii_uppercase())
        && base
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '_' | '/' | '|'))
}

/// A page's working directory and environment.
struct Workdir {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl Workdir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(root().join("tests"), dir.path().join("tests")).unwrap();
        let mut env = BTreeMap::new();
        env.insert("C3_MODEL".into(), c3_tiny().display().to_string());
        let store = dir.path().join("store");
        env.insert("C3_STORE".into(), store.display().to_string());
        env.insert("HF_HUB_OFFLINE".into(), "1".into());
        env.insert(
            "HF_HOME".into(),
            dir.path().join("hf").display().to_string(),
        );
        Workdir { dir, env }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An absolute path outside the repository, moved into the directory.
    fn rebase(&self, s: &str) -> String {
        let p = Path::new(s);
        if !p.is_absolute() || p.starts_with(root()) {
            return s.to_string();
        }
        let moved = self.path().join(p.strip_prefix("/").unwrap());
        if let Some(parent) = moved.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        moved.display().to_string()
    }

    fn exists(&self, s: &str) -> bool {
        self.path().join(s).exists()
    }
}

/// What to do with one c3 command.
enum Plan {
    Skip(String),
    Run {
        args: Vec<String>,
        env: Vec<(String, String)>,
        notes: Vec<String>,
    },
}

fn plan(wd: &Workdir, env: Vec<(String, String)>, args: Vec<String>) -> Plan {
    let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k, wd.rebase(&v))).collect();
    // The subcommand: the first word that is neither an option nor the
    // value of one.
    let mut sub = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if VALUE_OPTS.contains(&a.as_str()) {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            sub = Some(a.as_str());
            break;
        }
        i += 1;
    }
    match sub {
        None => return Plan::Skip("no subcommand".into()),
        Some("pull") => return Plan::Skip("`pull` downloads from the hub (network)".into()),
        Some("serve") => return Plan::Skip("`serve` runs until it is stopped".into()),
        Some("mcp") => return Plan::Skip("`mcp` serves its client until it is stopped".into()),
        Some("tui") => return Plan::Skip("`tui` is interactive".into()),
        _ => {}
    }
    let sub = sub.unwrap().to_string();
    if args.iter().any(|a| a == "--download") {
        return Plan::Skip("`--download` may use the network".into());
    }
    let value = |opt: &str| {
        args.iter()
            .position(|a| a == opt)
            .and_then(|i| args.get(i + 1))
    };
    let from_env = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| wd.env.get(name).cloned())
    };
    if value("--device").is_some_and(|v| v == "cuda")
        || from_env("C3_DEVICE").is_some_and(|v| v == "cuda")
    {
        return Plan::Skip("needs a GPU (CUDA)".into());
    }
    if value("--model").is_none() {
        if let Some(m) = from_env("C3_MODEL").filter(|m| !wd.exists(m) && is_repo_id(m)) {
            return Plan::Skip(format!(
                "C3_MODEL names the hub repo id `{m}` (real weights)"
            ));
        }
    }
    let mut notes = Vec::new();
    let mut out: Vec<String> = Vec::with_capacity(args.len() + 2);
    let mut it = args.iter();
    // Positional words after the subcommand, and the inputs named: (as
    // written, as run).
    let mut positionals: Vec<(String, String)> = Vec::new();
    let mut inputs: Vec<(String, String)> = Vec::new();
    let mut after_sub = false;
    while let Some(a) = it.next() {
        if VALUE_OPTS.contains(&a.as_str()) {
            let Some(given) = it.next() else {
                return Plan::Skip(format!("`{a}` without its value"));
            };
            let v = wd.rebase(given);
            let v = match a.as_str() {
                "--model" | "--answer-model" if wd.exists(&v) => v,
                "--model" | "--answer-model" if is_repo_id(given) => {
                    return Plan::Skip(format!("names the hub repo id `{given}` (real weights)"))
                }
                "--answer-model" => {
                    return Plan::Skip(format!("answer model `{given}` does not exist here"))
                }
                "--model" => {
                    notes.push(format!("--model {given} -> the tiny C3 model"));
                    c3_tiny().display().to_string()
                }
                "--store" if is_placeholder(given) => {
                    notes.push(format!("--store {given} -> the page's store"));
                    wd.env["C3_STORE"].clone()
                }
                _ if is_placeholder(given) => return Plan::Skip(format!("placeholder `{given}`")),
                "--text" | "--texts" => {
                    inputs.push((given.clone(), v.clone()));
                    v
                }
                _ => v,
            };
            out.push(a.clone());
            out.push(v);
            continue;
        }
        if is_placeholder(a) {
            return Plan::Skip(format!("placeholder `{a}`"));
        }
        if a.starts_with('-') && a != "-" {
            out.push(a.clone());
            continue;
        }
        if after_sub {
            positionals.push((a.clone(), wd.rebase(a)));
        } else if a == &sub {
            after_sub = true;
        }
        out.push(wd.rebase(a));
    }
    let reads_stdin = positionals.iter().chain(&inputs).any(|(p, _)| p == "-")
        || (matches!(sub.as_str(), "tokenize" | "encode" | "repeat") && value("--text").is_none());
    if reads_stdin {
        return Plan::Skip("reads standard input".into());
    }
    if matches!(sub.as_str(), "ingest" | "sync" | "merge" | "import") {
        inputs.extend(positionals);
    }
    if let Some((given, _)) = inputs.iter().find(|(_, p)| !wd.exists(p)) {
        return Plan::Skip(format!("input `{given}` does not exist here"));
    }
    // The tiny models' output is random and runs to the limit: keep the
    // generating commands short.
    if GENERATING.contains(&sub.as_str()) && value("--max-new-tokens").is_none() {
        notes.push(format!("--max-new-tokens {MAX_NEW_TOKENS} added"));
        out.push("--max-new-tokens".into());
        out.push(MAX_NEW_TOKENS.to_string());
    }
    Plan::Run {
        args: out,
        env,
        notes,
    }
}

/// Runs the binary in the page's directory; the error holds the end of its
/// stderr.
fn run(wd: &Workdir, args: &[String], env: &[(String, String)]) -> Result<Duration, String> {
    let stdout = wd.path().join(".stdout");
    let stderr = wd.path().join(".stderr");
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_c3"))
        .args(args)
        .current_dir(wd.path())
        .envs(&wd.env)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .map_err(|e| format!("cannot start c3: {e}"))?;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let tail = || {
        let e = fs::read_to_string(&stderr).unwrap_or_default();
        let cut = e.len().saturating_sub(2000);
        let cut = (cut..e.len()).find(|&i| e.is_char_boundary(i)).unwrap_or(0);
        e[cut..].to_string()
    };
    match status {
        None => Err(format!(
            "timed out after {}s\n{}",
            TIMEOUT.as_secs(),
            tail()
        )),
        Some(s) if s.success() => Ok(took),
        Some(s) => Err(format!("{s}\n{}", tail())),
    }
}

#[test]
fn commands_run() {
    let mut ran = 0;
    let mut skipped = 0;
    let mut failures = Vec::new();
    let mut main_job_ran = false;
    for page in pages() {
        let md = fs::read_to_string(&page).unwrap();
        let mut wd = Workdir::new();
        let name = rel(&page);
        for line in shell_lines(&md) {
            let (env, args) = match parse(&line.text) {
                Parsed::Other => continue,
                Parsed::Export(vars) => {
                    for (k, v) in vars {
                        let v = wd.rebase(&v);
                        wd.env.insert(k, v);
                    }
                    continue;
                }
                Parsed::Unreadable(why) => {
                    println!("SKIP {name}:{}: {}\n     ({why})", line.number, line.text);
                    skipped += 1;
                    continue;
                }
                Parsed::C3 { env, args } => (env, args),
            };
            match plan(&wd, env, args) {
                Plan::Skip(why) => {
                    println!("SKIP {name}:{}: {}\n     ({why})", line.number, line.text);
                    skipped += 1;
                }
                Plan::Run { args, env, notes } => {
                    let shown = if notes.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", notes.join("; "))
                    };
                    match run(&wd, &args, &env) {
                        Ok(took) => {
                            println!(
                                "RAN  {name}:{}: {} ({:.1}s){shown}",
                                line.number,
                                line.text,
                                took.as_secs_f64()
                            );
                            ran += 1;
                            main_job_ran |= name == "README.md"
                                && line.text.starts_with("cargo run --release -- ")
                                && args.iter().any(|a| a == "ingest");
                        }
                        Err(e) => {
                            println!("FAIL {name}:{}: {}{shown}", line.number, line.text);
                            failures.push(format!(
                                "{name}:{}: `{}` failed: {e}",
                                line.number, line.text
                            ));
                        }
                    }
                }
            }
        }
    }
    println!(
        "{ran} commands ran, {skipped} skipped, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        main_job_ran,
        "README.md's main command (cargo run --release -- ... ingest) did not run"
    );
    assert!(
        ran >= 10,
        "only {ran} documented commands ran: is the skip rule too wide?"
    );
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// to hyphens (links keep their text).
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(i) = rest.find('[') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after
            .find("](")
            .and_then(|j| after[j..].find(')').map(|k| (j, j + k)))
        {
            Some((j, end)) => {
                text.push_str(&after[..j]);
                rest = &after[end + 1..];
            }
            None => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings (a repeated one gets `-1`,
/// `-2`, ... as on GitHub).
fn anchors(md: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    let mut fence = false;
    for line in md.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        let hashes = t.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !t[hashes..].starts_with(' ') {
            continue;
        }
        let s = slug(t[hashes..].trim().trim_end_matches('#').trim());
        let n = seen.entry(s.clone()).or_insert(0);
        out.push(if *n == 0 {
            s.clone()
        } else {
            format!("{s}-{n}")
        });
        *n += 1;
    }
    out
}

/// The link targets of a markdown file with their line numbers (inline and
/// reference links, outside code).
fn links(md: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence = false;
    for (i, line) in md.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        // Code spans hold no links.
        let mut text = String::new();
        for (k, part) in line.split('`').enumerate() {
            if k % 2 == 0 {
                text.push_str(part);
            }
        }
        if let Some(def) = text.trim_start().strip_prefix('[') {
            if let Some((_, target)) = def.split_once("]:") {
                if let Some(t) = target.split_whitespace().next() {
                    out.push((i + 1, t.to_string()));
                }
                continue;
            }
        }
        let mut rest = text.as_str();
        while let Some(j) = rest.find("](") {
            let after = &rest[j + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            let target = target.trim_start_matches('<').trim_end_matches('>');
            out.push((i + 1, target.to_string()));
            rest = &after[end + 1..];
        }
    }
    out
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn links_resolve() {
    let mut files = pages();
    let arch = root().join("ARCHITECTURE.md");
    if arch.is_file() {
        files.insert(1, arch);
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in &files {
        let md = fs::read_to_string(file).unwrap();
        let name = rel(file);
        for (line, target) in links(&md) {
            if target.is_empty()
                || target.starts_with("//")
                || target
                    .split_once(':')
                    .is_some_and(|(scheme, _)| !scheme.contains('/') && !scheme.contains('#'))
            {
                continue; // absolute URLs (http:, https:, mailto:)
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                normalize(&file.parent().unwrap().join(path))
            };
            let shown = rel(&dest);
            if !dest.exists() {
                failures.push(format!("{name}:{line}: {target}: {shown} does not exist"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if dest.extension().is_some_and(|e| e == "md") {
                let heads = anchors(&fs::read_to_string(&dest).unwrap());
                if !heads.iter().any(|h| h == anchor) {
                    failures.push(format!(
                        "{name}:{line}: {target}: {shown} has no heading with anchor #{anchor}"
                    ));
                }
            }
        }
    }
    println!(
        "{checked} relative links checked, {} broken",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 0, "no relative links found");
}

/// Repository paths the pages name in code spans (`src/...`, `tests/...`,
/// `benches/...`, `migrations/...`, `tui/...`, `deploy/...`), as the docs
/// point readers at files that move.
fn code_paths(md: &str) -> Vec<(usize, String)> {
    const ROOTS: &[&str] = &[
        "src/",
        "tests/",
        "benches/",
        "migrations/",
        "tui/",
        "deploy/",
    ];
    let mut out = Vec::new();
    for (i, line) in md.lines().enumerate() {
        for (k, span) in line.split('`').enumerate() {
            // Odd pieces are inside backticks.
            if k % 2 == 0 || span.contains(' ') || span.contains('*') || span.contains('{') {
                continue;
            }
            let path = span.split("::").next().unwrap_or(span);
            let path = path.split(':').next().unwrap_or(path);
            if ROOTS.iter().any(|r| path.starts_with(r)) && !path.contains('<') {
                out.push((i + 1, path.to_string()));
            }
        }
    }
    out
}

#[test]
fn named_source_paths_exist() {
    let mut files = pages();
    let arch = root().join("ARCHITECTURE.md");
    if arch.is_file() {
        files.push(arch);
    }
    let mut missing = Vec::new();
    let mut checked = 0;
    for file in &files {
        let md = fs::read_to_string(file).unwrap();
        for (line, path) in code_paths(&md) {
            checked += 1;
            if !root().join(&path).exists() {
                missing.push(format!("{}:{line}: `{path}` does not exist", rel(file)));
            }
        }
    }
    println!(
        "{checked} repository paths checked, {} missing",
        missing.len()
    );
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
