//! Opening a store: look before writing.
//!
//! 1. Decide whether this process may write the directory (`access.rs`);
//!    if not, open a private copy of `db/`, read-only.
//! 2. Open sled behind the panic guard and read the schema version.
//! 3. Read what the database holds (generation, counters, model, every
//!    document record) and the manifest, and compare them (`manifest/`).
//! 4. Only if they agree (or there is no manifest yet) and the store is
//!    writable: migrate an older schema (after a backup), create the meta
//!    record, sweep uncommitted chunks, write a new manifest or confirm a
//!    pending commit. A store that does not agree opens read-only with its
//!    [`Damage`]; nothing of it is written.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use c3_migrations::v3::DOC_META;
use c3_migrations::{v1, MigrateError};

use super::access::{self, Opening, PrivateCopy};
use super::manifest::{self, Journal, Loaded, ManifestDoc, SledView, State, Verdict};
use super::records::{DocRecord, MetaRecord};
use super::tree::{self, Tree};
use super::{codec, keys, now_ms, Damage, ReadOnly, Store, MANIFEST_ID_KEY};
use crate::{Error, Result};

/// What the comparison said, with what is needed to act on it.
enum Found {
    /// No manifest and no sign there ever was one: make one.
    Create,
    Consistent {
        replayed: manifest::Replayed,
        confirm: Option<u64>,
        mark: bool,
    },
    Damaged(Damage),
}

pub(super) fn open(dir: &Path, cache_bytes: u64) -> Result<Store> {
    super::recover::refuse_interrupted(dir)?;
    let (root, copy, mut read_only) =
        match access::decide(dir, access::probe(dir), access::PRIVATE_COPY_MAX_BYTES) {
            Opening::InPlace => (dir.to_path_buf(), None, None),
            Opening::PrivateCopy { why } => {
                let c = PrivateCopy::make(dir)?;
                (c.root.clone(), Some(c), Some(ReadOnly::NotWritable(why)))
            }
            Opening::Refuse { why } => {
                return Err(Error::ReadOnly {
                    dir: dir.to_path_buf(),
                    why,
                })
            }
        };
    let in_copy = |e: MigrateError| -> Error {
        if copy.is_some() {
            Error::Store(format!(
                "store {} (read from a private copy of its database): {e}",
                dir.display()
            ))
        } else {
            Error::Migrate(e)
        }
    };
    let db = c3_migrations::open_db_cached(&root, cache_bytes).map_err(in_copy)?;
    let version = c3_migrations::read_version(&db, &root).map_err(in_copy)?;
    let supported = c3_migrations::current_version();
    if version > supported {
        return Err(Error::Migrate(MigrateError::Newer {
            dir: dir.to_path_buf(),
            found: version,
            supported,
        }));
    }
    let mut legacy = version < supported;
    let shared = Arc::new(dir.to_path_buf());
    let view = read_view(&db, &shared, legacy)?;
    let found = match manifest::load(dir) {
        Loaded::Absent if view.marker.is_some() => Found::Damaged(Damage {
            problems: vec![format!(
                "the manifest ({}, {}) is missing, though the database says it had one",
                dir.join(manifest::BASE_FILE).display(),
                dir.join(manifest::LOG_FILE).display()
            )],
            ..Damage::default()
        }),
        Loaded::Absent if !view.unreadable.is_empty() || !view.problems.is_empty() => {
            // A manifest made now would leave the damaged records out.
            let mut problems = view.problems.clone();
            problems.extend(
                view.unreadable
                    .iter()
                    .map(|(id, why)| format!("doc {id}: record unreadable ({why})")),
            );
            Found::Damaged(Damage {
                problems,
                ..Damage::default()
            })
        }
        Loaded::Absent => Found::Create,
        Loaded::Unreadable(what) => Found::Damaged(Damage {
            problems: vec![format!("the manifest is unreadable: {what}")],
            ..Damage::default()
        }),
        Loaded::Present(r) => match manifest::verify(&r, &view) {
            Verdict::Consistent { confirm, mark } => Found::Consistent {
                replayed: r,
                confirm,
                mark,
            },
            Verdict::Damaged(d) => Found::Damaged(d),
        },
    };
    let mut damage = None;
    let db = match (&found, &read_only) {
        (Found::Damaged(d), _) => {
            damage = Some(d.clone());
            read_only = Some(ReadOnly::Damaged);
            db
        }
        // Nothing to write: a private copy is read as it is.
        (_, Some(_)) => db,
        (_, None) => {
            let opened = c3_migrations::migrate(db, dir, cache_bytes)?;
            legacy = false;
            opened.db
        }
    };
    // Opening a tree creates it: an older store read without migrating
    // (damaged, or a private copy) gets no `doc_meta` tree written.
    let has_doc_meta = tree::call(&shared, "tree names", || Ok(db.tree_names()))?
        .iter()
        .any(|n| n.as_ref() == DOC_META.as_bytes());
    let doc_meta = if has_doc_meta || (read_only.is_none() && damage.is_none()) {
        Some(Tree::open(&db, &shared, DOC_META)?)
    } else {
        None
    };
    let store = Store {
        meta: Tree::open(&db, &shared, v1::META)?,
        docs: Tree::open(&db, &shared, v1::DOCS)?,
        sources: Tree::open(&db, &shared, v1::SOURCES)?,
        chunks: Tree::open(&db, &shared, v1::CHUNKS)?,
        latents: Tree::open(&db, &shared, v1::LATENTS)?,
        doc_meta,
        db,
        dir: dir.to_path_buf(),
        read_only,
        damage,
        legacy,
        journal: Mutex::new(None),
        _copy: copy,
    };
    if !store.writable() {
        return Ok(store);
    }
    if store.meta.get(v1::STORE_KEY)?.is_none() {
        store.put_meta(&MetaRecord {
            created_at_ms: now_ms(),
            model: None,
        })?;
        store.flush()?;
    }
    store.sweep_uncommitted()?;
    let journal = match found {
        Found::Create => {
            let state = State {
                store_id: new_store_id(dir),
                generation: view.generation,
                next_doc_id: view.next_doc_id,
                model: view.model.clone(),
                docs: view.docs.clone(),
            };
            let id = state.store_id.clone();
            let j = Journal::create(dir, state)?;
            store.mark(&id)?;
            j
        }
        Found::Consistent {
            replayed,
            confirm,
            mark,
        } => {
            let id = replayed.state.store_id.clone();
            let mut j = Journal::resume(dir, replayed)?;
            if let Some(g) = confirm {
                j.done(g)?;
            }
            if mark {
                store.mark(&id)?;
            }
            j
        }
        Found::Damaged(_) => unreachable!("a damaged store is read-only"),
    };
    *store
        .journal
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(journal);
    Ok(store)
}

impl Store {
    /// Record in the database which manifest it belongs with.
    fn mark(&self, id: &str) -> Result<()> {
        self.meta
            .insert(MANIFEST_ID_KEY, codec::seal(id.as_bytes()))?;
        self.flush()
    }
}

/// A new random-enough manifest id: time, process, directory.
fn new_store_id(dir: &Path) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = blake3::Hasher::new();
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(dir.as_os_str().as_encoded_bytes());
    super::export::hex(&h.finalize().as_bytes()[..16])
}

/// Read what the database holds, writing nothing. Unreadable values are
/// recorded in the view, not returned as errors; only a failing database
/// (an error or panic inside sled) is an error.
fn read_view(db: &sled::Db, dir: &Arc<PathBuf>, legacy: bool) -> Result<SledView> {
    let mut v = SledView::default();
    let names: Vec<sled::IVec> = tree::call(dir, "tree names", || Ok(db.tree_names()))?;
    let has = |name: &str| names.iter().any(|n| n.as_ref() == name.as_bytes());
    if !has(v1::META) {
        return Ok(v);
    }
    let meta = Tree::open(db, dir, v1::META)?;
    let counter = |key: &[u8], problems: &mut Vec<String>| -> Result<u64> {
        Ok(match meta.get(key)? {
            None => 0,
            Some(b) => codec::decode_u64(v1::META, key, &b, legacy).unwrap_or_else(|e| {
                problems.push(codec::problem(&e));
                0
            }),
        })
    };
    v.generation = counter(v1::GENERATION_KEY, &mut v.problems)?;
    v.next_doc_id = counter(v1::NEXT_DOC_ID_KEY, &mut v.problems)?;
    if let Some(b) = meta.get(v1::STORE_KEY)? {
        match codec::decode::<MetaRecord>(v1::META, v1::STORE_KEY, &b) {
            Ok(m) => v.model = m.model.map(|m| m.fingerprint),
            Err(e) => v.problems.push(codec::problem(&e)),
        }
    }
    if let Some(b) = meta.get(MANIFEST_ID_KEY)? {
        match codec::unseal(v1::META, MANIFEST_ID_KEY, &b) {
            Ok(id) => v.marker = Some(String::from_utf8_lossy(id).into_owned()),
            Err(e) => v.problems.push(codec::problem(&e)),
        }
    }
    if !has(v1::DOCS) {
        return Ok(v);
    }
    let docs = Tree::open(db, dir, v1::DOCS)?;
    let doc_meta = if has(DOC_META) {
        Some(Tree::open(db, dir, DOC_META)?)
    } else {
        None
    };
    for item in docs.iter() {
        let (k, val) = item?;
        let Some(id) = keys::parse_doc_key(&k) else {
            v.problems.push(format!(
                "tree `docs`: key {} is not a doc id",
                keys::describe(v1::DOCS, &k)
            ));
            continue;
        };
        match codec::decode::<DocRecord>(v1::DOCS, &k, &val) {
            Ok(d) if d.id == id => match read_metadata(doc_meta.as_ref(), id)? {
                Ok(m) => {
                    v.docs.insert(id, ManifestDoc::of(&d, &m));
                }
                Err(e) => {
                    v.unreadable.insert(id, codec::problem(&e));
                }
            },
            Ok(d) => {
                v.unreadable
                    .insert(id, format!("its record says id {}", d.id));
            }
            Err(e) => {
                v.unreadable.insert(id, codec::problem(&e));
            }
        }
    }
    Ok(v)
}

/// A document's metadata as [`read_view`] reads it: an unreadable record
/// is the inner error (the document is unreadable), a failing database the
/// outer one.
fn read_metadata(
    tree: Option<&Tree>,
    id: u64,
) -> Result<std::result::Result<crate::docmeta::Metadata, Error>> {
    let Some(tree) = tree else {
        return Ok(Ok(crate::docmeta::Metadata::new()));
    };
    let key = keys::doc_key(id);
    Ok(match tree.get(key)? {
        None => Ok(crate::docmeta::Metadata::new()),
        Some(v) => super::metadata::decode(&key, &v),
    })
}
