//! The memory store: documents, chunk texts and latents in an embedded sled
//! database under one directory (layout: `c3_migrations::v1`, `v2`), and
//! the manifest beside it that says what the database should hold.
//!
//! Writes follow one rule: a document becomes visible only through the
//! single transaction that inserts its `docs` record, so a crash at any
//! moment leaves either the old document or the new one, never a mix.
//! Chunks written for a document that never committed carry an id at or
//! above `next_doc_id` and are swept when the store is next opened.
//!
//! Invariant: every commit is announced in the manifest before sled can
//! have it on disk (`manifest/`), and opening compares the two before
//! anything is written; a store that does not match its manifest is opened
//! read-only ([`Error::Damaged`]) until `c3 recover` repairs it, so no
//! ingest, removal or index refresh overwrites the evidence.
//!
//! Invariant: every call into sled runs behind the panic guard (`tree.rs`):
//! damaged files give an error naming the database file, never a panic.

pub mod access;
mod check;
mod codec;
pub mod export;
mod keys;
pub mod latent;
pub mod layout;
pub mod listing;
pub mod manifest;
mod metadata;
mod open;
pub mod records;
pub mod recover;
mod tree;
mod txn;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use c3_migrations::v1;
use candle_core::Tensor;

pub use check::CheckReport;
pub use layout::LatentLayout;
pub use manifest::{Damage, LostDoc};
pub use metadata::Selection;
pub use records::{ChunkRecord, DocRecord, LatentRecord, MetaRecord, ModelRecord};
pub use writer::{compress_text, DocWriter};

use crate::docmeta::Metadata;
use crate::{Error, Result};
use tree::Tree;

/// The search index's directory in the store (derived data, owned by
/// `retrieve::index`; named here so recovery can move it aside).
pub const INDEX_DIR: &str = "bm25";

/// Meta key of the manifest id the database belongs with (sealed bytes).
pub(crate) const MANIFEST_ID_KEY: &[u8] = b"manifest_id";

/// Why a store refuses writes.
#[derive(Debug)]
enum ReadOnly {
    /// The database does not match its manifest.
    Damaged,
    /// This process cannot write the directory (the store was opened
    /// from a private copy), with why.
    NotWritable(String),
}

/// An open store. Only one process can hold a store open at a time (sled
/// locks the database).
pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    meta: Tree,
    docs: Tree,
    sources: Tree,
    chunks: Tree,
    latents: Tree,
    /// Documents' metadata (schema version 3); `None` only for an older
    /// store opened without migrating (damaged, or from a read-only
    /// copy), whose documents have none.
    doc_meta: Option<Tree>,
    /// `None`: writable.
    read_only: Option<ReadOnly>,
    /// What opening found wrong (then `read_only` is `Damaged`).
    damage: Option<Damage>,
    /// The database is at schema version 1 (a damaged store is not
    /// migrated): its integers have no checksums.
    legacy: bool,
    /// The manifest, for a writable store.
    journal: Mutex<Option<manifest::Journal>>,
    /// The private copy a read-only store was opened from.
    _copy: Option<access::PrivateCopy>,
}

/// A source for a message: quoted, control characters escaped.
pub fn shown(source: &str) -> String {
    format!("{source:?}")
}

/// Current time in unix milliseconds. `SOURCE_DATE_EPOCH` (seconds) pins it,
/// which makes exports of separate runs byte-identical.
pub fn now_ms() -> i64 {
    if let Some(secs) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
    {
        return secs * 1000;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Summary counts of a store.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub documents: u64,
    pub chunks: u64,
    pub text_bytes: u64,
    pub text_tokens: u64,
    pub latent_tokens: u64,
    /// text tokens / latent tokens (0 for an empty store).
    pub compression_ratio: f64,
    pub bytes_on_disk: u64,
    pub generation: u64,
}

/// Fields of a document record that the writer does not compute itself.
#[derive(Debug, Clone)]
pub struct NewDoc {
    pub source: String,
    pub content_hash: [u8; 32],
    pub size: u64,
    pub mtime_ms: Option<i64>,
    pub ingested_at_ms: i64,
    pub kind: String,
    pub chunk_tokens: u32,
    /// The document's metadata (written in the same commit).
    pub metadata: Metadata,
}

impl Store {
    /// Open (creating if needed) the store in `dir`, upgrading an older
    /// schema after a backup and refusing a newer one.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_cache(dir, c3_migrations::DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open`] with sled's page cache capped at `cache_bytes`: a
    /// merge streams through its inputs once and needs little, so N inputs
    /// do not each hold the default cache.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        open::open(dir, cache_bytes)
    }

    /// Open a store that must already exist (for commands that only read
    /// or remove), so a mistyped `--store` does not create an empty one.
    pub fn open_existing(dir: &Path) -> Result<Self> {
        Self::open_existing_with_cache(dir, c3_migrations::DEFAULT_CACHE_BYTES)
    }

    /// [`Store::open_existing`] with [`Store::open_with_cache`]'s cap.
    pub fn open_existing_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self> {
        if !dir.join(c3_migrations::DB_DIR).is_dir() {
            return Err(Error::NoStore {
                dir: dir.to_path_buf(),
            });
        }
        open::open(dir, cache_bytes)
    }

    /// What opening found wrong with the store, if anything: documents its
    /// manifest names that the database lost, a rollback, a missing or
    /// damaged manifest. Such a store refuses writes until `c3 recover`.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    /// Whether writes are allowed (the store is neither damaged nor opened
    /// from a private read-only copy).
    pub fn writable(&self) -> bool {
        self.read_only.is_none()
    }

    /// `Ok` when the store may be written; otherwise the error saying why
    /// not and what to do.
    pub fn check_writable(&self) -> Result<()> {
        match &self.read_only {
            None => Ok(()),
            Some(ReadOnly::Damaged) => Err(Error::Damaged {
                dir: self.dir.clone(),
                summary: self
                    .damage
                    .as_ref()
                    .map(Damage::summary)
                    .unwrap_or_default(),
            }),
            Some(ReadOnly::NotWritable(why)) => Err(Error::ReadOnly {
                dir: self.dir.clone(),
                why: format!(
                    "{why}. Reading works (from a private copy of the database); ingest, \
                     import, rm and recover need write access"
                ),
            }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Make everything written so far durable. A read-only store has
    /// nothing to flush.
    pub fn flush(&self) -> Result<()> {
        if self.read_only.is_some() {
            return Ok(());
        }
        tree::call(&self.dir, "flush", || self.db.flush()).map(drop)
    }

    pub fn meta(&self) -> Result<MetaRecord> {
        let v = self
            .meta
            .get(v1::STORE_KEY)?
            .ok_or_else(|| codec::corrupt(v1::META, v1::STORE_KEY, "missing"))?;
        codec::decode(v1::META, v1::STORE_KEY, &v)
    }

    fn put_meta(&self, rec: &MetaRecord) -> Result<()> {
        self.check_writable()?;
        self.meta.insert(v1::STORE_KEY, codec::encode(rec)?)
    }

    /// Refuses a model whose latents are not the ones this store holds (by
    /// fingerprint); a store that never held latents accepts any model.
    pub fn check_model(&self, fingerprint: &str) -> Result<()> {
        match self.meta()?.model {
            Some(m) if m.fingerprint != fingerprint => Err(Error::ModelMismatch {
                store: self.dir.clone(),
                stored: m.label(),
                loaded: crate::error::ModelLabel {
                    fingerprint: fingerprint.to_string(),
                    latents: None,
                },
            }),
            _ => Ok(()),
        }
    }

    /// Tie the store to `model`, or fail if it already belongs to another.
    pub fn bind_model(&self, model: &ModelRecord) -> Result<()> {
        let mut meta = self.meta()?;
        match &meta.model {
            Some(m) if m == model => Ok(()),
            Some(m) => Err(Error::ModelMismatch {
                store: self.dir.clone(),
                stored: m.label(),
                loaded: model.label(),
            }),
            None => {
                self.check_writable()?;
                meta.model = Some(model.clone());
                let value = codec::encode(&meta)?;
                let change = self.change(Some(model.fingerprint.clone()), None, &[], &[])?;
                self.commit_change(change, |t| {
                    t.meta.insert(v1::STORE_KEY, value.clone())?;
                    t.bump_generation()
                })
            }
        }
    }

    fn counter(&self, key: &[u8]) -> Result<u64> {
        match self.meta.get(key)? {
            None => Ok(0),
            Some(v) => codec::decode_u64(v1::META, key, &v, self.legacy),
        }
    }

    /// Change counter: bumped by every committed change (for derived indexes).
    pub fn generation(&self) -> Result<u64> {
        self.counter(v1::GENERATION_KEY)
    }

    /// Id the next committed document gets.
    pub fn next_doc_id(&self) -> Result<u64> {
        self.counter(v1::NEXT_DOC_ID_KEY)
    }

    pub fn document(&self, id: u64) -> Result<Option<DocRecord>> {
        let key = keys::doc_key(id);
        match self.docs.get(key)? {
            None => Ok(None),
            Some(v) => codec::decode(v1::DOCS, &key, &v).map(Some),
        }
    }

    /// Document currently stored for `source`.
    pub fn find_source(&self, source: &str) -> Result<Option<DocRecord>> {
        let Some(v) = self.sources.get(source.as_bytes())? else {
            return Ok(None);
        };
        let id = codec::decode_u64(v1::SOURCES, source.as_bytes(), &v, self.legacy)?;
        self.document(id)?.map(Some).ok_or_else(|| {
            codec::corrupt(
                v1::SOURCES,
                source.as_bytes(),
                &format!("points to doc {id}, which is missing"),
            )
        })
    }

    /// All documents in id order.
    pub fn documents(&self) -> impl Iterator<Item = Result<DocRecord>> + '_ {
        self.docs.iter().map(|item| {
            let (k, v) = item?;
            codec::decode(v1::DOCS, &k, &v)
        })
    }

    /// Find a document by id or by source (exact, or a path that
    /// canonicalizes to a stored source).
    pub fn resolve(&self, spec: &str) -> Result<DocRecord> {
        if let Ok(id) = spec.parse::<u64>() {
            if let Some(d) = self.document(id)? {
                return Ok(d);
            }
        }
        if let Some(d) = self.find_source(spec)? {
            return Ok(d);
        }
        if let Ok(p) = std::fs::canonicalize(spec) {
            if let Some(d) = self.find_source(&p.to_string_lossy())? {
                return Ok(d);
            }
        }
        Err(Error::NoDocument {
            spec: spec.to_string(),
            store: self.dir.clone(),
        })
    }

    /// Chunk record (text still compressed) of a document.
    pub fn chunk_record(&self, doc: u64, ordinal: u32) -> Result<ChunkRecord> {
        let key = keys::chunk_key(doc, ordinal);
        let v = self
            .chunks
            .get(key)?
            .ok_or_else(|| codec::corrupt(v1::CHUNKS, &key, "missing"))?;
        codec::decode(v1::CHUNKS, &key, &v)
    }

    /// Exact text of a chunk.
    pub fn chunk_text(&self, rec: &ChunkRecord) -> Result<String> {
        let key = keys::chunk_key(rec.doc_id, rec.ordinal);
        let len = rec
            .end
            .checked_sub(rec.start)
            .ok_or_else(|| codec::corrupt(v1::CHUNKS, &key, "byte range is reversed"))?;
        let bytes = codec::unzstd(v1::CHUNKS, &key, &rec.text_zstd, len)?;
        String::from_utf8(bytes).map_err(|_| codec::corrupt(v1::CHUNKS, &key, "text is not UTF-8"))
    }

    /// Raw encoder states of one chunk, `[latent_len, H_enc]` in the stored dtype.
    pub fn latent(&self, doc: u64, ordinal: u32) -> Result<Tensor> {
        let (key, v) = self.latent_value(doc, ordinal)?;
        latent_from_value(&key, &v)
    }

    /// [`Store::latent`] and the blake3 of the record as stored (dtype,
    /// shape, data): what the decoder reads of the chunk, so the prefix
    /// cache keys a chunk's keys and values by it.
    pub fn latent_with_digest(&self, doc: u64, ordinal: u32) -> Result<(Tensor, [u8; 32])> {
        let (key, v) = self.latent_value(doc, ordinal)?;
        let buf = codec::aligned(v1::LATENTS, &key, &v)?;
        let rec = codec::access::<LatentRecord>(v1::LATENTS, &key, &buf)?;
        let shape: Vec<u32> = rec.shape.iter().map(|d| d.to_native()).collect();
        let mut h = blake3::Hasher::new();
        h.update(rec.dtype.as_bytes());
        h.update(&[0]);
        for d in &shape {
            h.update(&d.to_le_bytes());
        }
        h.update(&rec.data);
        let digest = *h.finalize().as_bytes();
        if latent::expected_len(&rec.dtype, &shape) != Some(rec.data.len()) {
            return Err(codec::corrupt(
                v1::LATENTS,
                &key,
                "data length does not match dtype and shape",
            ));
        }
        let t = latent::to_tensor(&rec.dtype, &shape, &rec.data)
            .map_err(|e| codec::corrupt(v1::LATENTS, &key, &e.to_string()))?;
        Ok((t, digest))
    }

    /// The stored bytes of one chunk's latent record, with its key.
    fn latent_value(&self, doc: u64, ordinal: u32) -> Result<([u8; 12], sled::IVec)> {
        let key = keys::chunk_key(doc, ordinal);
        let v = self
            .latents
            .get(key)?
            .ok_or_else(|| codec::corrupt(v1::LATENTS, &key, "missing"))?;
        Ok((key, v))
    }

    /// The stored latent record of one chunk, bytes as they are (export, merge).
    pub fn latent_record(&self, doc: u64, ordinal: u32) -> Result<LatentRecord> {
        let (key, v) = self.latent_value(doc, ordinal)?;
        codec::decode(v1::LATENTS, &key, &v)
    }

    /// Latents of all chunks of a document, in order, read without touching
    /// chunk text.
    pub fn doc_latents(&self, doc: u64) -> Result<Vec<Tensor>> {
        self.latents
            .scan_prefix(keys::doc_key(doc))
            .map(|item| {
                let (k, v) = item?;
                latent_from_value(&k, &v)
            })
            .collect()
    }

    /// Remove a document and its chunks in one transaction. Returns whether
    /// it existed.
    pub fn remove(&self, id: u64) -> Result<bool> {
        self.check_writable()?;
        let Some(doc) = self.document(id)? else {
            return Ok(false);
        };
        let change = self.change(None, None, &[], &[doc.id])?;
        self.commit_change(change, |t| {
            t.remove_doc(&doc)?;
            t.bump_generation()
        })?;
        Ok(true)
    }

    /// Bytes the store directory occupies on disk.
    pub fn bytes_on_disk(&self) -> u64 {
        dir_size(&self.dir.join(c3_migrations::DB_DIR))
    }

    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        let layout = self.meta()?.model.map(|m| LatentLayout::of(&m));
        for d in self.documents() {
            let d = d?;
            s.documents += 1;
            s.chunks += d.chunk_count as u64;
            s.text_bytes += d.size;
            s.text_tokens += d.token_count;
            s.latent_tokens += match layout {
                None => 0,
                Some(LatentLayout::Fixed { rows }) => d.chunk_count as u64 * rows as u64,
                // Rows follow each chunk's tokens: read the chunk records.
                Some(l) => {
                    let mut n = 0u64;
                    for ord in 0..d.chunk_count {
                        n += l.rows(self.chunk_record(d.id, ord)?.tokens) as u64;
                    }
                    n
                }
            };
        }
        s.compression_ratio = if s.latent_tokens == 0 {
            0.0
        } else {
            s.text_tokens as f64 / s.latent_tokens as f64
        };
        s.bytes_on_disk = self.bytes_on_disk();
        s.generation = self.generation()?;
        Ok(s)
    }

    /// Verify every record and index; see [`CheckReport`].
    pub fn check(&self) -> Result<CheckReport> {
        check::run(self)
    }

    /// Delete chunks and latents left by documents that never committed.
    fn sweep_uncommitted(&self) -> Result<()> {
        let next = self.next_doc_id()?;
        let from = keys::chunk_key(next, 0);
        let mut swept = false;
        for tree in [&self.chunks, &self.latents] {
            let mut batch = sled::Batch::default();
            for item in tree.range_from(from) {
                let (k, _) = item?;
                batch.remove(k);
                swept = true;
            }
            tree.apply_batch(batch)?;
        }
        if swept {
            self.flush()?;
        }
        Ok(())
    }

    /// The manifest change a commit makes: the generation it reaches, the
    /// model (`model`, else the bound one), `next_doc_id` raised above
    /// `new_id`, documents added and removed.
    fn change(
        &self,
        model: Option<String>,
        new_id: Option<u64>,
        put: &[(DocRecord, Metadata)],
        rm: &[u64],
    ) -> Result<manifest::Change> {
        let next = self.next_doc_id()?;
        let model = match model {
            Some(m) => Some(m),
            None => self.meta()?.model.map(|m| m.fingerprint),
        };
        Ok(manifest::Change {
            generation: self.generation()? + 1,
            next_doc_id: new_id.map_or(next, |id| next.max(id + 1)),
            model,
            put: put
                .iter()
                .map(|(d, m)| manifest::ManifestDoc::of(d, m))
                .collect(),
            rm: rm.to_vec(),
        })
    }

    /// Commit `txn` (which bumps the generation to `change.generation`):
    /// announced in the manifest first, confirmed there once sled flushed.
    fn commit_change<F>(&self, change: manifest::Change, txn: F) -> Result<()>
    where
        F: Fn(&txn::Tx<'_>) -> txn::TxResult<()>,
    {
        self.check_writable()?;
        let mut journal = self
            .journal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = change.generation;
        if let Some(j) = journal.as_mut() {
            j.intent(change)?;
        }
        self.transact(txn)?;
        self.flush()?;
        if let Some(j) = journal.as_mut() {
            j.done(generation)?;
        }
        Ok(())
    }

    /// The manifest's state, for a writable store (tests, `c3 recover`).
    pub fn manifest_state(&self) -> Option<manifest::State> {
        self.journal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .map(|j| j.state().clone())
    }
}

/// Check one stored value as the store reads it: its checksum, its record,
/// and (chunks) its text, (latents) its size and finiteness. For tests that
/// feed the codec arbitrary bytes: any input gives `Ok` or an error naming
/// the tree and key, never a panic.
pub fn verify_value(tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
    match tree {
        t if t == v1::DOCS => codec::decode::<DocRecord>(t, key, value).map(drop),
        t if t == v1::META => codec::decode::<MetaRecord>(t, key, value).map(drop),
        t if t == v1::SOURCES => codec::decode_u64(t, key, value, false).map(drop),
        t if t == v1::CHUNKS => {
            let rec = codec::decode::<ChunkRecord>(t, key, value)?;
            let len = rec
                .end
                .checked_sub(rec.start)
                .ok_or_else(|| codec::corrupt(t, key, "byte range is reversed"))?;
            let bytes = codec::unzstd(t, key, &rec.text_zstd, len)?;
            String::from_utf8(bytes)
                .map(drop)
                .map_err(|_| codec::corrupt(t, key, "text is not UTF-8"))
        }
        t if t == v1::LATENTS => latent_from_value(key, value).map(drop),
        t if t == c3_migrations::v3::DOC_META => metadata::decode(key, value).map(drop),
        other => Err(Error::Input(format!("no tree `{other}` in a c3 store"))),
    }
}

fn latent_from_value(key: &[u8], v: &[u8]) -> Result<Tensor> {
    let buf = codec::aligned(v1::LATENTS, key, v)?;
    let rec = codec::access::<LatentRecord>(v1::LATENTS, key, &buf)?;
    let shape: Vec<u32> = rec.shape.iter().map(|d| d.to_native()).collect();
    if latent::expected_len(&rec.dtype, &shape) != Some(rec.data.len()) {
        return Err(codec::corrupt(
            v1::LATENTS,
            key,
            "data length does not match dtype and shape",
        ));
    }
    if let Some(i) = latent::first_non_finite(&rec.dtype, &rec.data) {
        return Err(codec::corrupt(
            v1::LATENTS,
            key,
            &format!("a non-finite value (NaN or infinity) at element {i}"),
        ));
    }
    latent::to_tensor(&rec.dtype, &shape, &rec.data)
        .map_err(|e| codec::corrupt(v1::LATENTS, key, &e.to_string()))
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
