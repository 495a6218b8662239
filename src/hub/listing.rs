//! A repository's files at one revision, as the hub lists them
//! (`GET /api/models/{id}/revision/{rev}?blobs=true`), and the ones c3 needs.

use serde::Deserialize;

use super::checksum::Checksum;
use super::spec::RepoSpec;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct RemoteFile {
    /// Path inside the repository (`llm1/config.json`).
    pub path: String,
    pub size: Option<u64>,
    pub checksum: Option<Checksum>,
}

#[derive(Debug, Clone)]
pub struct Listing {
    /// The commit the revision points at.
    pub commit: String,
    pub files: Vec<RemoteFile>,
}

#[derive(Deserialize)]
struct RawInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<RawSibling>,
}

#[derive(Deserialize)]
struct RawSibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<RawLfs>,
}

#[derive(Deserialize)]
struct RawLfs {
    sha256: String,
    size: Option<u64>,
}

/// The listing of `spec` from the hub.
pub fn fetch(api: &hf_hub::api::sync::Api, endpoint: &str, spec: &RepoSpec) -> Result<Listing> {
    let req = api
        .repo(spec.hub_repo(&spec.revision))
        .info_request()
        .query("blobs", "true");
    let resp = req
        .call()
        .map_err(|e| request_error(endpoint, spec, None, &e))?;
    let body = resp.into_string().map_err(|e| {
        Error::Hub(format!(
            "{spec}: reading the file list from {endpoint}: {e}"
        ))
    })?;
    parse(spec, &body)
}

fn parse(spec: &RepoSpec, body: &str) -> Result<Listing> {
    let raw: RawInfo = serde_json::from_str(body)
        .map_err(|e| Error::Hub(format!("{spec}: the hub's file list is not valid: {e}")))?;
    let files = raw
        .siblings
        .into_iter()
        .map(|s| {
            let (size, checksum) = match (s.lfs, s.blob_id) {
                (Some(lfs), _) => (lfs.size.or(s.size), Some(Checksum::Sha256(lfs.sha256))),
                (None, Some(b)) => (s.size, Some(Checksum::GitSha1(b))),
                (None, None) => (s.size, None),
            };
            RemoteFile {
                path: s.rfilename,
                size,
                checksum,
            }
        })
        .collect();
    Ok(Listing {
        commit: raw.sha,
        files,
    })
}

/// A hub answer as an error naming the repository, revision and file.
pub(crate) fn request_error(
    endpoint: &str,
    spec: &RepoSpec,
    file: Option<&str>,
    e: &ureq::Error,
) -> Error {
    let what = match file {
        Some(f) => format!("{spec}: {f}"),
        None => spec.to_string(),
    };
    match e {
        ureq::Error::Status(code, resp) => {
            let hub_code = resp.header("x-error-code").unwrap_or("");
            let msg = match (hub_code, *code) {
                ("RepoNotFound", _) => format!(
                    "repository {} not found on {endpoint} (a private or gated repository \
                     needs HF_TOKEN)",
                    spec.id
                ),
                ("RevisionNotFound", _) => {
                    format!("revision {} not found in {}", spec.revision, spec.id)
                }
                ("EntryNotFound", _) | (_, 404) if file.is_some() => {
                    format!("file not found at revision {}", spec.revision)
                }
                (_, 404) => format!(
                    "repository {} or revision {} not found on {endpoint}",
                    spec.id, spec.revision
                ),
                (_, 401 | 403) => format!(
                    "access denied by {endpoint} (HTTP {code}): set HF_TOKEN for a private or \
                     gated repository"
                ),
                _ => format!("{endpoint} answered HTTP {code}"),
            };
            Error::Hub(format!("{what}: {msg}"))
        }
        ureq::Error::Transport(t) => Error::Hub(format!("{what}: cannot reach {endpoint}: {t}")),
    }
}

/// How a repository is laid out, from its file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `config.json` + `llm1/` (C3).
    C3,
    /// `model_config.json` + `encoder/`, `decoder/`, `adapter/` (LCLM).
    Lclm,
    /// A plain Qwen chat checkpoint (an answer model).
    Plain,
}

impl Layout {
    fn folders(self) -> &'static [&'static str] {
        match self {
            Layout::C3 => &["", "llm1"],
            Layout::Lclm => &["", "encoder", "decoder", "adapter"],
            Layout::Plain => &[""],
        }
    }
}

/// The files c3 reads: configs, safetensors (never pickles), tokenizers and
/// chat templates, in the layout's folders (not `checkpoint_*/` and the like).
pub fn select(spec: &RepoSpec, listing: &Listing) -> Result<(Layout, Vec<RemoteFile>)> {
    let has = |p: &str| listing.files.iter().any(|f| f.path == p);
    let layout = if has("model_config.json") {
        Layout::Lclm
    } else if has("config.json") && has("llm1/config.json") {
        Layout::C3
    } else if has("config.json") {
        Layout::Plain
    } else {
        return Err(Error::Hub(format!(
            "{spec} (commit {}) has neither config.json nor model_config.json: not a \
             checkpoint c3 reads",
            listing.commit
        )));
    };
    let wanted: Vec<RemoteFile> = listing
        .files
        .iter()
        .filter(|f| {
            let (folder, name) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
            layout.folders().contains(&folder)
                && (name.ends_with(".json")
                    || name.ends_with(".safetensors")
                    || name.ends_with(".tiktoken")
                    || name.ends_with(".jinja"))
        })
        .cloned()
        .collect();
    let got = |p: &str| wanted.iter().any(|f| f.path == p);
    let weights = |folder: &str| {
        let pre = if folder.is_empty() {
            String::new()
        } else {
            format!("{folder}/")
        };
        wanted.iter().any(|f| {
            f.path.strip_prefix(&pre).is_some_and(|n| !n.contains('/'))
                && f.path.ends_with(".safetensors")
        })
    };
    let mut missing: Vec<String> = Vec::new();
    let need = |missing: &mut Vec<String>, p: &str| {
        if !got(p) {
            missing.push(p.to_string());
        }
    };
    match layout {
        Layout::C3 => {
            need(&mut missing, "qwen.tiktoken");
            if !weights("") {
                missing.push("*.safetensors".into());
            }
            if !weights("llm1") {
                missing.push("llm1/*.safetensors".into());
            }
        }
        Layout::Lclm => {
            need(&mut missing, "adapter/adapter.safetensors");
            for f in ["encoder", "decoder"] {
                need(&mut missing, &format!("{f}/config.json"));
                need(&mut missing, &format!("{f}/tokenizer.json"));
                if !weights(f) {
                    missing.push(format!("{f}/*.safetensors"));
                }
            }
        }
        Layout::Plain => {
            if !got("tokenizer.json") && !got("qwen.tiktoken") {
                missing.push("tokenizer.json".into());
            }
            if !weights("") {
                missing.push("*.safetensors".into());
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::Hub(format!(
            "{spec} (commit {}) lacks {} that a {} checkpoint needs",
            listing.commit,
            missing.join(", "),
            match layout {
                Layout::C3 => "C3",
                Layout::Lclm => "LCLM",
                Layout::Plain => "Qwen answer-model",
            }
        )));
    }
    Ok((layout, wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(paths: &[&str]) -> Listing {
        let body = serde_json::json!({
            "sha": "c".repeat(40),
            "siblings": paths.iter().map(|p| serde_json::json!({"rfilename": p})).collect::<Vec<_>>(),
        });
        parse(&RepoSpec::parse("o/n").unwrap(), &body.to_string()).unwrap()
    }

    #[test]
    fn c3_files_without_pickles_or_readmes() {
        let l = listing(&[
            ".gitattributes",
            "README.md",
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "pytorch_model.bin",
            "qwen.tiktoken",
            "llm1/config.json",
            "llm1/model.safetensors",
            "llm1/pytorch_model.bin",
        ]);
        let (layout, files) = select(&RepoSpec::parse("o/n").unwrap(), &l).unwrap();
        assert_eq!(layout, Layout::C3);
        let names: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "config.json",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "model.safetensors.index.json",
                "qwen.tiktoken",
                "llm1/config.json",
                "llm1/model.safetensors"
            ]
        );
    }

    #[test]
    fn lclm_skips_training_checkpoints_and_names_what_is_missing() {
        let l = listing(&[
            "model_config.json",
            "adapter/adapter.safetensors",
            "encoder/config.json",
            "encoder/tokenizer.json",
            "encoder/model.safetensors",
            "decoder/config.json",
            "decoder/model.safetensors",
            "checkpoint_100/model.safetensors",
        ]);
        let err = select(&RepoSpec::parse("o/n").unwrap(), &l)
            .unwrap_err()
            .to_string();
        assert!(err.contains("decoder/tokenizer.json"), "{err}");
        assert!(err.contains("o/n@main"), "{err}");
    }

    #[test]
    fn not_a_checkpoint() {
        let err = select(&RepoSpec::parse("o/n").unwrap(), &listing(&["README.md"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither config.json"), "{err}");
    }
}
