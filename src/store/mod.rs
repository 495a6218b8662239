//! The memory store: documents, chunk texts and latents in an embedded sled
//! database under one directory (layout: `c3_migrations::v1`).
//!
//! Writes follow one rule: a document becomes visible only through the single
//! transaction that inserts its `docs` record, so a crash at any moment leaves
//! either the old document or the new one, never a mix. Chunks written for a
//! document that never committed carry an id at or above `next_doc_id` and
//! are swept when the store is next opened.

mod check;
mod codec;
pub mod export;
mod keys;
pub mod latent;
pub mod layout;
pub mod records;
mod txn;
mod writer;

use std::path::{Path, PathBuf};

use c3_migrations::v1;
use candle_core::Tensor;

pub use check::CheckReport;
pub use layout::LatentLayout;
pub use records::{ChunkRecord, DocRecord, LatentRecord, MetaRecord, ModelRecord};
pub use writer::{compress_text, DocWriter};

use crate::{Error, Result};

/// An open store. Only one process can hold a store open at a time (sled
/// locks the database).
pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    docs: sled::Tree,
    sources: sled::Tree,
    chunks: sled::Tree,
    latents: sled::Tree,
}

fn sled_err(tree: &str, e: impl std::fmt::Display) -> Error {
    Error::Store(format!("tree `{tree}`: {e}"))
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
        let opened = c3_migrations::open_cached(dir, cache_bytes)?;
        let db = opened.db;
        let tree = |name: &str| db.open_tree(name).map_err(|e| sled_err(name, e));
        let store = Store {
            dir: dir.to_path_buf(),
            meta: tree(v1::META)?,
            docs: tree(v1::DOCS)?,
            sources: tree(v1::SOURCES)?,
            chunks: tree(v1::CHUNKS)?,
            latents: tree(v1::LATENTS)?,
            db,
        };
        if store
            .meta
            .get(v1::STORE_KEY)
            .map_err(|e| sled_err(v1::META, e))?
            .is_none()
        {
            let rec = MetaRecord {
                created_at_ms: now_ms(),
                model: None,
            };
            store.put_meta(&rec)?;
            store.flush()?;
        }
        store.sweep_uncommitted()?;
        Ok(store)
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
        Self::open_with_cache(dir, cache_bytes)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map_err(|e| Error::Store(format!("flush: {e}")))?;
        Ok(())
    }

    pub fn meta(&self) -> Result<MetaRecord> {
        let v = self
            .meta
            .get(v1::STORE_KEY)
            .map_err(|e| sled_err(v1::META, e))?
            .ok_or_else(|| Error::Store("tree `meta`: key \"store\" is missing".into()))?;
        codec::decode(v1::META, v1::STORE_KEY, &v)
    }

    fn put_meta(&self, rec: &MetaRecord) -> Result<()> {
        self.meta
            .insert(v1::STORE_KEY, codec::encode(rec)?)
            .map_err(|e| sled_err(v1::META, e))?;
        Ok(())
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
                meta.model = Some(model.clone());
                self.put_meta(&meta)?;
                self.flush()
            }
        }
    }

    fn counter(&self, key: &[u8]) -> Result<u64> {
        match self.meta.get(key).map_err(|e| sled_err(v1::META, e))? {
            None => Ok(0),
            Some(v) => {
                let b: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| codec::corrupt(v1::META, key, "counter is not 8 bytes"))?;
                Ok(u64::from_be_bytes(b))
            }
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
        match self.docs.get(key).map_err(|e| sled_err(v1::DOCS, e))? {
            None => Ok(None),
            Some(v) => codec::decode(v1::DOCS, &key, &v).map(Some),
        }
    }

    /// Document currently stored for `source`.
    pub fn find_source(&self, source: &str) -> Result<Option<DocRecord>> {
        let Some(v) = self
            .sources
            .get(source.as_bytes())
            .map_err(|e| sled_err(v1::SOURCES, e))?
        else {
            return Ok(None);
        };
        let id = keys::parse_doc_key(&v)
            .ok_or_else(|| codec::corrupt(v1::SOURCES, source.as_bytes(), "not a doc id"))?;
        self.document(id)?.map(Some).ok_or_else(|| {
            Error::Store(format!(
                "tree `sources` key {source:?} points to doc {id}, which is missing"
            ))
        })
    }

    /// All documents in id order.
    pub fn documents(&self) -> impl Iterator<Item = Result<DocRecord>> + '_ {
        self.docs.iter().map(|item| {
            let (k, v) = item.map_err(|e| sled_err(v1::DOCS, e))?;
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
            .get(key)
            .map_err(|e| sled_err(v1::CHUNKS, e))?
            .ok_or_else(|| {
                Error::Store(format!(
                    "tree `chunks`: doc {doc} chunk {ordinal} is missing"
                ))
            })?;
        codec::decode(v1::CHUNKS, &key, &v)
    }

    /// Exact text of a chunk.
    pub fn chunk_text(&self, rec: &ChunkRecord) -> Result<String> {
        let key = keys::chunk_key(rec.doc_id, rec.ordinal);
        let bytes = zstd::decode_all(rec.text_zstd.as_slice())
            .map_err(|e| codec::corrupt(v1::CHUNKS, &key, &format!("zstd: {e}")))?;
        if bytes.len() as u64 != rec.end - rec.start {
            return Err(codec::corrupt(
                v1::CHUNKS,
                &key,
                "text length differs from its byte range",
            ));
        }
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
            .get(key)
            .map_err(|e| sled_err(v1::LATENTS, e))?
            .ok_or_else(|| {
                Error::Store(format!(
                    "tree `latents`: doc {doc} chunk {ordinal} is missing"
                ))
            })?;
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
                let (k, v) = item.map_err(|e| sled_err(v1::LATENTS, e))?;
                latent_from_value(&k, &v)
            })
            .collect()
    }

    /// Remove a document and its chunks in one transaction. Returns whether
    /// it existed.
    pub fn remove(&self, id: u64) -> Result<bool> {
        let Some(doc) = self.document(id)? else {
            return Ok(false);
        };
        self.transact(|t| {
            t.remove_doc(&doc)?;
            t.bump_generation()
        })?;
        self.flush()?;
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
        for (tree, name) in [(&self.chunks, v1::CHUNKS), (&self.latents, v1::LATENTS)] {
            let mut batch = sled::Batch::default();
            for item in tree.range(from..) {
                let (k, _) = item.map_err(|e| sled_err(name, e))?;
                batch.remove(k);
                swept = true;
            }
            tree.apply_batch(batch).map_err(|e| sled_err(name, e))?;
        }
        if swept {
            self.flush()?;
        }
        Ok(())
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
