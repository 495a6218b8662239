//! `c3 pull`: the files of a checkpoint into the cache, each checked against
//! the hub's checksum, resuming a partial download.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::cache::{self, repo_dir};
use super::env::HubEnv;
use super::listing::{self, Layout, RemoteFile};
use super::spec::RepoSpec;
use crate::{Error, Result};

/// Attempts per file: a connection dropped mid-file is resumed from the bytes
/// already on disk (hf-hub's `.part` file), not started again.
const ATTEMPTS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// Already in the cache, checksum verified.
    Cached,
    /// Fetched now, checksum verified.
    Downloaded,
}

#[derive(Debug, Clone, Serialize)]
pub struct PulledFile {
    pub path: String,
    pub bytes: u64,
    pub status: FileStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    pub repo: String,
    pub revision: String,
    pub commit: String,
    /// `None` offline: the layout is only known from the hub's listing.
    pub layout: Option<Layout>,
    pub snapshot: PathBuf,
    pub offline: bool,
    pub files: Vec<PulledFile>,
}

/// Fetches what c3 needs of `spec` (or, with `HF_HUB_OFFLINE`, verifies the
/// cached snapshot without any network). `progress` draws a bar per file.
pub fn pull(env: &HubEnv, spec: &RepoSpec, progress: bool) -> Result<PullReport> {
    if env.offline {
        return verify_offline(env, spec);
    }
    let api = ApiBuilder::from_cache(hf_hub::Cache::new(env.cache.clone()))
        .with_endpoint(env.endpoint.clone())
        .with_token(env.token.clone())
        .with_progress(false)
        .with_retries(0)
        .build()
        .map_err(|e| Error::Hub(format!("{spec}: {e}")))?;
    let listing = listing::fetch(&api, &env.endpoint, spec)?;
    let (layout, wanted) = listing::select(spec, &listing)?;
    let snapshot = repo_dir(env, spec).join("snapshots").join(&listing.commit);
    let mut files = Vec::new();
    for (i, f) in wanted.iter().enumerate() {
        let local = snapshot.join(&f.path);
        if local.exists() {
            match check(&local, f) {
                Ok(bytes) => {
                    files.push(PulledFile {
                        path: f.path.clone(),
                        bytes,
                        status: FileStatus::Cached,
                    });
                    continue;
                }
                Err(why) => {
                    crate::note!("c3: {spec}: cached {} {why}: downloading it again", f.path);
                    remove_cached(&local)?;
                }
            }
        }
        let tag = format!("[{}/{}] {}", i + 1, wanted.len(), f.path);
        let bytes = download(&api, env, spec, &listing.commit, f, progress, &tag)?;
        files.push(PulledFile {
            path: f.path.clone(),
            bytes,
            status: FileStatus::Downloaded,
        });
    }
    point_ref(env, spec, &listing.commit)?;
    Ok(PullReport {
        repo: spec.id.clone(),
        revision: spec.revision.clone(),
        commit: listing.commit,
        layout: Some(layout),
        snapshot,
        offline: false,
        files,
    })
}

/// One file into the cache at `commit`, verified; a short (dropped) download
/// is resumed, a full one with the wrong content is removed and reported.
fn download(
    api: &Api,
    env: &HubEnv,
    spec: &RepoSpec,
    commit: &str,
    f: &RemoteFile,
    progress: bool,
    tag: &str,
) -> Result<u64> {
    // Pinned to the listed commit, so every file comes from one revision.
    let repo = api.repo(spec.hub_repo(commit));
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let bar = Bar::new(progress, tag);
        let got = repo.download_with_progress(&f.path, bar);
        let path = match got {
            Ok(p) => p,
            Err(e) => {
                // A connection that broke mid-file leaves hf-hub's `.part`
                // file behind: the next attempt resumes from it.
                let transient = is_transient(&e);
                let err = api_error(env, spec, &f.path, e);
                if !transient {
                    return Err(err);
                }
                last = err.to_string();
                if attempt < ATTEMPTS {
                    crate::note!("c3: {err}; resuming");
                    continue;
                }
                break;
            }
        };
        match check(&path, f) {
            Ok(bytes) => {
                if progress {
                    crate::note!("c3: {tag}: {} downloaded", indicatif::HumanBytes(bytes));
                }
                return Ok(bytes);
            }
            Err(why) => {
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let blob = cache::blob_of(&path);
                if attempt < ATTEMPTS && f.size.is_some_and(|s| len < s) {
                    // The body ended early: what arrived becomes the part
                    // file again and the rest is asked for with a Range.
                    if let Some(b) = &blob {
                        let part = b.with_extension("part");
                        std::fs::rename(b, &part).map_err(|e| io_err(b, e))?;
                        std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
                        crate::note!(
                            "c3: {spec}: {}: connection ended at {len} of {} bytes; resuming",
                            f.path,
                            f.size.unwrap_or(0)
                        );
                        last = why;
                        continue;
                    }
                }
                remove_cached(&path)?;
                return Err(Error::Hub(format!(
                    "{spec}: {}: the downloaded file {why}; it was removed from the cache \
                     (run `c3 pull {}` again)",
                    f.path, spec
                )));
            }
        }
    }
    Err(Error::Hub(format!(
        "{spec}: {}: gave up after {ATTEMPTS} attempts (the bytes received are kept: `c3 pull \
         {spec}` resumes from them): {last}",
        f.path
    )))
}

/// A broken connection or a body cut short (worth resuming), not an answer
/// of the hub's such as 404.
fn is_transient(e: &ApiError) -> bool {
    match e {
        ApiError::IoError(_) => true,
        ApiError::RequestError(e) => matches!(**e, ureq::Error::Transport(_)),
        ApiError::TooManyRetries(e) => is_transient(e),
        _ => false,
    }
}

/// Size and checksum of a cached file against the listing; the file's size
/// in bytes when both hold.
fn check(path: &Path, f: &RemoteFile) -> std::result::Result<u64, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot be read ({e})"))?
        .len();
    if let Some(size) = f.size.filter(|&s| s != len) {
        return Err(format!("has {len} bytes, the hub lists {size}"));
    }
    if let Some(sum) = &f.checksum {
        let got = sum
            .digest_of(path)
            .map_err(|e| format!("cannot be read ({e})"))?;
        if !got.eq_ignore_ascii_case(sum.expected()) {
            return Err(format!(
                "fails its checksum ({} {got}, the hub lists {})",
                sum.kind(),
                sum.expected()
            ));
        }
    }
    Ok(len)
}

/// Removes a snapshot entry and the blob behind it.
fn remove_cached(link: &Path) -> Result<()> {
    if let Some(b) = cache::blob_of(link) {
        if b.exists() {
            std::fs::remove_file(&b).map_err(|e| io_err(&b, e))?;
        }
    }
    std::fs::remove_file(link).map_err(|e| io_err(link, e))
}

/// `refs/<revision>` → `commit`, as `huggingface_hub` writes it. hf-hub also
/// wrote `refs/<commit>` (it was asked for the commit): not part of the
/// standard layout, so it goes.
fn point_ref(env: &HubEnv, spec: &RepoSpec, commit: &str) -> Result<()> {
    let refs = repo_dir(env, spec).join("refs");
    if !spec.revision.eq_ignore_ascii_case(commit) {
        let _ = std::fs::remove_file(refs.join(commit));
    }
    if spec.is_commit() {
        return Ok(());
    }
    let cache = hf_hub::Cache::new(env.cache.clone());
    cache
        .repo(spec.hub_repo(&spec.revision))
        .create_ref(commit)
        .map_err(|e| io_err(&refs.join(&spec.revision), e))
}

/// `HF_HUB_OFFLINE`: what the cache has for `spec`, every file checked
/// against the checksum its blob is named by.
fn verify_offline(env: &HubEnv, spec: &RepoSpec) -> Result<PullReport> {
    let snapshot = cache::snapshot(env, spec).ok_or_else(|| {
        Error::Hub(format!(
            "{spec} is not in the Hugging Face cache at {} and HF_HUB_OFFLINE is set: \
             nothing can be downloaded",
            env.cache.display()
        ))
    })?;
    let commit = cache::cached_commit(env, spec).unwrap_or_default();
    let mut files = Vec::new();
    for rel in cache::snapshot_files(&snapshot)? {
        cache::verify_cached(&snapshot, &rel)?;
        let bytes = std::fs::metadata(snapshot.join(&rel))
            .map(|m| m.len())
            .unwrap_or(0);
        files.push(PulledFile {
            path: rel,
            bytes,
            status: FileStatus::Cached,
        });
    }
    Ok(PullReport {
        repo: spec.id.clone(),
        revision: spec.revision.clone(),
        commit,
        layout: None,
        snapshot,
        offline: true,
        files,
    })
}

/// An hf-hub error as one naming the repository, revision and file.
fn api_error(env: &HubEnv, spec: &RepoSpec, file: &str, e: ApiError) -> Error {
    match e {
        ApiError::RequestError(e) => listing::request_error(&env.endpoint, spec, Some(file), &e),
        ApiError::TooManyRetries(e) => api_error(env, spec, file, *e),
        ApiError::IoError(e) => Error::Hub(format!("{spec}: {file}: I/O: {e}")),
        ApiError::LockAcquisition(p) => Error::Hub(format!(
            "{spec}: {file}: another process is downloading it (lock {})",
            p.display()
        )),
        ApiError::InvalidResume => Error::Hub(format!(
            "{spec}: {file}: the partial download in the cache is longer than the file; \
             delete the blob's .part file and pull again"
        )),
        other => Error::Hub(format!("{spec}: {file}: {other}")),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        err: source,
    }
}

/// A progress bar per file (drawn only on a terminal).
struct Bar {
    bar: ProgressBar,
}

impl Bar {
    fn new(show: bool, tag: &str) -> Bar {
        let target = if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(tag.to_string());
        Bar { bar }
    }
}

impl hf_hub::api::Progress for Bar {
    fn init(&mut self, size: usize, _filename: &str) {
        self.bar.set_length(size as u64);
        self.bar.set_position(0);
        self.bar.reset_eta();
    }

    fn update(&mut self, size: usize) {
        self.bar.inc(size as u64);
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}
