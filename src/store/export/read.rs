//! Reading an export back into a store, or document by document (`c3 merge`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

use super::{from_st_dtype, io_err, unhex32, DocJson, Header, Transfer, FORMAT, MANIFEST, VERSION};
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
        if meta.get("version").and_then(Value::as_str) != Some("1") {
            return Err(Error::Input(format!(
                "{}: export format version {} is not supported (expected 1)",
                path.display(),
                meta.get("version").unwrap_or(&Value::Null)
            )));
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
                (start <= end && data_start + end <= total).then_some(Slot {
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
        })
    }

    fn slot(&self, name: &str) -> Result<&Slot> {
        self.slots
            .get(name)
            .ok_or_else(|| Error::Input(format!("export has no tensor `{name}`")))
    }

    fn read(&mut self, name: &str, at: u64, len: u64) -> Result<Vec<u8>> {
        let s = self.slot(name)?;
        if at + len > s.end - s.start {
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
    /// Byte range of its line in the manifest.
    line: (u64, u64),
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
        if head.format != FORMAT || head.version != VERSION {
            return Err(bad(format!(
                "manifest format {} v{} is not supported",
                head.format, head.version
            )));
        }
        let model = ModelRecord {
            fingerprint: head.model.fingerprint,
            latent_len: head.model.latent_len,
            hidden_size: head.model.hidden_size,
        };
        let mut docs = Vec::with_capacity(rest.len());
        for (i, &(at, line)) in rest.iter().enumerate() {
            let d: DocJson = serde_json::from_slice(line)
                .map_err(|e| bad(format!("manifest line {}: {e}", i + 2)))?;
            let content_hash = unhex32(&d.content_hash)
                .ok_or_else(|| bad(format!("doc {}: bad content_hash", d.id)))?;
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

    /// Write `doc`'s chunks and latents through `w` one chunk at a time,
    /// checking them against the manifest and the content hash (the caller
    /// commits). Errors name the export file and the document.
    pub fn copy_doc(&mut self, doc: &ExportDoc, w: &mut DocWriter<'_>) -> Result<u64> {
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
        let layout = LatentLayout::of(&self.model);
        let h = self.model.hidden_size as u64;
        let lat_name = format!("doc.{}.latents", d.id);
        let text_name = format!("doc.{}.text", d.id);
        let esize = latent::dtype_size(&d.latent_dtype)
            .ok_or_else(|| bad(format!("unknown latent dtype {}", d.latent_dtype)))?
            as u64;
        let slot = self.reader.slot(&lat_name)?;
        let want_shape = match layout {
            LatentLayout::Fixed { rows } => vec![d.chunks.len() as u64, rows as u64, h],
            LatentLayout::Pooled { .. } => {
                vec![d.chunks.iter().map(|c| layout.rows(c.2) as u64).sum(), h]
            }
        };
        if from_st_dtype(&slot.dtype) != Some(d.latent_dtype.as_str()) || slot.shape != want_shape {
            return Err(bad(format!(
                "tensor `{lat_name}` has dtype/shape {} {:?}, expected {} {want_shape:?}",
                slot.dtype, slot.shape, d.latent_dtype
            )));
        }
        let tokens: u64 = d.chunks.iter().map(|c| c.2 as u64).sum();
        if tokens != d.token_count {
            return Err(bad(format!(
                "chunk tokens sum to {tokens}, the manifest says {}",
                d.token_count
            )));
        }
        let mut hasher = blake3::Hasher::new();
        let mut row = 0u64;
        let mut bytes = 0u64;
        for (ord, &(start, end, tokens)) in d.chunks.iter().enumerate() {
            if end < start {
                return Err(bad(format!(
                    "chunk {ord}: range {start}..{end} is reversed"
                )));
            }
            let text = self.reader.read(&text_name, start, end - start)?;
            hasher.update(&text);
            let piece = std::str::from_utf8(&text)
                .map_err(|_| bad(format!("chunk {ord}: range {start}..{end} is not UTF-8")))?;
            let rows = layout.rows(tokens) as u64;
            let data = self
                .reader
                .read(&lat_name, row * h * esize, rows * h * esize)?;
            row += rows;
            let chunk = ChunkRecord {
                doc_id: d.id,
                ordinal: ord as u32,
                start,
                end,
                tokens,
                text_zstd: compress_text(piece)?,
            };
            let lat = LatentRecord {
                dtype: d.latent_dtype.clone(),
                shape: vec![rows as u32, self.model.hidden_size],
                data,
            };
            bytes += (end - start) + lat.data.len() as u64;
            w.put_raw(&chunk, &lat)?;
        }
        if hasher.finalize().as_bytes() != &doc.content_hash {
            return Err(bad("text does not match its content hash".into()));
        }
        Ok(bytes)
    }
}

/// Read an export into `store`, one document and one chunk at a time. The
/// store must be empty or belong to the export's model.
pub fn import(store: &Store, path: &Path) -> Result<Transfer> {
    let mut file = ExportFile::open(path)?;
    store.bind_model(file.model())?;
    let mut t = Transfer::default();
    let docs = file.docs().to_vec();
    for d in &docs {
        if store
            .find_source(&d.source)?
            .is_some_and(|old| old.content_hash == d.content_hash)
        {
            t.skipped_unchanged += 1;
            continue;
        }
        let mut w = store.begin(Some(d.id))?;
        file.copy_doc(d, &mut w)?;
        let rec = w.commit(d.new_doc())?;
        t.documents += 1;
        t.chunks += rec.chunk_count as u64;
    }
    t.bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(t)
}
