//! The roots an operator lets agents read (`--allow-path`), and the check
//! every path an agent names goes through.
//!
//! Invariant: a path is used only when it has no `..` component and its
//! canonical form (symlinks resolved) lies inside a canonical root; a walk
//! of a folder skips files that a symlink leads out of the roots
//! (`ingest::IngestOptions::confine`).

use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// The canonical form of each `--allow-path` (each must be a folder).
pub fn roots(given: &[PathBuf]) -> Result<Vec<PathBuf>> {
    given
        .iter()
        .map(|p| {
            let c = std::fs::canonicalize(p).map_err(|e| Error::PathNotAllowed {
                path: p.display().to_string(),
                why: format!("--allow-path cannot be used: {e}"),
            })?;
            if !c.is_dir() {
                return Err(Error::PathNotAllowed {
                    path: p.display().to_string(),
                    why: "--allow-path takes a folder".into(),
                });
            }
            Ok(c)
        })
        .collect()
}

fn refuse(path: &str, why: impl Into<String>) -> Error {
    Error::PathNotAllowed {
        path: format!("`{path}`"),
        why: why.into(),
    }
}

/// The canonical path an agent's `path` names, if it is inside `roots`. A
/// relative path is taken from the first root.
pub fn check(roots: &[PathBuf], path: &str) -> Result<PathBuf> {
    let Some(first) = roots.first() else {
        return Err(refuse(
            path,
            "this server reads no files (start it with --allow-path DIR to allow a folder)",
        ));
    };
    if path.trim().is_empty() {
        return Err(refuse(path, "the path is empty"));
    }
    let p = Path::new(path);
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(refuse(path, "`..` is not allowed in a path"));
    }
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        first.join(p)
    };
    let canonical = std::fs::canonicalize(&joined).map_err(|e| refuse(path, e.to_string()))?;
    if !roots.iter().any(|r| canonical.starts_with(r)) {
        return Err(refuse(
            path,
            format!(
                "it is outside the allowed roots ({}){}",
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if canonical != joined {
                    " once its symlinks are resolved"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_roots_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("sub/a.txt"), "a").unwrap();
        std::fs::write(outside.join("secret.txt"), "s").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let roots = roots(std::slice::from_ref(&root)).unwrap();
        let canon = std::fs::canonicalize(&root).unwrap();
        assert_eq!(check(&roots, "sub/a.txt").unwrap(), canon.join("sub/a.txt"));
        assert_eq!(
            check(&roots, canon.join("sub").to_str().unwrap()).unwrap(),
            canon.join("sub")
        );
        let e = |p: &str| check(&roots, p).unwrap_err().to_string();
        assert!(e("../outside/secret.txt").contains("`..` is not allowed"));
        assert!(e("sub/../../outside").contains("`..` is not allowed"));
        assert!(e(outside.join("secret.txt").to_str().unwrap()).contains("outside the allowed"));
        #[cfg(unix)]
        assert!(e("link/secret.txt").contains("once its symlinks are resolved"));
        assert!(e("missing.txt").contains("No such file"));
        assert!(e("").contains("empty"));
        assert!(check(&[], "a")
            .unwrap_err()
            .to_string()
            .contains("--allow-path"));
    }
}
