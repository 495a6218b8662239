//! Portable export format (`c3 export FILE` / `c3 import FILE`).
//!
//! An export is one [safetensors] file, so any safetensors reader can load
//! the latents. Its header's `__metadata__` is
//! `{"format": "c3-export", "version": "1"}` and it holds these tensors, data
//! in this order:
//!
//! - `c3.manifest` — `U8 [M]`: UTF-8 JSON Lines. Line 1 is the header
//!   `{"format":"c3-export","version":1,"model":{"fingerprint":HEX,
//!   "latent_len":32,"hidden_size":1536},"documents":N}`; then one line per
//!   document, in id order: `{"id", "source", "content_hash" (blake3 hex),
//!   "size", "mtime_ms" (or null), "ingested_at_ms", "kind", "chunk_tokens",
//!   "token_count", "latent_dtype", "chunks": [[start, end, tokens], ...]}`.
//!   Chunk ranges are byte ranges of the document and tile it exactly.
//! - `doc.{id}.text` — `U8 [size]`: the document's exact bytes (UTF-8).
//! - `doc.{id}.latents` — `BF16|F16|F32 [chunks, latent_len, hidden_size]`:
//!   the raw encoder states of each chunk, in the model's dtype.
//!
//! Times are unix milliseconds. Import into an empty store keeps ids, times
//! and bytes, so export → import → export reproduces the file exactly.
//! Import skips documents whose source is already stored with the same
//! content hash and replaces those whose content differs.
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::records::{ChunkRecord, DocRecord, LatentRecord, ModelRecord};
use super::{compress_text, keys, latent, NewDoc, Store};
use crate::{Error, Result};

const FORMAT: &str = "c3-export";
const VERSION: u32 = 1;
const MANIFEST: &str = "c3.manifest";

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    model: ModelJson,
    documents: u64,
}

#[derive(Serialize, Deserialize, Clone, PartialEq)]
struct ModelJson {
    fingerprint: String,
    latent_len: u32,
    hidden_size: u32,
}

#[derive(Serialize, Deserialize)]
struct DocJson {
    id: u64,
    source: String,
    content_hash: String,
    size: u64,
    mtime_ms: Option<i64>,
    ingested_at_ms: i64,
    kind: String,
    chunk_tokens: u32,
    token_count: u64,
    latent_dtype: String,
    chunks: Vec<(u64, u64, u32)>,
}

/// What an export or import did.
#[derive(Debug, Default, Serialize)]
pub struct Transfer {
    pub documents: u64,
    pub chunks: u64,
    pub skipped_unchanged: u64,
    pub bytes: u64,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn st_dtype(name: &str) -> Option<&'static str> {
    Some(match name {
        "bf16" => "BF16",
        "f16" => "F16",
        "f32" => "F32",
        _ => return None,
    })
}

fn from_st_dtype(name: &str) -> Option<&'static str> {
    Some(match name {
        "BF16" => "bf16",
        "F16" => "f16",
        "F32" => "f32",
        _ => return None,
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Write every document of `store` to `path` (atomically: a temporary file
/// renamed into place).
pub fn export(store: &Store, path: &Path) -> Result<Transfer> {
    let model = store.meta()?.model.ok_or_else(|| {
        Error::Store(format!(
            "store {} is empty: nothing to export",
            store.dir().display()
        ))
    })?;
    // Pass 1: metadata only, to lay out the header.
    let mut manifest = serde_json::to_vec(&Header {
        format: FORMAT.into(),
        version: VERSION,
        model: ModelJson {
            fingerprint: model.fingerprint.clone(),
            latent_len: model.latent_len,
            hidden_size: model.hidden_size,
        },
        documents: 0,
    })
    .map_err(|e| Error::Store(e.to_string()))?;
    manifest.push(b'\n');
    let mut docs = Vec::new();
    let mut lines = Vec::new();
    for d in store.documents() {
        let d = d?;
        let dtype = doc_dtype(store, &d)?;
        let mut chunks = Vec::with_capacity(d.chunk_count as usize);
        for ord in 0..d.chunk_count {
            let c = store.chunk_record(d.id, ord)?;
            chunks.push((c.start, c.end, c.tokens));
        }
        let line = DocJson {
            id: d.id,
            source: d.source.clone(),
            content_hash: hex(&d.content_hash),
            size: d.size,
            mtime_ms: d.mtime_ms,
            ingested_at_ms: d.ingested_at_ms,
            kind: d.kind.clone(),
            chunk_tokens: d.chunk_tokens,
            token_count: d.token_count,
            latent_dtype: dtype.clone(),
            chunks,
        };
        lines.push(serde_json::to_vec(&line).map_err(|e| Error::Store(e.to_string()))?);
        docs.push((d, dtype));
    }
    // Rewrite the header line now that the count is known.
    let mut head: Header =
        serde_json::from_slice(&manifest).map_err(|e| Error::Store(e.to_string()))?;
    head.documents = docs.len() as u64;
    manifest = serde_json::to_vec(&head).map_err(|e| Error::Store(e.to_string()))?;
    manifest.push(b'\n');
    for l in lines {
        manifest.extend_from_slice(&l);
        manifest.push(b'\n');
    }

    let per_chunk = (model.latent_len * model.hidden_size) as u64;
    let mut entries = serde_json::Map::new();
    entries.insert(
        "__metadata__".into(),
        json!({"format": FORMAT, "version": VERSION.to_string()}),
    );
    let mut off = 0u64;
    let mut add = |name: String, dtype: &str, shape: Vec<u64>, len: u64| {
        entries.insert(
            name,
            json!({"dtype": dtype, "shape": shape, "data_offsets": [off, off + len]}),
        );
        off += len;
    };
    add(
        MANIFEST.into(),
        "U8",
        vec![manifest.len() as u64],
        manifest.len() as u64,
    );
    for (d, dtype) in &docs {
        add(format!("doc.{}.text", d.id), "U8", vec![d.size], d.size);
        let esize = latent::dtype_size(dtype).unwrap_or(0) as u64;
        let n = d.chunk_count as u64;
        let st = st_dtype(dtype).unwrap_or("F32");
        add(
            format!("doc.{}.latents", d.id),
            st,
            vec![n, model.latent_len as u64, model.hidden_size as u64],
            n * per_chunk * esize,
        );
    }
    let mut header =
        serde_json::to_vec(&Value::Object(entries)).map_err(|e| Error::Store(e.to_string()))?;
    while header.len() % 8 != 0 {
        header.push(b' ');
    }

    // Pass 2: stream the data.
    let tmp = path.with_extension("c3tmp");
    let f = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut w = BufWriter::new(f);
    let mut t = Transfer::default();
    let write = |w: &mut BufWriter<File>, b: &[u8]| w.write_all(b).map_err(io_err(&tmp));
    write(&mut w, &(header.len() as u64).to_le_bytes())?;
    write(&mut w, &header)?;
    write(&mut w, &manifest)?;
    for (d, dtype) in &docs {
        for ord in 0..d.chunk_count {
            let c = store.chunk_record(d.id, ord)?;
            write(&mut w, store.chunk_text(&c)?.as_bytes())?;
        }
        for ord in 0..d.chunk_count {
            let rec = latent_record(store, d.id, ord)?;
            if &rec.dtype != dtype {
                return Err(Error::Store(format!(
                    "doc {} chunk {ord}: latent dtype {} differs from the document's {dtype}",
                    d.id, rec.dtype
                )));
            }
            write(&mut w, &rec.data)?;
        }
        t.documents += 1;
        t.chunks += d.chunk_count as u64;
    }
    w.flush().map_err(io_err(&tmp))?;
    w.get_ref().sync_all().map_err(io_err(&tmp))?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    t.bytes = 8 + header.len() as u64 + off;
    Ok(t)
}

fn latent_record(store: &Store, doc: u64, ord: u32) -> Result<LatentRecord> {
    let key = keys::chunk_key(doc, ord);
    let v = store
        .latents
        .get(key)
        .map_err(|e| Error::Store(format!("tree `latents`: {e}")))?
        .ok_or_else(|| Error::Store(format!("tree `latents`: doc {doc} chunk {ord} is missing")))?;
    super::codec::decode(c3_migrations::v1::LATENTS, &key, &v)
}

fn doc_dtype(store: &Store, d: &DocRecord) -> Result<String> {
    if d.chunk_count == 0 {
        return Ok("f32".into());
    }
    Ok(latent_record(store, d.id, 0)?.dtype)
}

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

/// Read an export into `store`. The store must be empty or belong to the
/// export's model.
pub fn import(store: &Store, path: &Path) -> Result<Transfer> {
    let mut r = Reader::open(path)?;
    let bad = |what: String| Error::Input(format!("{}: {what}", path.display()));
    let mlen = r.slot(MANIFEST)?.end - r.slot(MANIFEST)?.start;
    let manifest = r.read(MANIFEST, 0, mlen)?;
    let mut lines = manifest.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let head: Header = serde_json::from_slice(lines.next().unwrap_or_default())
        .map_err(|e| bad(format!("manifest header: {e}")))?;
    if head.format != FORMAT || head.version != VERSION {
        return Err(bad(format!(
            "manifest format {} v{} is not supported",
            head.format, head.version
        )));
    }
    let model = ModelRecord {
        fingerprint: head.model.fingerprint.clone(),
        latent_len: head.model.latent_len,
        hidden_size: head.model.hidden_size,
    };
    store.bind_model(&model)?;
    let per_chunk = model.latent_len as u64 * model.hidden_size as u64;
    let mut t = Transfer::default();
    for (i, line) in lines.enumerate() {
        let d: DocJson = serde_json::from_slice(line)
            .map_err(|e| bad(format!("manifest line {}: {e}", i + 2)))?;
        let hash = unhex32(&d.content_hash)
            .ok_or_else(|| bad(format!("doc {}: bad content_hash", d.id)))?;
        if store
            .find_source(&d.source)?
            .is_some_and(|old| old.content_hash == hash)
        {
            t.skipped_unchanged += 1;
            continue;
        }
        let text_name = format!("doc.{}.text", d.id);
        let lat_name = format!("doc.{}.latents", d.id);
        let text = r.read(&text_name, 0, d.size)?;
        if blake3::hash(&text).as_bytes() != &hash {
            return Err(bad(format!(
                "doc {}: text does not match its content hash",
                d.id
            )));
        }
        let esize = latent::dtype_size(&d.latent_dtype).ok_or_else(|| {
            bad(format!(
                "doc {}: unknown latent dtype {}",
                d.id, d.latent_dtype
            ))
        })? as u64;
        let slot = r.slot(&lat_name)?;
        let want_shape = vec![
            d.chunks.len() as u64,
            model.latent_len as u64,
            model.hidden_size as u64,
        ];
        if from_st_dtype(&slot.dtype) != Some(d.latent_dtype.as_str()) || slot.shape != want_shape {
            return Err(bad(format!(
                "tensor `{lat_name}` has dtype/shape {} {:?}, expected {} {want_shape:?}",
                slot.dtype, slot.shape, d.latent_dtype
            )));
        }
        let tokens: u64 = d.chunks.iter().map(|c| c.2 as u64).sum();
        if tokens != d.token_count {
            return Err(bad(format!(
                "doc {}: chunk tokens sum to {tokens}, manifest says {}",
                d.id, d.token_count
            )));
        }
        let mut w = store.begin(Some(d.id))?;
        for (ord, &(start, end, tokens)) in d.chunks.iter().enumerate() {
            let piece = text
                .get(start as usize..end as usize)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| bad(format!("doc {} chunk {ord}: range {start}..{end} is not UTF-8 text of the document", d.id)))?;
            let data = r.read(&lat_name, ord as u64 * per_chunk * esize, per_chunk * esize)?;
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
                shape: vec![model.latent_len, model.hidden_size],
                data,
            };
            w.put_raw(&chunk, &lat)?;
        }
        let rec = w.commit(NewDoc {
            source: d.source.clone(),
            content_hash: hash,
            size: d.size,
            mtime_ms: d.mtime_ms,
            ingested_at_ms: d.ingested_at_ms,
            kind: d.kind.clone(),
            chunk_tokens: d.chunk_tokens,
        })?;
        t.documents += 1;
        t.chunks += rec.chunk_count as u64;
    }
    t.bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(t)
}
