//! Reading an export back into a store, or document by document (`c3 merge`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

use super::{from_st_dtype, io_err, unhex32, DocJson, Header, Transfer, FORMAT, MANIFEST, VERSION};
use crate::docmeta::Metadata;
use crate::store::records::{ChunkRecord, LatentRecord, ModelRecord};
use crate::store::LatentLayout;
use crate::store::{compress_text, latent, DocWriter, NewDoc, Store};
use crate::{Error, Result};

/// A tensor's location in an export file.
struct Slot {
    dtype: String,
    shape: Vec<u64>,
    start: u64,
    end: u64,
}

struct Reader {
    file: BufReader<File>,
    data_start: u64,
    slots: BTreeMap<String, Slot>,
    /// The format version in `__metadata__` (1 to 3).
    version: u32,
    /// blake3 of the manifest bytes (version 2).
    manifest_blake3: Option<String>,
}

impl Reader {
    fn open(path: &Path) -> Result<Self> {
        let bad = |what: &str| Error::Input(format!("{}: not a c3 export: {what}", path.display()));
        let f = File::open(path).map_err(io_err(path))?;
        let total = f.metadata().map_err(io_err(path))?.len();
        let mut file = BufReader::new(f);
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(|_| bad("too short"))?;
        let hlen = u64::from_le_bytes(len);
        if hlen > total.saturating_sub(8) || hlen > 1 << 30 {
            return Err(bad("header length out of range"));
        }
        let mut header = vec![0u8; hlen as usize];
        file.read_exact(&mut header).map_err(io_err(path))?;
        let header: serde_json::Map<String, Value> =
            serde_json::from_slice(&header).map_err(|e| bad(&format!("header: {e}")))?;
        let meta = header
            .get("__metadata__")
            .ok_or_else(|| bad("no __metadata__"))?;
        if meta.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(bad("__metadata__.format is not c3-export"));
        }
        let version = match meta.get("version").and_then(Value::as_str) {
            Some("1") => 1,
            Some("2") => 2,
            Some("3") => 3,
            _ => {
                return Err(Error::Input(format!(
                    "{}: export format version {} is not supported (this c3 reads 1 to 3)",
                    path.display(),
                    meta.get("version").unwrap_or(&Value::Null)
                )))
            }
        };
        let manifest_blake3 = meta
            .get("manifest_blake3")
            .and_then(Value::as_str)
            .map(str::to_string);
        if version >= 2 && manifest_blake3.is_none() {
            return Err(bad("__metadata__ has no manifest_blake3"));
        }
        let data_start = 8 + hlen;
        let mut slots = BTreeMap::new();
        for (name, v) in header {
            if name == "__metadata__" {
                continue;
            }
            let parsed = (|| {
                let dtype = v.get("dtype")?.as_str()?.to_string();
                let shape = v
                    .get("shape")?
                    .as_array()?
                    .iter()
                    .map(Value::as_u64)
                    .collect::<Option<Vec<_>>>()?;
                let offs = v.get("data_offsets")?.as_array()?;
                let (start, end) = (offs.first()?.as_u64()?, offs.get(1)?.as_u64()?);
                (start <= end && data_start.checked_add(end)? <= total).then_some(Slot {
                    dtype,
                    shape,
                    start,
                    end,
                })
            })();
            slots.insert(
                name.clone(),
                parsed.ok_or_else(|| bad(&format!("tensor `{name}` entry is invalid")))?,
            );
        }
        Ok(Reader {
            file,
            data_start,
            slots,
            version,
            manifest_blake3,
        })
    }

    fn slot(&self, name: &str) -> Result<&Slot> {
        self.slots
            .get(name)
            .ok_or_else(|| Error::Input(format!("export has no tensor `{name}`")))
    }

    fn read(&mut self, name: &str, at: u64, len: u64) -> Result<Vec<u8>> {
        let s = self.slot(name)?;
        if at.checked_add(len).is_none_or(|e| e > s.end - s.start) {
            return Err(Error::Input(format!(
                "tensor `{name}` is shorter than its manifest says"
            )));
        }
        let pos = self.data_start + s.start + at;
        let mut buf = vec![0u8; len as usize];
        let io = |e| Error::Input(format!("reading tensor `{name}`: {e}"));
        self.file.seek(SeekFrom::Start(pos)).map_err(io)?;
        self.file.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }
}

/// One document of an export, as its manifest line describes it (without
/// the chunk list, which [`ExportFile::copy_doc`] reads again, so that an
/// open export holds per document only this).
#[derive(Debug, Clone)]
pub struct ExportDoc {
    pub id: u64,
    pub source: String,
    pub content_hash: [u8; 32],
    pub size: u64,
    pub mtime_ms: Option<i64>,
    pub ingested_at_ms: i64,
    pub kind: String,
    pub chunk_tokens: u32,
    pub token_count: u64,
    pub chunk_count: u32,
    /// Its metadata; `None` in exports before version 3, which did not
    /// record it (an import then keeps what the store has).
    pub metadata: Option<Metadata>,
    /// Byte range of its line in the manifest.
    line: (u64, u64),
}

/// A document's line checked against the file: where its text and
/// latents are and how each chunk's part is laid out.
struct Layout {
    d: DocJson,
    text_name: String,
    lat_name: String,
    /// Bytes per latent element.
    esize: u64,
    /// Latent rows of each chunk.
    rows: Vec<u64>,
}

impl ExportDoc {
    /// The document record fields a writer's commit takes.
    pub fn new_doc(&self) -> NewDoc {
        NewDoc {
            source: self.source.clone(),
            content_hash: self.content_hash,
            size: self.size,
            mtime_ms: self.mtime_ms,
            ingested_at_ms: self.ingested_at_ms,
            kind: self.kind.clone(),
            chunk_tokens: self.chunk_tokens,
            metadata: self.metadata.clone().unwrap_or_default(),
        }
    }
}

/// An export opened for reading document by document: the header and the
/// manifest's document list are read at open; texts and latents are read
/// one chunk at a time when a document is copied.
pub struct ExportFile {
    path: std::path::PathBuf,
    reader: Reader,
    model: ModelRecord,
    docs: Vec<ExportDoc>,
}

impl ExportFile {
    pub fn open(path: &Path) -> Result<Self> {
        let mut reader = Reader::open(path)?;
        let bad = |what: String| Error::Input(format!("{}: {what}", path.display()));
        let mlen = reader.slot(MANIFEST)?.end - reader.slot(MANIFEST)?.start;
        let manifest = reader.read(MANIFEST, 0, mlen)?;
        if let Some(want) = &reader.manifest_blake3 {
            if super::hex(blake3::hash(&manifest).as_bytes()) != *want {
                return Err(bad(
                    "the manifest (`c3.manifest`) does not match its checksum: the file is damaged"
                        .into(),
                ));
            }
        }
        let mut lines = Vec::new();
        let mut at = 0usize;
        for l in manifest.split(|&b| b == b'\n') {
            if !l.is_empty() {
                lines.push((at, l));
            }
            at += l.len() + 1;
        }
        let Some(((_, first), rest)) = lines.split_first() else {
            return Err(bad("the manifest is empty".into()));
        };
        let head: Header =
            serde_json::from_slice(first).map_err(|e| bad(format!("manifest header: {e}")))?;
        if head.format != FORMAT || head.version != reader.version || head.version > VERSION {
            return Err(bad(format!(
                "manifest format {} v{} is not supported here (the file says version {})",
                head.format, head.version, reader.version
            )));
        }
        let model = ModelRecord {
            fingerprint: head.model.fingerprint,
            latent_len: head.model.latent_len,
            hidden_size: head.model.hidden_size,
        };
        let mut docs: Vec<ExportDoc> = Vec::with_capacity(rest.len());
        let mut sources = std::collections::HashSet::new();
        for (i, &(at, line)) in rest.iter().enumerate() {
            let d: DocJson = serde_json::from_slice(line)
                .map_err(|e| bad(format!("manifest line {}: {e}", i + 2)))?;
            let content_hash = unhex32(&d.content_hash)
                .ok_or_else(|| bad(format!("doc {}: bad content_hash", d.id)))?;
            if docs.last().is_some_and(|p| p.id >= d.id) {
                return Err(bad(format!(
                    "manifest line {}: doc {} does not follow doc {} (ids must increase)",
                    i + 2,
                    d.id,
                    docs.last().map_or(0, |p| p.id)
                )));
            }
            if !sources.insert(d.source.clone()) {
                return Err(bad(format!(
                    "doc {}: source {:?} is listed twice",
                    d.id, d.source
                )));
            }
            if reader.version >= 2 && d.latents_blake3.is_none() {
                return Err(bad(format!("doc {}: no latents_blake3", d.id)));
            }
            if reader.version < 3 && !d.metadata.is_empty() {
                return Err(bad(format!(
                    "doc {}: metadata in a version {} export (it came with version 3)",
                    d.id, reader.version
                )));
            }
            docs.push(ExportDoc {
                id: d.id,
                source: d.source,
                content_hash,
                size: d.size,
                mtime_ms: d.mtime_ms,
                ingested_at_ms: d.ingested_at_ms,
                kind: d.kind,
                chunk_tokens: d.chunk_tokens,
                token_count: d.token_count,
                chunk_count: d.chunks.len() as u32,
                metadata: (reader.version >= 3).then_some(d.metadata),
                line: (at as u64, line.len() as u64),
            });
        }
        if docs.len() as u64 != head.documents {
            return Err(bad(format!(
                "manifest header says {} documents, it lists {}",
                head.documents,
                docs.len()
            )));
        }
        Ok(ExportFile {
            path: path.to_path_buf(),
            reader,
            model,
            docs,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn model(&self) -> &ModelRecord {
        &self.model
    }

    /// Documents in manifest (id) order.
    pub fn docs(&self) -> &[ExportDoc] {
        &self.docs
    }

    /// Check `doc`'s manifest line against the file: tensor dtypes and
    /// shapes, chunk ranges that tile the text, token counts.
    fn layout(&mut self, doc: &ExportDoc) -> Result<Layout> {
        let path = self.path.clone();
        let bad = |what: String| {
            Error::Input(format!(
                "{}: doc {} ({}): {what}",
                path.display(),
                doc.id,
                doc.source
            ))
        };
        let line = self.reader.read(MANIFEST, doc.line.0, doc.line.1)?;
        let d: DocJson = serde_json::from_slice(&line).map_err(|e| bad(e.to_string()))?;
        if d.id != doc.id {
            return Err(bad(format!("its manifest line now says doc {}", d.id)));
        }
        let layout = LatentLayout::of(&self.model);
        let h = self.model.hidden_size as u64;
        let lat_name = format!("doc.{}.latents", d.id);
        let text_name = format!("doc.{}.text", d.id);
        let esize = latent::dtype_size(&d.latent_dtype)
            .ok_or_else(|| bad(format!("unknown latent dtype {}", d.latent_dtype)))?
            as u64;
        let rows: Vec<u64> = d.chunks.iter().map(|c| layout.rows(c.2) as u64).collect();
        let want_shape = match layout {
            LatentLayout::Fixed { rows } => vec![d.chunks.len() as u64, rows as u64, h],
            LatentLayout::Pooled { .. } => vec![rows.iter().sum(), h],
        };
        let want_bytes = want_shape
            .iter()
            .try_fold(esize, |n, &x| n.checked_mul(x))
            .ok_or_else(|| bad("latent shape overflows".into()))?;
        let slot = self.reader.slot(&lat_name)?;
        if from_st_dtype(&slot.dtype) != Some(d.latent_dtype.as_str())
            || slot.shape != want_shape
            || slot.end - slot.start != want_bytes
        {
            return Err(bad(format!(
                "tensor `{lat_name}` has dtype/shape {} {:?} ({} bytes), expected {} \
                 {want_shape:?} ({want_bytes} bytes)",
                slot.dtype,
                slot.shape,
                slot.end - slot.start,
                d.latent_dtype
            )));
        }
        let text = self.reader.slot(&text_name)?;
        if text.end - text.start != d.size || text.dtype != "U8" {
            return Err(bad(format!(
                "tensor `{text_name}` holds {} bytes, the document {}",
                text.end - text.start,
                d.size
            )));
        }
        let mut pos = 0u64;
        for (ord, &(start, end, _)) in d.chunks.iter().enumerate() {
            if start != pos || end < start {
                return Err(bad(format!(
                    "chunk {ord}: range {start}..{end} does not continue at byte {pos}"
                )));
            }
            pos = end;
        }
        if pos != d.size {
            return Err(bad(format!("chunks cover {pos} bytes of {}", d.size)));
        }
        let tokens = d
            .chunks
            .iter()
            .try_fold(0u64, |n, c| n.checked_add(c.2 as u64));
        if tokens != Some(d.token_count) {
            return Err(bad(format!(
                "chunk tokens sum to {tokens:?}, the manifest says {}",
                d.token_count
            )));
        }
        Ok(Layout {
            d,
            text_name,
            lat_name,
            esize,
            rows,
        })
    }

    /// Read `doc` whole, one chunk at a time, and check it: its text
    /// against its content hash and as UTF-8, its latents against their
    /// checksum (version 2) and for finiteness. Writes nothing.
    pub fn verify_doc(&mut self, doc: &ExportDoc) -> Result<()> {
        self.walk_doc(doc, &mut |_, _, _| Ok(()))
    }

    /// Write `doc`'s chunks and latents through `w` one chunk at a time,
    /// with the checks of [`ExportFile::verify_doc`] (the caller commits
    /// only when this returns `Ok`). Errors name the export file and the
    /// document. Returns the bytes copied.
    pub fn copy_doc(&mut self, doc: &ExportDoc, w: &mut DocWriter<'_>) -> Result<u64> {
        let mut bytes = 0u64;
        self.walk_doc(doc, &mut |chunk, lat, len| {
            bytes += len;
            w.put_raw(chunk, lat)
        })?;
        Ok(bytes)
    }

    /// Read and check `doc` chunk by chunk, handing each chunk and latent
    /// record (and its bytes) to `each`.
    fn walk_doc(
        &mut self,
        doc: &ExportDoc,
        each: &mut dyn FnMut(&ChunkRecord, &LatentRecord, u64) -> Result<()>,
    ) -> Result<()> {
        let path = self.path.clone();
        let bad = |what: String| {
            Error::Input(format!(
                "{}: doc {} ({}): {what}",
                path.display(),
                doc.id,
                doc.source
            ))
        };
        let l = self.layout(doc)?;
        let h = self.model.hidden_size as u64;
        let mut hasher = blake3::Hasher::new();
        let mut lat_hasher = blake3::Hasher::new();
        let mut row = 0u64;
        for (ord, (&(start, end, tokens), &rows)) in l.d.chunks.iter().zip(&l.rows).enumerate() {
            let text = self.reader.read(&l.text_name, start, end - start)?;
            hasher.update(&text);
            let piece = std::str::from_utf8(&text)
                .map_err(|_| bad(format!("chunk {ord}: range {start}..{end} is not UTF-8")))?;
            let len = rows * h * l.esize;
            let data = self.reader.read(&l.lat_name, row * h * l.esize, len)?;
            row += rows;
            lat_hasher.update(&data);
            if let Some(i) = latent::first_non_finite(&l.d.latent_dtype, &data) {
                return Err(Error::NonFinite {
                    what: format!(
                        "{}: doc {} ({}) chunk {ord}",
                        path.display(),
                        doc.id,
                        doc.source
                    ),
                    index: i,
                });
            }
            let chunk = ChunkRecord {
                doc_id: l.d.id,
                ordinal: ord as u32,
                start,
                end,
                tokens,
                text_zstd: compress_text(piece)?,
            };
            let lat = LatentRecord {
                dtype: l.d.latent_dtype.clone(),
                shape: vec![rows as u32, self.model.hidden_size],
                data,
            };
            each(&chunk, &lat, (end - start) + len)?;
        }
        if hasher.finalize().as_bytes() != &doc.content_hash {
            return Err(bad("text does not match its content hash".into()));
        }
        if let Some(want) = &l.d.latents_blake3 {
            if super::hex(lat_hasher.finalize().as_bytes()) != *want {
                return Err(bad(
                    "latents do not match their checksum (latents_blake3): the file is damaged"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

/// Open an export and check all of it (every document's text and latents)
/// without writing anything: what `c3 import` does before it decides
/// anything.
pub fn verify(path: &Path) -> Result<ExportFile> {
    let mut file = ExportFile::open(path)?;
    for d in file.docs().to_vec() {
        file.verify_doc(&d)?;
    }
    Ok(file)
}

/// Read an export into `store`, one document and one chunk at a time. The
/// store must be empty or belong to the export's model.
pub fn import(store: &Store, path: &Path) -> Result<Transfer> {
    let mut file = verify(path)?;
    import_verified(store, &mut file)
}

/// [`import`] of a file [`verify`] has checked.
pub fn import_verified(store: &Store, file: &mut ExportFile) -> Result<Transfer> {
    let path = file.path().to_path_buf();
    store.check_writable()?;
    store.bind_model(file.model())?;
    let mut t = Transfer::default();
    let docs = file.docs().to_vec();
    for d in &docs {
        let old = store.find_source(&d.source)?;
        if let Some(old) = old.as_ref().filter(|o| o.content_hash == d.content_hash) {
            // Same text: only the metadata may have changed.
            match &d.metadata {
                Some(m) if store.set_metadata(old.id, m)? => t.metadata_updated += 1,
                _ => t.skipped_unchanged += 1,
            }
            continue;
        }
        // An export without metadata (before version 3) keeps what a
        // replaced document had.
        let metadata = match (&d.metadata, &old) {
            (Some(m), _) => m.clone(),
            (None, Some(o)) => store.metadata(o.id)?,
            (None, None) => Metadata::new(),
        };
        let mut w = store.begin(Some(d.id))?;
        file.copy_doc(d, &mut w)?;
        let rec = w.commit(NewDoc {
            metadata,
            ..d.new_doc()
        })?;
        t.documents += 1;
        t.chunks += rec.chunk_count as u64;
    }
    t.bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(t)
}
