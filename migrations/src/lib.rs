//! Schema history of the c3 memory store.
//!
//! A store directory holds a sled database in `db/`. Its schema version is a
//! raw big-endian `u32` under [`VERSION_KEY`] in the [`META_TREE`] tree, kept
//! outside any record format so that every future layout can still read it.
//!
//! [`open`] brings a store up to the newest version of a migration list:
//! it refuses stores written by a newer program, copies the whole store
//! directory to `backups/` before touching an existing store, then applies the
//! missing steps in order, recording the version after each one so that an
//! interrupted upgrade resumes where it stopped.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod guard;
pub mod v1;
pub mod v2;
pub mod v3;

/// Tree holding the schema version and the store's meta records.
pub const META_TREE: &str = "meta";
/// Key of the schema version (big-endian u32) in [`META_TREE`].
pub const VERSION_KEY: &[u8] = b"schema_version";
/// Sub-directory of the store that holds the sled database.
pub const DB_DIR: &str = "db";
/// Sub-directory of the store that holds pre-migration backups.
pub const BACKUP_DIR: &str = "backups";

/// One step of the schema history: turns a store at version `to - 1` into
/// one at version `to`.
pub struct Migration {
    pub to: u32,
    pub name: &'static str,
    pub apply: fn(&sled::Db) -> sled::Result<()>,
}

/// The real history of the c3 store, oldest first.
pub const HISTORY: &[Migration] = &[
    Migration {
        to: 1,
        name: "initial layout: meta, docs, sources, chunks, latents",
        apply: v1::create,
    },
    Migration {
        to: 2,
        name: "checksums on the raw values: counters and `sources` entries",
        apply: v2::checksum_raw_values,
    },
    Migration {
        to: 3,
        name: "per-document metadata: the `doc_meta` tree",
        apply: v3::add_doc_meta,
    },
];

/// The schema version this program writes.
pub fn current_version() -> u32 {
    latest(HISTORY)
}

fn latest(history: &[Migration]) -> u32 {
    history.last().map_or(0, |m| m.to)
}

/// Why a store could not be opened or upgraded. Each variant names the
/// store; a wrapped cause is printed in the message, not handed out again
/// as a `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    #[error("store {dir}: schema version {found} is newer than this program supports ({supported}); upgrade c3 to open it")]
    Newer {
        dir: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("store {dir}: tree `meta` key `schema_version` is {len} bytes, expected 4")]
    BadVersion { dir: PathBuf, len: usize },
    #[error("store {dir}: the database has data but no schema version; it is not a c3 store")]
    NotAStore { dir: PathBuf },
    /// Another process holds the store (sled's file lock on `db/db`).
    #[error("store {dir} is in use by another c3 process")]
    Locked { dir: PathBuf },
    /// sled refused the database or panicked reading it: its files are
    /// damaged (the lock was free, so no other process is involved).
    #[error(
        "store {dir}: the database {} is damaged and cannot be opened ({what}); `c3 --store {dir} \
         check` lists the documents the store's manifest expects, `c3 --store {dir} recover` \
         rebuilds the store from their sources or from an export",
        db.display()
    )]
    Open {
        dir: PathBuf,
        /// The database file (`DIR/db/db`).
        db: PathBuf,
        what: String,
    },
    #[error("store {dir}: could not clear a torn sled snapshot file in db/: {err}")]
    TornSnapshot { dir: PathBuf, err: std::io::Error },
    #[error("store {dir}: {err}")]
    Db { dir: PathBuf, err: sled::Error },
    #[error("store {dir}: migration to version {to} ({name}) failed: {err}")]
    Step {
        dir: PathBuf,
        to: u32,
        name: &'static str,
        err: sled::Error,
    },
    #[error("store {dir}: backup before migration failed: {err}")]
    Backup { dir: PathBuf, err: std::io::Error },
    #[error("migration history is not consecutive at version {0}")]
    BadHistory(u32),
}

/// An opened, up-to-date store database.
pub struct Opened {
    pub db: sled::Db,
    /// Version found on disk before migrating (0 for a new store).
    pub from_version: u32,
    /// Where the pre-migration copy was written, if one was needed.
    pub backup: Option<PathBuf>,
}

/// Open (creating if needed) the store in `dir` with the real history.
pub fn open(dir: &Path) -> Result<Opened, MigrateError> {
    open_with(dir, HISTORY)
}

/// [`open`] with sled's page cache capped at `cache_bytes` (a reader that
/// streams through a store once, like `c3 merge`, needs little).
pub fn open_cached(dir: &Path, cache_bytes: u64) -> Result<Opened, MigrateError> {
    open_with_cache(dir, HISTORY, cache_bytes)
}

/// sled's page cache for a store opened by [`open`]: latents are written
/// once and read in bulk, so a modest cache is enough and keeps memory
/// bounded on large ingests.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

/// Open the store in `dir` and migrate it through `history` (oldest first,
/// consecutive versions starting at 1).
pub fn open_with(dir: &Path, history: &[Migration]) -> Result<Opened, MigrateError> {
    open_with_cache(dir, history, DEFAULT_CACHE_BYTES)
}

fn open_with_cache(
    dir: &Path,
    history: &[Migration],
    cache_bytes: u64,
) -> Result<Opened, MigrateError> {
    check_history(history)?;
    let db = open_db_cached(dir, cache_bytes)?;
    migrate_with(db, dir, history, cache_bytes)
}

fn check_history(history: &[Migration]) -> Result<(), MigrateError> {
    for (i, m) in history.iter().enumerate() {
        if m.to != i as u32 + 1 {
            return Err(MigrateError::BadHistory(m.to));
        }
    }
    Ok(())
}

/// Brings an already opened store database up to the newest version of
/// the real history ([`open`] is [`open_db`] then this). A caller that
/// must look at the database before anything is written to it (c3 checks
/// its store manifest first) opens it, looks, then calls this.
pub fn migrate(db: sled::Db, dir: &Path, cache_bytes: u64) -> Result<Opened, MigrateError> {
    migrate_with(db, dir, HISTORY, cache_bytes)
}

/// [`migrate`] through `history` (oldest first, consecutive versions
/// starting at 1).
pub fn migrate_with(
    mut db: sled::Db,
    dir: &Path,
    history: &[Migration],
    cache_bytes: u64,
) -> Result<Opened, MigrateError> {
    check_history(history)?;
    let supported = latest(history);
    let from_version = read_version(&db, dir)?;
    if from_version > supported {
        return Err(MigrateError::Newer {
            dir: dir.to_path_buf(),
            found: from_version,
            supported,
        });
    }
    let mut backup = None;
    if from_version < supported && from_version > 0 {
        // Close the database so the copy is a consistent on-disk image.
        guarded(dir, "flush", || db.flush())?;
        drop(db);
        backup = Some(
            backup_store(dir, from_version).map_err(|err| MigrateError::Backup {
                dir: dir.to_path_buf(),
                err,
            })?,
        );
        db = open_db_cached(dir, cache_bytes)?;
    }
    for m in history.iter().filter(|m| m.to > from_version) {
        match guard::catch(|| (m.apply)(&db)) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                return Err(MigrateError::Step {
                    dir: dir.to_path_buf(),
                    to: m.to,
                    name: m.name,
                    err,
                })
            }
            Err(what) => return Err(damaged(dir, what)),
        }
        guarded(dir, "write version", || write_version(&db, m.to))?;
        guarded(dir, "flush", || db.flush())?;
    }
    Ok(Opened {
        db,
        from_version,
        backup,
    })
}

/// Runs one sled call, turning a panic (damaged files) into
/// [`MigrateError::Open`] and an error into [`MigrateError::Db`].
fn guarded<T>(
    dir: &Path,
    what: &str,
    f: impl FnOnce() -> sled::Result<T>,
) -> Result<T, MigrateError> {
    match guard::catch(f) {
        Ok(r) => r.map_err(|err| db_err(dir, err)),
        Err(panic) => Err(damaged(dir, format!("{what}: {panic}"))),
    }
}

fn damaged(dir: &Path, what: String) -> MigrateError {
    MigrateError::Open {
        dir: dir.to_path_buf(),
        db: dir.join(DB_DIR).join("db"),
        what,
    }
}

fn db_err(dir: &Path, err: sled::Error) -> MigrateError {
    match err {
        // Damage found while reading: name the file and the way back.
        sled::Error::Corruption { .. } => damaged(dir, err.to_string()),
        err => MigrateError::Db {
            dir: dir.to_path_buf(),
            err,
        },
    }
}

/// Open the sled database of the store in `dir` without migrating.
///
/// sled releases its file lock from a background thread after the last
/// handle is dropped, so a reopen (ours after a backup, or a test's) may find
/// the lock still held for a moment: retry briefly before giving up.
pub fn open_db(dir: &Path) -> Result<sled::Db, MigrateError> {
    open_db_cached(dir, DEFAULT_CACHE_BYTES)
}

/// [`open_db`] with sled's page cache capped at `cache_bytes`.
///
/// A lock held by another process is told apart from damage by asking the
/// lock itself before sled opens the files (sled reports both only as
/// text, and a failed open of a damaged database may hold our own lock for
/// a moment): a held lock is [`MigrateError::Locked`]; an open that fails
/// or panics while the lock was free is [`MigrateError::Open`], naming
/// the database file.
pub fn open_db_cached(dir: &Path, cache_bytes: u64) -> Result<sled::Db, MigrateError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let db_dir = dir.join(DB_DIR);
    clear_torn_snapshots(&db_dir).map_err(|err| MigrateError::TornSnapshot {
        dir: dir.to_path_buf(),
        err,
    })?;
    loop {
        if held_elsewhere(&db_dir) {
            if Instant::now() >= deadline {
                return Err(MigrateError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let res = guard::catch(|| {
            sled::Config::new()
                .path(&db_dir)
                .cache_capacity(cache_bytes)
                .open()
        });
        match res {
            Ok(Ok(db)) => return Ok(db),
            // Taken between our look and sled's open: wait for it.
            Ok(Err(err)) if is_lock_error(&err) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(Err(err)) if is_lock_error(&err) => {
                return Err(MigrateError::Locked {
                    dir: dir.to_path_buf(),
                })
            }
            Ok(Err(err)) => return Err(damaged(dir, err.to_string())),
            Err(panic) => return Err(damaged(dir, format!("the database panicked: {panic}"))),
        }
    }
}

/// sled's own lock failure (its only form is this text).
fn is_lock_error(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Io(e) if e.to_string().contains("could not acquire lock"))
}

/// Whether another open file holds the lock sled takes on `db_dir/db`.
fn held_elsewhere(db_dir: &Path) -> bool {
    use fs2::FileExt;
    let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(db_dir.join("db"))
    else {
        return false;
    };
    let held = f.try_lock_exclusive().is_err();
    if !held {
        let _ = FileExt::unlock(&f);
    }
    held
}

/// Removes the snapshot files (`snap.*.generating`) that a process killed
/// while sled was writing one left behind in `db_dir`.
///
/// sled 0.34 counts such a file among its snapshots, takes it as the newest,
/// and refuses to open the database ("Read corrupted data at file offset
/// None"); a SIGKILL during a merge's reopen of an input store left one. The
/// file is never a complete snapshot: sled renames it to `snap.*` only once
/// it is written and synced, and removes the older snapshot after that, so
/// without it sled recovers from the older snapshot and the log, as if the
/// kill had come just before the snapshot began. Done only while holding
/// the lock sled itself takes on `db_dir/db`: a running process's snapshot
/// in progress is never touched (then sled's own open reports the lock).
pub fn clear_torn_snapshots(db_dir: &Path) -> std::io::Result<()> {
    use fs2::FileExt;
    let lock_file = match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(db_dir.join("db"))
    {
        Ok(f) => f,
        // A new database: nothing was ever written.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if lock_file.try_lock_exclusive().is_err() {
        return Ok(());
    }
    for entry in fs::read_dir(db_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            fs::remove_file(entry.path())?;
        }
    }
    // Closing the file releases the lock for sled's open.
    drop(lock_file);
    Ok(())
}

/// Version recorded in `db`; 0 for a database that was never initialised.
pub fn read_version(db: &sled::Db, dir: &Path) -> Result<u32, MigrateError> {
    guard::catch(|| read_version_unguarded(db, dir))
        .unwrap_or_else(|panic| Err(damaged(dir, format!("reading the schema version: {panic}"))))
}

fn read_version_unguarded(db: &sled::Db, dir: &Path) -> Result<u32, MigrateError> {
    let meta = db.open_tree(META_TREE).map_err(|s| db_err(dir, s))?;
    match meta.get(VERSION_KEY).map_err(|s| db_err(dir, s))? {
        Some(v) => {
            let bytes: [u8; 4] = v
                .as_ref()
                .try_into()
                .map_err(|_| MigrateError::BadVersion {
                    dir: dir.to_path_buf(),
                    len: v.len(),
                })?;
            Ok(u32::from_be_bytes(bytes))
        }
        None => {
            let has_data = db
                .tree_names()
                .iter()
                .filter_map(|n| db.open_tree(n).ok())
                .any(|t| !t.is_empty());
            if has_data {
                Err(MigrateError::NotAStore {
                    dir: dir.to_path_buf(),
                })
            } else {
                Ok(0)
            }
        }
    }
}

/// Record `version` as the store's schema version.
pub fn write_version(db: &sled::Db, version: u32) -> sled::Result<()> {
    db.open_tree(META_TREE)?
        .insert(VERSION_KEY, &version.to_be_bytes())?;
    Ok(())
}

/// Copy everything in the store directory except earlier backups to
/// `backups/schema-v{version}-{unix seconds}/`.
fn backup_store(dir: &Path, version: u32) -> std::io::Result<PathBuf> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let root = dir.join(BACKUP_DIR);
    let mut target = root.join(format!("schema-v{version}-{stamp}"));
    let mut n = 1;
    while target.exists() {
        target = root.join(format!("schema-v{version}-{stamp}-{n}"));
        n += 1;
    }
    fs::create_dir_all(&target)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == BACKUP_DIR {
            continue;
        }
        copy_recursive(&entry.path(), &target.join(entry.file_name()))?;
    }
    Ok(target)
}

fn copy_recursive(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_recursive(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if meta.is_file() {
        fs::copy(from, to)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a process killed during sled's snapshot write leaves: a
    /// `.generating` file with only part of a snapshot in it.
    fn torn_snapshot(db_dir: &Path) -> PathBuf {
        let p = db_dir.join("snap.7FFFFFFFFFFFFFFF.generating");
        fs::write(&p, b"half of a snapshot, no length or crc yet").unwrap();
        p
    }

    #[test]
    fn a_torn_snapshot_is_cleared_and_the_data_stays() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db_cached(dir.path(), 1 << 20).unwrap();
        db.insert(b"kept", b"value").unwrap();
        db.flush().unwrap();
        drop(db);
        let torn = torn_snapshot(&dir.path().join(DB_DIR));
        // sled alone refuses it (the bug this works around).
        let plain = sled::Config::new().path(dir.path().join(DB_DIR)).open();
        assert!(plain.is_err(), "sled opened a store with a torn snapshot");
        drop(plain);
        let db = open_db_cached(dir.path(), 1 << 20).unwrap();
        assert_eq!(db.get(b"kept").unwrap().as_deref(), Some(&b"value"[..]));
        assert!(!torn.exists());
    }

    #[test]
    fn a_snapshot_in_progress_of_an_open_store_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db_cached(dir.path(), 1 << 20).unwrap();
        let db_dir = dir.path().join(DB_DIR);
        let writing = torn_snapshot(&db_dir);
        clear_torn_snapshots(&db_dir).unwrap();
        assert!(writing.exists(), "removed while the store was open");
        drop(db);
    }

    #[test]
    fn a_new_store_has_nothing_to_clear() {
        let dir = tempfile::tempdir().unwrap();
        clear_torn_snapshots(&dir.path().join(DB_DIR)).unwrap();
    }
}
