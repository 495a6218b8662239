//! Reading an export back into a store.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

use super::{from_st_dtype, io_err, unhex32, DocJson, Header, Transfer, FORMAT, MANIFEST, VERSION};
use crate::store::records::{ChunkRecord, LatentRecord, ModelRecord};
use crate::store::LatentLayout;
use crate::store::{compress_text, latent, NewDoc, Store};
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
    let layout = LatentLayout::of(&model);
    let h = model.hidden_size as u64;
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
                "doc {}: chunk tokens sum to {tokens}, manifest says {}",
                d.id, d.token_count
            )));
        }
        let mut w = store.begin(Some(d.id))?;
        let mut row = 0u64;
        for (ord, &(start, end, tokens)) in d.chunks.iter().enumerate() {
            let piece = text
                .get(start as usize..end as usize)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| bad(format!("doc {} chunk {ord}: range {start}..{end} is not UTF-8 text of the document", d.id)))?;
            let rows = layout.rows(tokens) as u64;
            let data = r.read(&lat_name, row * h * esize, rows * h * esize)?;
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
                shape: vec![rows as u32, model.hidden_size],
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
