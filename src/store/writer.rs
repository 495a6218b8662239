//! Writing one document: chunks first, then a single commit transaction.

use c3_migrations::v1;
use candle_core::Tensor;

use super::records::{ChunkRecord, DocRecord, LatentRecord};
use super::{codec, keys, latent, NewDoc, Store};
use crate::{Error, Result};

impl Store {
    /// Start writing a new document. `id` requests a specific id (import);
    /// it must not be below `next_doc_id`.
    pub fn begin(&self, id: Option<u64>) -> Result<DocWriter<'_>> {
        self.check_writable()?;
        let next = self.next_doc_id()?;
        let id = match id {
            Some(id) if id >= next => id,
            _ => next,
        };
        let model = self.meta()?.model.ok_or_else(|| {
            Error::Store(format!(
                "store {} has no model yet: bind one before writing",
                self.dir.display()
            ))
        })?;
        Ok(DocWriter {
            store: self,
            layout: super::LatentLayout::of(&model),
            hidden: model.hidden_size,
            id,
            chunks: 0,
            tokens: 0,
            end: 0,
            committed: false,
        })
    }
}

/// Writes one document's chunks, then commits it atomically.
///
/// Dropping a writer without [`commit`](DocWriter::commit) leaves its chunks
/// invisible; they are swept on the next open.
pub struct DocWriter<'s> {
    store: &'s Store,
    /// How many latent rows the store's model gives a chunk, and their width.
    layout: super::LatentLayout,
    hidden: u32,
    id: u64,
    chunks: u32,
    tokens: u64,
    end: u64,
    committed: bool,
}

impl DocWriter<'_> {
    /// Id the document will have once committed.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Append the next chunk (byte range `start..end` of the document, which
    /// must follow the previous chunk without a gap).
    pub fn put_chunk(
        &mut self,
        start: u64,
        tokens: u32,
        text: &str,
        latent: &Tensor,
    ) -> Result<()> {
        if start != self.end {
            return Err(Error::Store(format!(
                "doc {}: chunk {} starts at byte {start}, previous ended at {}",
                self.id, self.chunks, self.end
            )));
        }
        let end = start + text.len() as u64;
        let rec = ChunkRecord {
            doc_id: self.id,
            ordinal: self.chunks,
            start,
            end,
            tokens,
            text_zstd: compress_text(text)?,
        };
        self.put_raw(&rec, &latent::to_record(latent)?)
    }

    /// Append a chunk record and latent record as they are (import).
    pub fn put_raw(&mut self, chunk: &ChunkRecord, latent: &LatentRecord) -> Result<()> {
        if chunk.ordinal != self.chunks || chunk.start != self.end || chunk.end < chunk.start {
            return Err(Error::Store(format!(
                "doc {}: chunk {} out of order (range {}..{}, expected ordinal {} at byte {})",
                self.id, chunk.ordinal, chunk.start, chunk.end, self.chunks, self.end
            )));
        }
        let shape = vec![self.layout.rows(chunk.tokens), self.hidden];
        if latent.shape != shape
            || latent::expected_len(&latent.dtype, &latent.shape) != Some(latent.data.len())
        {
            return Err(Error::Store(format!(
                "doc {}: chunk {} latent is {} {:?} ({} bytes); the store's model makes {:?}",
                self.id,
                chunk.ordinal,
                latent.dtype,
                latent.shape,
                latent.data.len(),
                shape
            )));
        }
        if let Some(i) = latent::first_non_finite(&latent.dtype, &latent.data) {
            return Err(Error::NonFinite {
                what: format!("doc {} chunk {}", self.id, chunk.ordinal),
                index: i,
            });
        }
        let mut chunk = chunk.clone();
        chunk.doc_id = self.id;
        let key = keys::chunk_key(self.id, chunk.ordinal);
        let s = self.store;
        s.chunks.insert(key, codec::encode(&chunk)?)?;
        s.latents.insert(key, codec::encode(latent)?)?;
        self.chunks += 1;
        self.tokens += chunk.tokens as u64;
        self.end = chunk.end;
        Ok(())
    }

    pub fn chunks_written(&self) -> u32 {
        self.chunks
    }

    /// Bytes of the document covered so far.
    pub fn bytes_written(&self) -> u64 {
        self.end
    }

    /// Make the document visible, replacing any earlier document with the
    /// same source, in one transaction; then flush.
    pub fn commit(mut self, doc: NewDoc) -> Result<DocRecord> {
        if doc.size != self.end {
            return Err(Error::Store(format!(
                "doc {} ({}): chunks cover {} bytes, the document has {}",
                self.id, doc.source, self.end, doc.size
            )));
        }
        let rec = DocRecord {
            id: self.id,
            source: doc.source,
            content_hash: doc.content_hash,
            size: doc.size,
            mtime_ms: doc.mtime_ms,
            chunk_count: self.chunks,
            token_count: self.tokens,
            ingested_at_ms: doc.ingested_at_ms,
            kind: doc.kind,
            chunk_tokens: doc.chunk_tokens,
        };
        let s = self.store;
        let old = s.find_source(&rec.source)?;
        let value = codec::encode(&rec)?;
        let meta_value = if doc.metadata.is_empty() {
            None
        } else {
            Some(codec::encode(&super::metadata::to_record(
                rec.id,
                &doc.metadata,
            ))?)
        };
        // Chunks first reach disk, then the switch: the switch never points
        // at chunks that were lost.
        s.flush()?;
        let rm: Vec<u64> = old.iter().map(|d| d.id).collect();
        let change = s.change(
            None,
            Some(rec.id),
            &[(rec.clone(), doc.metadata.clone())],
            &rm,
        )?;
        let source_value = codec::encode_u64(rec.id);
        s.commit_change(change, |t| {
            if let Some(old) = &old {
                t.remove_doc(old)?;
            }
            t.docs.insert(&keys::doc_key(rec.id), value.clone())?;
            if let Some(m) = &meta_value {
                t.doc_meta.insert(&keys::doc_key(rec.id), m.clone())?;
            }
            t.sources.insert(rec.source.as_bytes(), &source_value[..])?;
            let next = t.counter(v1::NEXT_DOC_ID_KEY)?.max(rec.id + 1);
            t.meta
                .insert(v1::NEXT_DOC_ID_KEY, &codec::encode_u64(next)[..])?;
            t.bump_generation()
        })?;
        self.committed = true;
        Ok(rec)
    }
}

impl Drop for DocWriter<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Best effort: an abandoned writer's chunks are also swept on open.
        for ord in 0..self.chunks {
            let k = keys::chunk_key(self.id, ord);
            let _ = self.store.chunks.remove(k);
            let _ = self.store.latents.remove(k);
        }
    }
}

/// zstd level 3 with a content checksum.
pub fn compress_text(text: &str) -> Result<Vec<u8>> {
    let mut enc =
        zstd::Encoder::new(Vec::new(), 3).map_err(|e| Error::Store(format!("zstd: {e}")))?;
    enc.include_checksum(true)
        .map_err(|e| Error::Store(format!("zstd: {e}")))?;
    std::io::Write::write_all(&mut enc, text.as_bytes())
        .map_err(|e| Error::Store(format!("zstd: {e}")))?;
    enc.finish().map_err(|e| Error::Store(format!("zstd: {e}")))
}
