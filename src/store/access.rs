//! Whether this process may write the store, and how a store it may only
//! read is opened.
//!
//! sled 0.34 cannot open a database read-only: it opens `db/db` for
//! writing, takes a write lock on it and finishes its crash recovery on
//! open (it may zero a damaged log tail and write a snapshot). So a store
//! whose directory this user cannot write is read from a private copy of
//! its `db/` in the temporary directory, when that copy is small enough;
//! a larger one is refused with an error that says why write access is
//! needed. Writes to a store opened either way are refused
//! ([`crate::Error::ReadOnly`]).

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Largest database copied to read a store this user cannot write.
pub const PRIVATE_COPY_MAX_BYTES: u64 = 1 << 30;

/// How a store is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// In place, for reading and writing.
    InPlace,
    /// From a private copy of `db/`, for reading only; with why.
    PrivateCopy { why: String },
    /// Not at all, with why.
    Refuse { why: String },
}

/// What the file system says about a store directory.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// The store directory, `db/` and the files in `db/` are writable by
    /// this process (`access(2)`, so root and read-only mounts answer right).
    pub writable: bool,
    /// `db/` exists.
    pub has_db: bool,
    /// Bytes under `db/`.
    pub db_bytes: u64,
}

/// The decision, from the probe alone (unit-tested: tests run as root, for
/// whom permission bits do not stop writes).
pub fn decide(dir: &Path, p: Probe, copy_max: u64) -> Opening {
    if p.writable || !p.has_db {
        return Opening::InPlace;
    }
    let why = format!(
        "{} is not writable by this user, and the database (sled) must open {} for writing \
         even to read it",
        dir.display(),
        dir.join("db/db").display()
    );
    if p.db_bytes <= copy_max {
        Opening::PrivateCopy { why }
    } else {
        Opening::Refuse {
            why: format!(
                "{why}; its database ({} MiB) is too large to read from a private copy (the \
                 limit is {} MiB): ask for write access to {}, or copy the store to a writable \
                 place and pass that --store",
                p.db_bytes >> 20,
                copy_max >> 20,
                dir.display()
            ),
        }
    }
}

fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Look at the store in `dir`.
pub fn probe(dir: &Path) -> Probe {
    let db = dir.join(c3_migrations::DB_DIR);
    let has_db = db.is_dir();
    let mut ok = writable(dir) && (!has_db || writable(&db));
    let mut bytes = 0u64;
    if let Ok(rd) = std::fs::read_dir(&db) {
        for e in rd.flatten() {
            let p = e.path();
            ok &= writable(&p);
            bytes += dir_bytes(&p);
        }
    }
    Probe {
        writable: ok,
        has_db,
        db_bytes: bytes,
    }
}

fn dir_bytes(p: &Path) -> u64 {
    match std::fs::read_dir(p) {
        Ok(rd) => rd.flatten().map(|e| dir_bytes(&e.path())).sum(),
        Err(_) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
    }
}

/// A private copy of a store's `db/`, removed when dropped.
#[derive(Debug)]
pub struct PrivateCopy {
    /// A directory holding `db/`, opened as a store directory.
    pub root: PathBuf,
}

impl PrivateCopy {
    pub fn make(dir: &Path) -> Result<Self> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let root = std::env::temp_dir().join(format!("c3-readonly-{}-{stamp}", std::process::id()));
        let copy = PrivateCopy { root };
        copy_tree(
            &dir.join(c3_migrations::DB_DIR),
            &copy.root.join(c3_migrations::DB_DIR),
        )?;
        Ok(copy)
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(Error::io(to))?;
    for e in std::fs::read_dir(from).map_err(Error::io(from))? {
        let e = e.map_err(Error::io(from))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().map_err(Error::io(&src))?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(Error::io(&src))?;
            // fs::copy keeps the source's mode; the copy must be writable.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600))
                .map_err(Error::io(&dst))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_follows_the_probe() {
        let dir = Path::new("/srv/store");
        let p = |writable, has_db, db_bytes| Probe {
            writable,
            has_db,
            db_bytes,
        };
        assert_eq!(decide(dir, p(true, true, 5), 10), Opening::InPlace);
        // No database yet: opening creates it (and fails if it cannot).
        assert_eq!(decide(dir, p(false, false, 0), 10), Opening::InPlace);
        match decide(dir, p(false, true, 5), 10) {
            Opening::PrivateCopy { why } => {
                assert!(why.contains("/srv/store is not writable"), "{why}");
                assert!(why.contains("/srv/store/db/db"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        match decide(dir, p(false, true, 11 << 20), 10 << 20) {
            Opening::Refuse { why } => {
                assert!(why.contains("write access"), "{why}");
                assert!(why.contains("11 MiB"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
