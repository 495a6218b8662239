//! One sled tree behind the panic guard: every call c3 makes into sled
//! goes through here, so a damaged database gives an error naming the tree
//! and the database file instead of a panic (exit 101).
//!
//! Invariant: no code outside this file and `txn.rs` calls a `sled::Tree`
//! method directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use c3_migrations::guard;
use sled::IVec;

use crate::{Error, Result};

/// A sled tree of the store in `dir`.
#[derive(Clone)]
pub(super) struct Tree {
    pub(super) name: &'static str,
    pub(super) inner: sled::Tree,
    dir: Arc<PathBuf>,
}

/// The error of a sled call that failed: damage it found names the
/// database file and the way back.
pub(super) fn sled_failure(dir: &Path, tree: &str, e: sled::Error) -> Error {
    match e {
        sled::Error::Corruption { .. } => Error::DatabaseDamaged {
            dir: dir.to_path_buf(),
            file: dir.join(c3_migrations::DB_DIR).join("db"),
            what: format!("tree `{tree}`: {e}"),
        },
        e => Error::Store(format!("store {}: tree `{tree}`: {e}", dir.display())),
    }
}

/// A panic inside sled: the database file is damaged.
pub(super) fn panicked(dir: &Path, what: &str, panic: String) -> Error {
    Error::DatabaseDamaged {
        dir: dir.to_path_buf(),
        file: dir.join(c3_migrations::DB_DIR).join("db"),
        what: format!("{what}: sled panicked: {panic}"),
    }
}

/// Runs `f` (a sled call about `what`) behind the guard.
pub(super) fn call<T>(dir: &Path, what: &str, f: impl FnOnce() -> sled::Result<T>) -> Result<T> {
    match guard::catch(f) {
        Ok(r) => r.map_err(|e| sled_failure(dir, what, e)),
        Err(p) => Err(panicked(dir, &format!("tree `{what}`"), p)),
    }
}

impl Tree {
    pub(super) fn open(db: &sled::Db, dir: &Arc<PathBuf>, name: &'static str) -> Result<Self> {
        let inner = call(dir, name, || db.open_tree(name))?;
        Ok(Tree {
            name,
            inner,
            dir: dir.clone(),
        })
    }

    fn call<T>(&self, f: impl FnOnce(&sled::Tree) -> sled::Result<T>) -> Result<T> {
        call(&self.dir, self.name, || f(&self.inner))
    }

    pub(super) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<IVec>> {
        self.call(|t| t.get(key))
    }

    pub(super) fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<IVec>) -> Result<()> {
        self.call(|t| t.insert(key, value)).map(drop)
    }

    pub(super) fn remove(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.call(|t| t.remove(key)).map(drop)
    }

    pub(super) fn apply_batch(&self, batch: sled::Batch) -> Result<()> {
        self.call(|t| t.apply_batch(batch))
    }

    pub(super) fn iter(&self) -> Iter {
        self.wrap(|t| t.iter())
    }

    pub(super) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        self.wrap(|t| t.scan_prefix(prefix))
    }

    pub(super) fn range_from(&self, from: impl AsRef<[u8]>) -> Iter {
        let from = IVec::from(from.as_ref());
        self.wrap(|t| t.range(from..))
    }

    fn wrap(&self, f: impl FnOnce(&sled::Tree) -> sled::Iter) -> Iter {
        let inner = guard::catch(|| f(&self.inner))
            .map_err(|p| panicked(&self.dir, &format!("tree `{}`", self.name), p));
        Iter {
            name: self.name,
            dir: self.dir.clone(),
            inner: Some(inner),
        }
    }
}

/// A sled iterator behind the guard; it ends after the first error.
pub(super) struct Iter {
    name: &'static str,
    dir: Arc<PathBuf>,
    inner: Option<Result<sled::Iter>>,
}

impl Iterator for Iter {
    type Item = Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        let it = match self.inner.as_mut()? {
            Ok(it) => it,
            Err(_) => {
                let Some(Err(e)) = self.inner.take() else {
                    return None;
                };
                return Some(Err(e));
            }
        };
        let r = match guard::catch(|| it.next()) {
            Ok(None) => None,
            Ok(Some(Ok(kv))) => Some(Ok(kv)),
            Ok(Some(Err(e))) => Some(Err(sled_failure(&self.dir, self.name, e))),
            Err(p) => Some(Err(panicked(
                &self.dir,
                &format!("tree `{}`", self.name),
                p,
            ))),
        };
        if !matches!(r, Some(Ok(_))) {
            self.inner = None;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_sled_becomes_an_error_naming_the_database_file() {
        let dir = Path::new("/srv/store");
        let r: Result<()> = call(dir, "docs", || -> sled::Result<()> {
            panic!("tried to serialize Uninitialized")
        });
        let e = r.unwrap_err();
        assert!(matches!(e, Error::DatabaseDamaged { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("/srv/store/db/db"), "{msg}");
        assert!(msg.contains("tried to serialize Uninitialized"), "{msg}");
        assert!(msg.contains("c3 --store /srv/store recover"), "{msg}");
        let corrupt = call(dir, "docs", || -> sled::Result<()> {
            Err(sled::Error::Corruption { at: None, bt: () })
        });
        assert!(matches!(corrupt, Err(Error::DatabaseDamaged { .. })));
    }
}
