//! `--model org/name` and `c3 pull` against a stand-in hub on 127.0.0.1
//! (HF_ENDPOINT points at it): download with checksums, resume after a
//! dropped connection, offline use of the cache, corrupt files, missing
//! repositories / revisions / files, and the Python `huggingface_hub` cache
//! layout both ways.
mod common;
mod hub_support;

use common::*;
use hub_support::{Hub, Repo};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const REPO: &str = "test-org/c3-tiny";

struct Env {
    _tmp: tempfile::TempDir,
    cache: PathBuf,
    home: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("hf");
        Env {
            cache: home.join("hub"),
            home,
            _tmp: tmp,
        }
    }

    /// `c3 ARGS` with the hub variables pointing at `endpoint` and this
    /// test's own cache (never the user's, never the network).
    fn c3(&self, endpoint: &str, offline: bool, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_c3"));
        cmd.args(args)
            .env_remove("C3_MODEL")
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_TOKEN")
            .env("HF_HOME", &self.home)
            .env("HF_ENDPOINT", endpoint)
            .stdin(Stdio::null());
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        } else {
            cmd.env_remove("HF_HUB_OFFLINE");
        }
        cmd.output().unwrap()
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!e.contains("panicked"), "{e}");
    e
}

fn tiny_repo() -> Repo {
    Repo::from_dir(REPO, &golden_model())
}

/// A port nothing listens on: any network use would fail.
fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    format!("http://{a}")
}

fn pull_json(env: &Env, endpoint: &str, offline: bool) -> serde_json::Value {
    let out = env.c3(endpoint, offline, &["pull", REPO, "--json"]);
    serde_json::from_str(&ok(&out)).unwrap()
}

fn statuses(report: &serde_json::Value) -> Vec<(String, String)> {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn blob_of(snapshot: &Path, rel: &str) -> PathBuf {
    let link = snapshot.join(rel);
    link.parent()
        .unwrap()
        .join(std::fs::read_link(&link).unwrap())
}

/// Requests for the root `model.safetensors` among `log`.
fn root_weight_requests(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|r| {
            r.contains("/resolve/") && r.contains("/model.safetensors") && !r.contains("llm1/")
        })
        .cloned()
        .collect()
}

/// The snapshot's `path` holds the source's bytes.
fn assert_pulled_intact(report: &serde_json::Value, path: &str) {
    let snap = PathBuf::from(report["snapshot"].as_str().unwrap());
    let repo = tiny_repo();
    let want = repo.files.iter().find(|f| f.path == path).unwrap();
    assert_eq!(
        std::fs::read(snap.join(path)).unwrap(),
        *want.data,
        "{path}"
    );
}

#[test]
fn pull_verifies_then_the_cache_serves_offline() {
    let hub = Hub::start(vec![tiny_repo()]);
    let env = Env::new();
    let report = pull_json(&env, &hub.endpoint, false);
    let files = statuses(&report);
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "config.json",
            "generation_config.json",
            "llm1/config.json",
            "llm1/model.safetensors",
            "model.safetensors",
            "qwen.tiktoken"
        ],
        "only what c3 reads (no README)"
    );
    assert!(files.iter().all(|(_, s)| s == "downloaded"), "{files:?}");
    assert_eq!(report["layout"], "c3");
    // The standard layout: refs/main → commit, snapshot links → blobs named
    // by their checksums, with the same bytes as the source.
    let repo = tiny_repo();
    let root = env.cache.join("models--test-org--c3-tiny");
    let commit = std::fs::read_to_string(root.join("refs/main")).unwrap();
    assert_eq!(commit.trim(), repo.commit);
    assert_eq!(report["commit"], repo.commit);
    assert!(!root.join("refs").join(&repo.commit).exists());
    let snap = root.join("snapshots").join(&repo.commit);
    for f in repo.files.iter().filter(|f| f.path != "README.md") {
        let blob = blob_of(&snap, &f.path);
        assert_eq!(
            blob.file_name().unwrap().to_str().unwrap(),
            f.etag(),
            "{}",
            f.path
        );
        assert_eq!(std::fs::read(&blob).unwrap(), *f.data, "{}", f.path);
    }
    assert!(!hub.requests().iter().any(|r| r.contains("README")));

    // A second pull downloads nothing.
    let before = hub.requests().len();
    let again = pull_json(&env, &hub.endpoint, false);
    assert!(statuses(&again).iter().all(|(_, s)| s == "cached"));
    let new: Vec<String> = hub.requests()[before..].to_vec();
    assert!(new.iter().all(|r| r.contains("/api/models/")), "{new:?}");

    // Offline, with no hub at all: the repo id works as --model, and gives
    // what the directory gives.
    drop(hub);
    let dead = dead_endpoint();
    let text = fixtures().join("golden/texts/english.txt");
    let text = text.to_str().unwrap();
    let by_id = ok(&env.c3(&dead, true, &["--model", REPO, "tokenize", "--text", text]));
    let dir = golden_model();
    let by_dir = ok(&env.c3(
        &dead,
        true,
        &["--model", dir.to_str().unwrap(), "tokenize", "--text", text],
    ));
    assert_eq!(by_id, by_dir);
    // And without HF_HUB_OFFLINE too: a cached snapshot needs no network.
    let store = env.home.join("store");
    ok(&env.c3(
        &dead,
        false,
        &[
            "--model",
            REPO,
            "--store",
            store.to_str().unwrap(),
            "ingest",
            text,
        ],
    ));
    let rep = pull_json(&env, &dead, true);
    assert_eq!(rep["offline"], true);
    assert_eq!(statuses(&rep).len(), 6);
}

#[test]
fn a_dropped_connection_resumes_where_it_stopped() {
    let hub = Hub::start(vec![tiny_repo()]);
    let cut = 1_000_000usize;
    hub.faults
        .lock()
        .unwrap()
        .drop_after
        .insert("model.safetensors".into(), (cut, 1));
    let env = Env::new();
    let out = env.c3(&hub.endpoint, false, &["pull", REPO, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming"), "{stderr}");
    // The second request for the file asked only for the rest.
    let gets = root_weight_requests(&hub.requests());
    assert!(
        gets.iter().any(|r| r.ends_with(&format!("bytes={cut}-"))),
        "{gets:?}"
    );
    assert_pulled_intact(&report, "model.safetensors");
}

#[test]
fn an_interrupted_pull_continues_in_the_next_one() {
    let hub = Hub::start(vec![tiny_repo()]);
    // More drops than one pull retries: the first pull gives up with part of
    // the file on disk, the next one asks only for the rest.
    let cut = 1_000_000usize;
    hub.faults
        .lock()
        .unwrap()
        .drop_after
        .insert("model.safetensors".into(), (cut, 5));
    let env = Env::new();
    let e = err(&env.c3(&hub.endpoint, false, &["pull", REPO]));
    assert!(
        e.contains("model.safetensors") && e.contains("gave up"),
        "{e}"
    );
    let before = hub.requests().len();
    let report = pull_json(&env, &hub.endpoint, false);
    let later = root_weight_requests(&hub.requests()[before..]);
    // The part file held 4 cut-off bodies (4 MB): the new process resumed
    // there (one more drop, then the rest).
    assert!(
        later
            .iter()
            .any(|r| r.ends_with(&format!("bytes={}-", 4 * cut))),
        "{later:?}"
    );
    assert!(!later.iter().any(|r| r.ends_with("bytes=0-")), "{later:?}");
    assert_pulled_intact(&report, "model.safetensors");
}

#[test]
fn corrupt_files_are_caught_in_the_cache_and_in_transit() {
    let hub = Hub::start(vec![tiny_repo()]);
    let env = Env::new();
    let report = pull_json(&env, &hub.endpoint, false);
    let snap = PathBuf::from(report["snapshot"].as_str().unwrap());

    // A flipped byte in a cached blob: offline verification names the file.
    let blob = blob_of(&snap, "llm1/model.safetensors");
    let mut data = std::fs::read(&blob).unwrap();
    data[1000] ^= 1;
    std::fs::write(&blob, &data).unwrap();
    let e = err(&env.c3(&hub.endpoint, true, &["pull", REPO]));
    assert!(
        e.contains("llm1/model.safetensors") && e.contains("corrupt"),
        "{e}"
    );
    // Online, that file alone is fetched again.
    let fixed = pull_json(&env, &hub.endpoint, false);
    for (p, s) in statuses(&fixed) {
        let want = if p == "llm1/model.safetensors" {
            "downloaded"
        } else {
            "cached"
        };
        assert_eq!(s, want, "{p}");
    }
    pull_json(&env, &hub.endpoint, true);

    // Wrong bytes from the server: refused, named, and not left in the cache.
    let env2 = Env::new();
    hub.faults
        .lock()
        .unwrap()
        .corrupt
        .insert("config.json".into());
    let e = err(&env2.c3(&hub.endpoint, false, &["pull", REPO]));
    assert!(e.contains("config.json") && e.contains("checksum"), "{e}");
    let snap2 = env2
        .cache
        .join("models--test-org--c3-tiny/snapshots")
        .join(tiny_repo().commit);
    assert!(!snap2.join("config.json").exists());
}

#[test]
fn missing_repos_revisions_and_files_are_named() {
    let mut no_encoder = Repo::from_dir("test-org/half", &golden_model());
    no_encoder
        .files
        .retain(|f| !f.path.starts_with("llm1/model"));
    let mut tagged = tiny_repo();
    tagged.refs.push("v1".into());
    let hub = Hub::start(vec![tagged, no_encoder]);
    let env = Env::new();

    let e = err(&env.c3(&hub.endpoint, false, &["pull", "test-org/nope"]));
    assert!(
        e.contains("test-org/nope") && e.contains("not found"),
        "{e}"
    );
    let e = err(&env.c3(&hub.endpoint, false, &["pull", &format!("{REPO}@v9")]));
    assert!(e.contains("revision v9 not found"), "{e}");
    let e = err(&env.c3(&hub.endpoint, false, &["pull", "test-org/half"]));
    assert!(
        e.contains("llm1/*.safetensors") && e.contains("test-org/half@main"),
        "{e}"
    );
    let e = err(&env.c3(&hub.endpoint, false, &["pull", "not a repo"]));
    assert!(e.contains("not a hub repository id"), "{e}");

    // Not cached, no --download: no network, and the way out is named.
    let before = hub.requests().len();
    let e = err(&env.c3(
        &hub.endpoint,
        false,
        &["--model", REPO, "tokenize", "--text", "-"],
    ));
    assert!(e.contains(&format!("c3 pull {REPO}@main")), "{e}");
    assert_eq!(
        hub.requests().len(),
        before,
        "nothing fetched without --download"
    );
    // HF_HUB_OFFLINE forbids even --download.
    let e = err(&env.c3(
        &hub.endpoint,
        true,
        &["--model", REPO, "--download", "tokenize", "--text", "-"],
    ));
    assert!(e.contains("HF_HUB_OFFLINE"), "{e}");
    assert_eq!(hub.requests().len(), before);

    // A tag resolves to its own ref; --download fetches on first use.
    let text = fixtures().join("golden/texts/code.txt");
    let out = env.c3(
        &hub.endpoint,
        false,
        &[
            "--model",
            &format!("{REPO}@v1"),
            "--download",
            "tokenize",
            "--text",
            text.to_str().unwrap(),
        ],
    );
    let ids: Vec<u32> = serde_json::from_str(&ok(&out)).unwrap();
    assert!(!ids.is_empty());
    assert!(env
        .cache
        .join("models--test-org--c3-tiny/refs/v1")
        .is_file());
}

/// The Python client's layout, both ways, where `huggingface_hub` is
/// installed (`.ci/run` installs it).
#[test]
fn python_huggingface_hub_and_c3_share_the_cache() {
    let py = Command::new("python3")
        .args([
            "-c",
            "import huggingface_hub; print(huggingface_hub.__version__)",
        ])
        .output();
    let Some(py) = py.ok().filter(|o| o.status.success()) else {
        eprintln!("SKIP python_huggingface_hub_and_c3_share_the_cache: python3 has no huggingface_hub (pip install huggingface_hub)");
        return;
    };
    eprintln!(
        "huggingface_hub {}",
        String::from_utf8_lossy(&py.stdout).trim()
    );
    let hub = Hub::start(vec![tiny_repo()]);
    let python = |env: &Env, offline: bool, code: &str| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", code])
            .env("HF_HOME", &env.home)
            .env("HF_ENDPOINT", &hub.endpoint)
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env("HF_HUB_DISABLE_XET", "1")
            .env_remove("HF_TOKEN");
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        }
        cmd.output().unwrap()
    };
    // Python downloads; c3 finds it offline.
    let env = Env::new();
    let out = python(
        &env,
        false,
        &format!(
            "from huggingface_hub import snapshot_download; print(snapshot_download('{REPO}', \
             allow_patterns=['*.json', '*.safetensors', '*.tiktoken']))"
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dead = dead_endpoint();
    let report = pull_json(&env, &dead, true);
    assert_eq!(statuses(&report).len(), 6, "{report}");
    let out = env.c3(
        &dead,
        true,
        &[
            "--model",
            REPO,
            "tokenize",
            "--text",
            fixtures()
                .join("golden/texts/english.txt")
                .to_str()
                .unwrap(),
        ],
    );
    ok(&out);

    // c3 downloads; Python finds it with local_files_only.
    let env = Env::new();
    pull_json(&env, &hub.endpoint, false);
    let out = python(
        &env,
        true,
        &format!(
            "from huggingface_hub import hf_hub_download; \
             print(hf_hub_download('{REPO}', 'llm1/model.safetensors', local_files_only=True))"
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(p.contains("snapshots"), "{p}");
}
