//! Ingesting one text that came over HTTP, with the rules of `c3 ingest`:
//! unchanged content (same source, same blake3) is a no-op, changed content
//! replaces the document in the commit's single transaction, and until that
//! commit nothing of the new text is visible. Progress is reported and the
//! cancel check runs before every encoder call.

use std::path::Path;

use serde::Serialize;
use text_splitter::ChunkSizer;

use crate::cascade::Compressor;
use crate::chunk::{Chunker, DocKind};
use crate::docmeta::Metadata;
use crate::store::{ModelRecord, NewDoc, Store};
use crate::Error;

/// What happened to the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Added,
    Replaced,
    Unchanged,
    /// The same text: only its metadata was replaced.
    MetadataUpdated,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub action: Action,
    pub document: u64,
    pub source: String,
    pub chunks: u32,
    pub tokens: u64,
}

/// Why the text was not stored.
#[derive(Debug)]
pub enum Stopped {
    /// The cancel check said stop; nothing was committed.
    Cancelled,
    Failed(Error),
}

impl From<Error> for Stopped {
    fn from(e: Error) -> Self {
        Stopped::Failed(e)
    }
}

pub use crate::ingest::check_name;

/// Checks a text for `POST /v1/documents` (what `c3 ingest` refuses for a
/// file named on its command line).
pub fn check_text(text: &[u8]) -> std::result::Result<&str, String> {
    if text.is_empty() {
        return Err("the text is empty".into());
    }
    let s = std::str::from_utf8(text).map_err(|e| {
        format!(
            "the text is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    if s.contains('\0') {
        return Err("the text contains a NUL byte (binary data is not stored)".into());
    }
    Ok(s)
}

/// Stores `text` as the document `source`. `progress(done, total)` runs
/// before each batch of chunks (done = chunks encoded so far) and once at
/// the end; it returns `false` to cancel.
#[allow(clippy::too_many_arguments)]
pub fn ingest_text<S: ChunkSizer>(
    store: &Store,
    model: &dyn Compressor,
    chunker: &Chunker<S>,
    source: &str,
    text: &str,
    metadata: Option<&Metadata>,
    batch: usize,
    progress: &mut dyn FnMut(u64, u64) -> bool,
) -> std::result::Result<Outcome, Stopped> {
    check_name(source).map_err(Error::Input)?;
    check_text(text.as_bytes()).map_err(Error::Input)?;
    store.bind_model(&ModelRecord {
        fingerprint: model.fingerprint(),
        latent_len: model.latent_len() as u32,
        hidden_size: model.hidden_size() as u32,
    })?;
    let hash = *blake3::hash(text.as_bytes()).as_bytes();
    let old = store.find_source(source)?;
    if let Some(d) = old.as_ref().filter(|d| d.content_hash == hash) {
        progress(d.chunk_count as u64, d.chunk_count as u64);
        let retagged = match metadata {
            Some(m) => store.set_metadata(d.id, m)?,
            None => false,
        };
        return Ok(Outcome {
            action: if retagged {
                Action::MetadataUpdated
            } else {
                Action::Unchanged
            },
            document: d.id,
            source: d.source.clone(),
            chunks: d.chunk_count,
            tokens: d.token_count,
        });
    }
    let metadata = match (metadata, &old) {
        (Some(m), _) => m.clone(),
        (None, Some(d)) => store.metadata(d.id)?,
        (None, None) => Metadata::new(),
    };
    let kind = DocKind::from_path(Path::new(source));
    let chunks = chunker.split(text, kind);
    let total = chunks.len() as u64;
    let mut writer = store.begin(None)?;
    let mut done = 0u64;
    for group in chunks.chunks(batch.max(1)) {
        if !progress(done, total) {
            return Err(Stopped::Cancelled);
        }
        let texts: Vec<&str> = group.iter().map(|c| &text[c.start..c.end]).collect();
        let latents = model.compress(&texts)?;
        if latents.len() != texts.len() {
            return Err(Stopped::Failed(Error::Store(format!(
                "encoder returned {} latents for {} chunks",
                latents.len(),
                texts.len()
            ))));
        }
        for (c, l) in group.iter().zip(&latents) {
            writer.put_chunk(c.start as u64, c.tokens as u32, &text[c.start..c.end], l)?;
        }
        done += group.len() as u64;
    }
    if !progress(done, total) {
        return Err(Stopped::Cancelled);
    }
    let rec = writer.commit(NewDoc {
        source: source.to_string(),
        content_hash: hash,
        size: text.len() as u64,
        mtime_ms: None,
        ingested_at_ms: crate::store::now_ms(),
        kind: kind.label(),
        chunk_tokens: chunker.max_tokens() as u32,
        metadata,
    })?;
    Ok(Outcome {
        action: if old.is_some() {
            Action::Replaced
        } else {
            Action::Added
        },
        document: rec.id,
        source: rec.source,
        chunks: rec.chunk_count,
        tokens: rec.token_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_texts() {
        assert!(check_name("notes.md").is_ok());
        assert!(check_name(" ").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(2000)).is_err());
        assert!(check_text(b"").is_err());
        assert!(check_text(b"ok").is_ok());
        let e = check_text(b"ab\xff").unwrap_err();
        assert!(e.contains("offset 2"), "{e}");
        assert!(check_text(b"a\0b").is_err());
    }
}
