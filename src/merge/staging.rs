//! Where a merge is built: `DIR.merging` beside `--out DIR`, holding the
//! store being written and `merge-plan.json` (the plan's digest). The
//! finished store is renamed to DIR in one step, so DIR is either absent or
//! complete. A run that finds `DIR.merging` with the same plan resumes
//! after the documents already committed there; one with another plan is
//! refused, so an unfinished merge is never mixed with other inputs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub const PLAN_FILE: &str = "merge-plan.json";

#[derive(Serialize, Deserialize)]
struct PlanFile {
    format: String,
    digest: String,
    documents: u64,
    inputs: Vec<String>,
}

const FORMAT: &str = "c3-merge-plan/1";

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        err: source,
    }
}

/// `DIR.merging` for `out`.
pub fn staging_dir(out: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(out).map_err(io(out))?;
    let name = abs
        .file_name()
        .ok_or_else(|| Error::Input(format!("--out {}: needs a directory name", out.display())))?;
    let mut staged = name.to_os_string();
    staged.push(".merging");
    Ok(abs.with_file_name(staged))
}

/// Refuse an `out` that already holds something.
pub fn check_out_free(out: &Path) -> Result<()> {
    match std::fs::read_dir(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Error::Input(format!(
            "--out {}: is a file; c3 merge writes a new store directory",
            out.display()
        ))),
        Err(e) => Err(io(out)(e)),
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Error::Input(format!(
                "--out {} already exists and is not empty: c3 merge writes a new store \
                 (remove it, or choose another --out)",
                out.display()
            ))),
        },
    }
}

/// Prepare the staging directory for a plan: create it with its plan file,
/// or check an existing one holds the same plan. Returns whether it resumes.
pub fn prepare(staging: &Path, digest: &str, documents: u64, inputs: &[String]) -> Result<bool> {
    let plan_path = staging.join(PLAN_FILE);
    if staging.exists() {
        match std::fs::read(&plan_path) {
            Ok(bytes) => {
                let found: PlanFile = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Store(format!("{}: unreadable ({e})", plan_path.display()))
                })?;
                if found.format == FORMAT && found.digest == digest {
                    return Ok(true);
                }
                return Err(Error::Input(format!(
                    "{} holds an unfinished merge of other inputs ({}); finish it with \
                     the same inputs, or remove that directory to start over",
                    staging.display(),
                    found.inputs.join(" ")
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The plan is written before anything else: without it the
                // directory holds no document, unless it is not ours.
                let empty = std::fs::read_dir(staging)
                    .map_err(io(staging))?
                    .next()
                    .is_none();
                if !empty {
                    return Err(Error::Input(format!(
                        "{} exists but has no {PLAN_FILE}: not a c3 merge in progress; remove it",
                        staging.display()
                    )));
                }
            }
            Err(e) => return Err(io(&plan_path)(e)),
        }
    }
    std::fs::create_dir_all(staging).map_err(io(staging))?;
    let rec = PlanFile {
        format: FORMAT.into(),
        digest: digest.into(),
        documents,
        inputs: inputs.to_vec(),
    };
    let tmp = staging.join(format!("{PLAN_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(&rec).map_err(|e| Error::Store(e.to_string()))?;
    write_synced(&tmp, &bytes)?;
    std::fs::rename(&tmp, &plan_path).map_err(io(&plan_path))?;
    sync_dir(staging);
    Ok(false)
}

/// Move the finished store into place.
pub fn finish(staging: &Path, out: &Path) -> Result<()> {
    let plan_path = staging.join(PLAN_FILE);
    std::fs::remove_file(&plan_path).map_err(io(&plan_path))?;
    sync_dir(staging);
    std::fs::rename(staging, out).map_err(|e| {
        Error::Store(format!(
            "moving the merged store {} to {}: {e} (the merge is complete there; move it by hand)",
            staging.display(),
            out.display()
        ))
    })?;
    if let Some(parent) = std::path::absolute(out)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        sync_dir(&parent);
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Best effort: make a rename inside `dir` durable.
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_is_beside_out() {
        let s = staging_dir(Path::new("/data/merged")).unwrap();
        assert_eq!(s, Path::new("/data/merged.merging"));
        let s = staging_dir(Path::new("/data/merged/")).unwrap();
        assert_eq!(s, Path::new("/data/merged.merging"));
    }

    #[test]
    fn same_plan_resumes_other_plan_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let st = dir.path().join("m.merging");
        assert!(!prepare(&st, "abc", 3, &["a".into()]).unwrap());
        assert!(prepare(&st, "abc", 3, &["a".into()]).unwrap());
        let e = prepare(&st, "xyz", 3, &["b".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unfinished merge of other inputs (a)"), "{e}");
        let out = dir.path().join("m");
        finish(&st, &out).unwrap();
        assert!(out.is_dir() && !st.exists() && !out.join(PLAN_FILE).exists());
        std::fs::write(out.join("x"), b"1").unwrap();
        let e = check_out_free(&out).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
    }
}
