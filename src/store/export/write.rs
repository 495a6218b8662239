//! Writing an export: lay out the header from metadata, then stream data.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{json, Value};

use super::{
    hex, io_err, st_dtype, DocJson, Header, ModelJson, Transfer, FORMAT, MANIFEST, VERSION,
};
use crate::store::records::DocRecord;
use crate::store::LatentLayout;
use crate::store::{latent, Store};
use crate::{Error, Result};

/// Write every document of `store` to `path` (atomically: a temporary file
/// renamed into place).
pub fn export(store: &Store, path: &Path) -> Result<Transfer> {
    export_docs(store, path, None)
}

/// [`export`] of only the documents `only` lists (ids; `c3 export
/// --where`), or of all of them.
pub fn export_docs(store: &Store, path: &Path, only: Option<&[u64]>) -> Result<Transfer> {
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
    for item in store.documents_with_metadata() {
        let (d, metadata) = item?;
        if only.is_some_and(|ids| !ids.contains(&d.id)) {
            continue;
        }
        let dtype = doc_dtype(store, &d)?;
        let mut chunks = Vec::with_capacity(d.chunk_count as usize);
        let mut latents = blake3::Hasher::new();
        for ord in 0..d.chunk_count {
            let c = store.chunk_record(d.id, ord)?;
            chunks.push((c.start, c.end, c.tokens));
            let rec = store.latent_record(d.id, ord)?;
            if let Some(i) = latent::first_non_finite(&rec.dtype, &rec.data) {
                return Err(Error::NonFinite {
                    what: format!(
                        "store {}: doc {} chunk {ord} (`c3 check` lists every damaged chunk)",
                        store.dir().display(),
                        d.id
                    ),
                    index: i,
                });
            }
            latents.update(&rec.data);
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
            latents_blake3: Some(hex(latents.finalize().as_bytes())),
            chunks,
            metadata,
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

    let layout = LatentLayout::of(&model);
    let mut entries = serde_json::Map::new();
    entries.insert(
        "__metadata__".into(),
        json!({
            "format": FORMAT,
            "version": VERSION.to_string(),
            "manifest_blake3": hex(blake3::hash(&manifest).as_bytes()),
        }),
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
        let h = model.hidden_size as u64;
        // C3: [chunks, latent_len, H]; LCLM (rows vary per chunk): the
        // chunks' rows concatenated, [sum of rows, H].
        let shape = match layout {
            LatentLayout::Fixed { rows } => vec![n, rows as u64, h],
            LatentLayout::Pooled { .. } => {
                let mut rows = 0u64;
                for ord in 0..d.chunk_count {
                    rows += layout.rows(store.chunk_record(d.id, ord)?.tokens) as u64;
                }
                vec![rows, h]
            }
        };
        let len = shape.iter().product::<u64>() * esize;
        add(format!("doc.{}.latents", d.id), st, shape, len);
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
            let rec = store.latent_record(d.id, ord)?;
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

fn doc_dtype(store: &Store, d: &DocRecord) -> Result<String> {
    if d.chunk_count == 0 {
        return Ok("f32".into());
    }
    Ok(store.latent_record(d.id, 0)?.dtype)
}
