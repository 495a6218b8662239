//! `c3 recover`: rebuild a damaged store from what is intact, the sources
//! its manifest names, and an export.
//!
//! [`plan`] reads, writes nothing: the manifest (what the store should
//! hold), the database if it opens (each document checked record by
//! record), the export if given. Each document gets one action:
//!
//! - `keep`: intact in the database (all records read back and hash to
//!   its content hash) — copied as it is;
//! - `from_export`: the export holds it (same source; the manifest's
//!   content hash, or any version when nothing better exists);
//! - `reingest`: its source file still exists and hashes to the
//!   manifest's content hash — encoded again with `--model`;
//! - `drop`: none of these: it cannot be recovered (listed, with why).
//!
//! [`apply`] builds the new store in `DIR/recovering/`, marks it complete,
//! then moves the damaged `db/`, manifest and search index to
//! `DIR/backups/damaged-SECONDS/` (kept: the evidence) and the new ones in.
//! A run interrupted during those moves is finished by the next `c3
//! recover` (the store refuses to open until then).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::export::{self, ExportDoc, ExportFile};
use super::manifest::{self, Loaded, ManifestDoc};
use super::records::{DocRecord, ModelRecord};
use super::{check, NewDoc, Store};
use crate::docmeta::Metadata;
use crate::{Error, Result};

/// Where a recovery builds the new database, inside the store directory.
pub const STAGING_DIR: &str = "recovering";
/// Written into [`STAGING_DIR`] once the new database is complete; holds
/// the backup directory the swap moves the old files to.
pub const STAGED_MARK: &str = "COMPLETE";

/// What is moved out of the way and into place, in this order.
const SWAPPED: [&str; 4] = [
    c3_migrations::DB_DIR,
    manifest::BASE_FILE,
    manifest::LOG_FILE,
    super::INDEX_DIR,
];

/// Refuse to open a store whose recovery was interrupted while swapping
/// the new database in (it may lack `db/` or hold the old one).
pub fn refuse_interrupted(dir: &Path) -> Result<()> {
    if dir.join(STAGING_DIR).join(STAGED_MARK).exists() {
        return Err(Error::Store(format!(
            "store {}: an interrupted `c3 recover` left its finished result in {}: run `c3 \
             --store {} recover` again to put it in place",
            dir.display(),
            dir.join(STAGING_DIR).display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Re-encodes a document from its source: the loaded model.
pub trait Reencoder {
    /// The model record a store of this model has.
    fn model(&self) -> ModelRecord;
    /// Store `bytes` as `doc` (same source, window, id when free) in
    /// `store`; `Ok(Err(why))` when this document could not be encoded.
    fn store(
        &self,
        store: &Store,
        doc: &ManifestDoc,
        bytes: Vec<u8>,
        mtime_ms: Option<i64>,
    ) -> Result<std::result::Result<DocRecord, String>>;
}

/// [`Reencoder`] over a compressor and its tokenizer (what `c3 ingest` uses).
pub struct ModelReencoder<'a, S> {
    pub model: &'a dyn crate::cascade::Compressor,
    pub sizer: S,
    pub batch_size: usize,
}

impl<S: text_splitter::ChunkSizer + Clone> Reencoder for ModelReencoder<'_, S> {
    fn model(&self) -> ModelRecord {
        ModelRecord {
            fingerprint: self.model.fingerprint(),
            latent_len: self.model.latent_len() as u32,
            hidden_size: self.model.hidden_size() as u32,
        }
    }

    fn store(
        &self,
        store: &Store,
        doc: &ManifestDoc,
        bytes: Vec<u8>,
        mtime_ms: Option<i64>,
    ) -> Result<std::result::Result<DocRecord, String>> {
        let chunker = crate::chunk::Chunker::new(self.sizer.clone(), doc.chunk_tokens as usize)?;
        let opts = crate::ingest::IngestOptions {
            batch_size: self.batch_size.max(1),
            metadata: Some(doc.metadata.clone()),
            ..Default::default()
        };
        let r = crate::ingest::ingest_bytes(
            store,
            self.model,
            &chunker,
            doc.source.clone(),
            bytes,
            mtime_ms,
            Some(doc.id),
            &opts,
        )?;
        if let Some(f) = r.failed.first() {
            return Ok(Err(f.error.clone()));
        }
        match store.find_source(&doc.source)? {
            Some(d) => Ok(Ok(d)),
            None => Ok(Err("nothing was stored".into())),
        }
    }
}

/// What recovery does with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    FromExport,
    Reingest,
    Drop,
}

/// One document of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub id: u64,
    pub source: String,
    pub content_hash: String,
    pub action: Action,
    /// Why this action (what is damaged, where the data comes from).
    pub detail: String,
    #[serde(skip)]
    from: From,
    /// The metadata it gets back: the manifest's (what was committed), or
    /// the database's or the export's where the manifest is gone.
    #[serde(skip)]
    metadata: Metadata,
}

/// Where a planned document's data comes from.
#[derive(Debug, Clone)]
enum From {
    Store(DocRecord),
    Export(ExportDoc),
    Source(ManifestDoc, PathBuf),
    Nowhere,
}

/// What [`plan`] found and would do.
#[derive(Debug, Serialize)]
pub struct Plan {
    pub store: PathBuf,
    /// Whether anything is wrong (else there is nothing to do).
    pub damaged: bool,
    /// What is wrong with the store as a whole (manifest, database).
    pub problems: Vec<String>,
    /// `None` when the database could not be opened.
    pub database_readable: bool,
    pub model: Option<String>,
    pub documents: Vec<Planned>,
    /// An earlier recovery that only needs its final moves.
    pub finishes_interrupted: bool,
    #[serde(skip)]
    model_record: Option<ModelRecord>,
    #[serde(skip)]
    export: Option<PathBuf>,
}

impl Plan {
    pub fn count(&self, a: Action) -> usize {
        self.documents.iter().filter(|d| d.action == a).count()
    }
}

/// What [`apply`] did.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub store: PathBuf,
    /// Where the damaged database, manifest and index were moved.
    pub backup: Option<PathBuf>,
    pub documents: Vec<Planned>,
    pub kept: usize,
    pub from_export: usize,
    pub reingested: usize,
    pub dropped: usize,
}

fn hex_of(hash: &[u8; 32]) -> String {
    export::hex(hash)
}

/// Look at the store in `dir` (and the export) and decide, writing nothing.
pub fn plan(dir: &Path, from_export: Option<&Path>) -> Result<Plan> {
    let mut p = Plan {
        store: dir.to_path_buf(),
        damaged: false,
        problems: Vec::new(),
        database_readable: false,
        model: None,
        documents: Vec::new(),
        finishes_interrupted: dir.join(STAGING_DIR).join(STAGED_MARK).exists(),
        model_record: None,
        export: from_export.map(Path::to_path_buf),
    };
    if p.finishes_interrupted {
        p.damaged = true;
        p.problems.push(
            "an earlier `c3 recover` was interrupted while putting its result in place".into(),
        );
        return Ok(p);
    }
    if !dir.join(c3_migrations::DB_DIR).is_dir() && !dir.join(manifest::BASE_FILE).exists() {
        return Err(Error::NoStore {
            dir: dir.to_path_buf(),
        });
    }
    // What the store should hold.
    let expected: Option<BTreeMap<u64, ManifestDoc>> = match manifest::load(dir) {
        Loaded::Present(r) => {
            p.model = r.state.model.clone();
            Some(r.state.docs)
        }
        Loaded::Absent => {
            p.problems.push("the store has no manifest".into());
            None
        }
        Loaded::Unreadable(what) => {
            p.problems
                .push(format!("the manifest is unreadable: {what}"));
            None
        }
    };
    // What the database holds, checked document by document.
    let mut intact: BTreeMap<u64, DocRecord> = BTreeMap::new();
    let mut intact_meta: BTreeMap<u64, Metadata> = BTreeMap::new();
    let mut broken: BTreeMap<u64, String> = BTreeMap::new();
    match Store::open_existing(dir) {
        Ok(store) => {
            p.database_readable = true;
            if let Ok(meta) = store.meta() {
                if let Some(m) = meta.model {
                    p.model.get_or_insert(m.fingerprint.clone());
                    p.model_record = Some(m);
                }
            }
            for d in store.documents() {
                match d {
                    Ok(d) => {
                        let problems = check::doc_problems(&store, &d);
                        if problems.is_empty() {
                            // doc_problems read it: it decodes.
                            intact_meta.insert(d.id, store.metadata(d.id).unwrap_or_default());
                            intact.insert(d.id, d);
                        } else {
                            broken.insert(d.id, problems.join("; "));
                        }
                    }
                    Err(e) => p.problems.push(super::codec::problem(&e)),
                }
            }
            let report = store.check()?;
            p.problems.extend(report.problems.iter().cloned());
        }
        Err(e) if e.is_store_locked() => return Err(e),
        Err(e @ Error::Migrate(c3_migrations::MigrateError::Newer { .. })) => return Err(e),
        Err(e) => p
            .problems
            .push(format!("the database cannot be opened: {e}")),
    }
    // The export, checked whole before anything is decided.
    let mut from_file: BTreeMap<String, ExportDoc> = BTreeMap::new();
    if let Some(path) = from_export {
        let file = export::verify(path)?;
        if let Some(m) = &p.model_record {
            if file.model() != m {
                return Err(Error::ModelMismatch {
                    store: dir.to_path_buf(),
                    stored: m.label(),
                    loaded: file.model().label(),
                });
            }
        }
        p.model.get_or_insert(file.model().fingerprint.clone());
        p.model_record.get_or_insert(file.model().clone());
        for d in file.docs() {
            from_file.insert(d.source.clone(), d.clone());
        }
    }
    let mut seen_sources = BTreeSet::new();
    let mut planned: BTreeMap<u64, Planned> = BTreeMap::new();
    // Every document the manifest names, then what only the database has.
    let wanted: Vec<ManifestDoc> = match &expected {
        Some(e) => e.values().cloned().collect(),
        None => intact
            .values()
            .map(|d| ManifestDoc::of(d, &intact_meta[&d.id]))
            .collect(),
    };
    for want in &wanted {
        seen_sources.insert(want.source.clone());
        let here = intact
            .values()
            .find(|d| d.source == want.source && hex_of(&d.content_hash) == want.content_hash);
        let entry = if let Some(d) = here {
            planned_doc(want, Action::Keep, "intact".into(), From::Store(d.clone()))
        } else {
            let why = match (intact.get(&want.id), broken.get(&want.id)) {
                (Some(d), _) => format!("the database holds another version ({})", d.source),
                (None, Some(b)) => format!("damaged: {b}"),
                (None, None) if !p.database_readable => "the database cannot be read".into(),
                (None, None) => "missing from the database".into(),
            };
            restore(want, &why, &from_file)
        };
        planned.insert(want.id, entry);
    }
    for d in intact.values() {
        if seen_sources.insert(d.source.clone()) {
            planned.insert(
                d.id,
                planned_doc(
                    &ManifestDoc::of(d, &intact_meta[&d.id]),
                    Action::Keep,
                    "intact (not in the manifest)".into(),
                    From::Store(d.clone()),
                ),
            );
        }
    }
    // Without a manifest the export is the best account of what was there.
    if expected.is_none() {
        for d in from_file.values() {
            if seen_sources.insert(d.source.clone()) {
                let want = manifest_of_export(d);
                let id = if planned.contains_key(&d.id) {
                    planned.keys().max().map_or(0, |m| m + 1)
                } else {
                    d.id
                };
                planned.insert(
                    id,
                    planned_doc(
                        &want,
                        Action::FromExport,
                        "in the export".into(),
                        From::Export(d.clone()),
                    ),
                );
            }
        }
    }
    p.documents = planned.into_values().collect();
    p.damaged = !p.problems.is_empty()
        || !broken.is_empty()
        || p.documents.iter().any(|d| d.action != Action::Keep);
    Ok(p)
}

fn planned_doc(want: &ManifestDoc, action: Action, detail: String, from: From) -> Planned {
    Planned {
        id: want.id,
        source: want.source.clone(),
        content_hash: want.content_hash.clone(),
        action,
        detail,
        from,
        metadata: want.metadata.clone(),
    }
}

fn manifest_of_export(d: &ExportDoc) -> ManifestDoc {
    ManifestDoc {
        id: d.id,
        source: d.source.clone(),
        content_hash: hex_of(&d.content_hash),
        size: d.size,
        chunks: d.chunk_count,
        chunk_tokens: d.chunk_tokens,
        kind: d.kind.clone(),
        metadata: d.metadata.clone().unwrap_or_default(),
    }
}

/// Where a document that is not intact can come back from.
fn restore(want: &ManifestDoc, why: &str, from_file: &BTreeMap<String, ExportDoc>) -> Planned {
    let exported = from_file.get(&want.source);
    if let Some(e) = exported.filter(|e| hex_of(&e.content_hash) == want.content_hash) {
        return planned_doc(
            want,
            Action::FromExport,
            format!("{why}; the export holds it"),
            From::Export(e.clone()),
        );
    }
    let path = PathBuf::from(&want.source);
    let source_state = if want.source.starts_with("stdin:") || !path.is_absolute() {
        Err("it came from standard input".to_string())
    } else {
        match std::fs::read(&path) {
            Ok(bytes) if hex_of(blake3::hash(&bytes).as_bytes()) == want.content_hash => Ok(()),
            Ok(_) => Err(format!("its source {} has changed since", path.display())),
            Err(e) => Err(format!(
                "its source {} cannot be read ({e})",
                path.display()
            )),
        }
    };
    match (source_state, exported) {
        (Ok(()), _) => planned_doc(
            want,
            Action::Reingest,
            format!("{why}; its source {} still matches", path.display()),
            From::Source(want.clone(), path),
        ),
        (Err(_), Some(e)) => planned_doc(
            want,
            Action::FromExport,
            format!(
                "{why}; the export holds another version of it (content hash {})",
                &hex_of(&e.content_hash)[..16]
            ),
            From::Export(e.clone()),
        ),
        (Err(s), None) => planned_doc(
            want,
            Action::Drop,
            format!("{why}; it cannot be recovered: {s}, and no export holds it"),
            From::Nowhere,
        ),
    }
}

/// Carry out `plan`. Documents that fail on the way (a source changed since
/// the plan) are dropped and listed.
pub fn apply(plan: Plan, reencoder: Option<&dyn Reencoder>, progress: bool) -> Result<Outcome> {
    let dir = plan.store.clone();
    let mut out = Outcome {
        store: dir.clone(),
        backup: None,
        documents: Vec::new(),
        kept: 0,
        from_export: 0,
        reingested: 0,
        dropped: 0,
    };
    if plan.finishes_interrupted {
        out.backup = Some(finish_swap(&dir)?);
        return Ok(out);
    }
    if !super::access::probe(&dir).writable {
        return Err(Error::ReadOnly {
            dir: dir.clone(),
            why: format!(
                "{} is not writable by this user: recovery needs write access",
                dir.display()
            ),
        });
    }
    let reingest = plan.count(Action::Reingest);
    let model = match (&plan.model_record, reencoder) {
        (_, None) if reingest > 0 => {
            return Err(Error::Input(format!(
                "{reingest} document{} can be encoded again from {} source{}: pass --model (the \
                 store's model {}), or --from-export FILE",
                if reingest == 1 { "" } else { "s" },
                if reingest == 1 { "its" } else { "their" },
                if reingest == 1 { "" } else { "s" },
                plan.model.as_deref().unwrap_or("is unknown")
            )))
        }
        (Some(m), Some(r)) if reingest > 0 && r.model() != *m => {
            return Err(Error::ModelMismatch {
                store: dir.clone(),
                stored: m.label(),
                loaded: r.model().label(),
            })
        }
        (Some(m), _) => Some(m.clone()),
        (None, Some(r)) => Some(r.model()),
        (None, None) => None,
    };
    let old = Store::open_existing(&dir).ok();
    let mut file = match &plan.export {
        Some(p) => Some(ExportFile::open(p)?),
        None => None,
    };
    let staging = dir.join(STAGING_DIR);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(Error::io(&staging))?;
    }
    {
        let new = Store::open(&staging)?;
        if let Some(m) = &model {
            new.bind_model(m)?;
        }
        for doc in plan.documents {
            let mut doc = doc;
            let result = copy_one(&new, old.as_ref(), file.as_mut(), reencoder, &doc);
            match result {
                Ok(Ok(())) => match doc.action {
                    Action::Keep => out.kept += 1,
                    Action::FromExport => out.from_export += 1,
                    Action::Reingest => out.reingested += 1,
                    Action::Drop => out.dropped += 1,
                },
                Ok(Err(why)) => {
                    doc.action = Action::Drop;
                    doc.detail = format!("{}; failed: {why}", doc.detail);
                    out.dropped += 1;
                }
                Err(e) => return Err(e),
            }
            if progress {
                eprintln!(
                    "c3: recover: doc {} {}: {:?}",
                    doc.id,
                    super::shown(&doc.source),
                    doc.action
                );
            }
            out.documents.push(doc);
        }
        new.flush()?;
    }
    drop(old);
    let backup = backup_dir(&dir);
    let mark = staging.join(STAGED_MARK);
    std::fs::write(&mark, backup.to_string_lossy().as_bytes()).map_err(Error::io(&mark))?;
    std::fs::File::open(&staging)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(&staging))?;
    out.backup = Some(finish_swap(&dir)?);
    Ok(out)
}

fn backup_dir(dir: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let root = dir.join(c3_migrations::BACKUP_DIR);
    let mut b = root.join(format!("damaged-{secs}"));
    let mut n = 1;
    while b.exists() {
        b = root.join(format!("damaged-{secs}-{n}"));
        n += 1;
    }
    b
}

/// Move the old files to the backup named in the mark, the staged ones in,
/// then remove the staging directory. Each move happens once: a rerun
/// after an interruption continues with what is left.
fn finish_swap(dir: &Path) -> Result<PathBuf> {
    let staging = dir.join(STAGING_DIR);
    let mark = staging.join(STAGED_MARK);
    let backup = PathBuf::from(
        std::fs::read_to_string(&mark)
            .map_err(Error::io(&mark))?
            .trim()
            .to_string(),
    );
    std::fs::create_dir_all(&backup).map_err(Error::io(&backup))?;
    for name in SWAPPED {
        let (live, staged, kept) = (dir.join(name), staging.join(name), backup.join(name));
        if live.exists() && !kept.exists() {
            std::fs::rename(&live, &kept).map_err(Error::io(&live))?;
        }
        if staged.exists() {
            if live.exists() {
                // Moved aside on an earlier run already: this is the new one's
                // leftover index, or the old one was kept; replace it.
                remove_any(&live)?;
            }
            std::fs::rename(&staged, &live).map_err(Error::io(&staged))?;
        }
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))?;
    std::fs::remove_dir_all(&staging).map_err(Error::io(&staging))?;
    Ok(backup)
}

fn remove_any(p: &Path) -> Result<()> {
    if p.is_dir() {
        std::fs::remove_dir_all(p).map_err(Error::io(p))
    } else {
        std::fs::remove_file(p).map_err(Error::io(p))
    }
}

/// Write one planned document into the new store. `Ok(Err(why))`: it could
/// not be recovered after all.
fn copy_one(
    new: &Store,
    old: Option<&Store>,
    file: Option<&mut ExportFile>,
    reencoder: Option<&dyn Reencoder>,
    doc: &Planned,
) -> Result<std::result::Result<(), String>> {
    match &doc.from {
        From::Nowhere => Ok(Ok(())),
        From::Store(d) => {
            let Some(old) = old else {
                return Ok(Err("the database can no longer be opened".into()));
            };
            let mut w = new.begin(Some(d.id))?;
            for ord in 0..d.chunk_count {
                let copied = old
                    .chunk_record(d.id, ord)
                    .and_then(|c| Ok((c, old.latent_record(d.id, ord)?)));
                match copied {
                    Ok((c, l)) => w.put_raw(&c, &l)?,
                    Err(e) => return Ok(Err(super::codec::problem(&e))),
                }
            }
            w.commit(NewDoc {
                source: d.source.clone(),
                content_hash: d.content_hash,
                size: d.size,
                mtime_ms: d.mtime_ms,
                ingested_at_ms: d.ingested_at_ms,
                kind: d.kind.clone(),
                chunk_tokens: d.chunk_tokens,
                metadata: doc.metadata.clone(),
            })?;
            Ok(Ok(()))
        }
        From::Export(e) => {
            let Some(file) = file else {
                return Ok(Err("no export was given".into()));
            };
            let mut w = new.begin(Some(doc.id))?;
            match file.copy_doc(e, &mut w) {
                Ok(_) => {
                    w.commit(NewDoc {
                        metadata: doc.metadata.clone(),
                        ..e.new_doc()
                    })?;
                    Ok(Ok(()))
                }
                Err(err) => Ok(Err(err.to_string())),
            }
        }
        From::Source(m, path) => {
            let Some(r) = reencoder else {
                return Ok(Err("no model was given".into()));
            };
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => return Ok(Err(format!("cannot read {}: {e}", path.display()))),
            };
            if hex_of(blake3::hash(&bytes).as_bytes()) != m.content_hash {
                return Ok(Err(format!(
                    "{} changed during the recovery",
                    path.display()
                )));
            }
            let mtime = std::fs::metadata(path)
                .ok()
                .and_then(|md| md.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64);
            Ok(r.store(new, m, bytes, mtime)?.map(drop))
        }
    }
}
