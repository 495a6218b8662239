//! The local cache, read with no network: the standard layout that both
//! hf-hub and the Python `huggingface_hub` write
//! (`models--org--name/{refs,snapshots,blobs}`).

use std::path::{Path, PathBuf};

use super::checksum::Checksum;
use super::env::HubEnv;
use super::spec::RepoSpec;
use crate::{Error, Result};

/// `models--org--name` under the cache.
pub fn repo_dir(env: &HubEnv, spec: &RepoSpec) -> PathBuf {
    env.cache.join(spec.folder_name())
}

/// The commit the cache holds for `spec`'s revision: the revision itself
/// when it is a commit with a snapshot, else what `refs/<revision>` says.
pub fn cached_commit(env: &HubEnv, spec: &RepoSpec) -> Option<String> {
    let root = repo_dir(env, spec);
    if spec.is_commit() {
        let rev = spec.revision.to_ascii_lowercase();
        return root.join("snapshots").join(&rev).is_dir().then_some(rev);
    }
    let c = std::fs::read_to_string(root.join("refs").join(&spec.revision)).ok()?;
    let c = c.trim().to_string();
    super::spec::is_commit_hash(&c).then_some(c)
}

/// The snapshot directory of `spec` when the cache has a checkpoint there
/// (a `config.json` or `model_config.json` that resolves to a blob).
pub fn snapshot(env: &HubEnv, spec: &RepoSpec) -> Option<PathBuf> {
    let dir = if spec.is_commit() {
        repo_dir(env, spec)
            .join("snapshots")
            .join(cached_commit(env, spec)?)
    } else {
        // hf-hub's own lookup of a branch or tag (refs/<rev> → snapshot).
        let cache = hf_hub::Cache::new(env.cache.clone());
        let repo = cache.repo(spec.hub_repo(&spec.revision));
        let marker = repo
            .get("config.json")
            .or_else(|| repo.get("model_config.json"))?;
        marker.parent()?.to_path_buf()
    };
    (dir.join("config.json").exists() || dir.join("model_config.json").exists()).then_some(dir)
}

/// Every file of a snapshot (relative paths, sorted).
pub fn snapshot_files(dir: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        let rd = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
        for e in rd {
            let e = e.map_err(|e| io(dir, e))?;
            let p = e.path();
            // A symlink to a blob is a file; a real directory is a folder.
            if std::fs::symlink_metadata(&p)
                .map_err(|e| io(&p, e))?
                .is_dir()
            {
                walk(root, &p, out)?;
            } else {
                let rel = p.strip_prefix(root).unwrap_or(&p);
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// The blob a snapshot link points at (`None` for a plain file).
pub fn blob_of(link: &Path) -> Option<PathBuf> {
    let t = std::fs::read_link(link).ok()?;
    Some(link.parent()?.join(t))
}

/// Checks a cached file against the checksum its blob is named by. `Ok(None)`
/// when there is nothing to check against (a plain file, not a blob link).
pub fn verify_cached(snapshot: &Path, rel: &str) -> Result<Option<Checksum>> {
    let p = snapshot.join(rel);
    let Some(blob) = blob_of(&p) else {
        return Ok(None);
    };
    if !blob.exists() {
        return Err(Error::Hub(format!(
            "{}: the cached file's blob {} is missing",
            p.display(),
            blob.display()
        )));
    }
    let name = blob.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some(sum) = Checksum::of_blob_name(name) else {
        return Ok(None);
    };
    let got = sum.digest_of(&blob).map_err(|e| io(&blob, e))?;
    if got != sum.expected() {
        return Err(Error::Hub(format!(
            "{}: corrupt cached file ({} {got}, its blob name says {})",
            p.display(),
            sum.kind(),
            sum.expected()
        )));
    }
    Ok(Some(sum))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        err: source,
    }
}
