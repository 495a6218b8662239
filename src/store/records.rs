//! Record types persisted in the store (rkyv 0.8 archives; `DocMetaRecord`
//! since schema version 3).
//!
//! Changing a field here changes the on-disk layout: add a migration.

use rkyv::{Archive, Deserialize, Serialize};

/// The model a store's latents belong to.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ModelRecord {
    pub fingerprint: String,
    pub latent_len: u32,
    pub hidden_size: u32,
}

impl ModelRecord {
    /// The model as error messages name it.
    pub fn label(&self) -> crate::error::ModelLabel {
        crate::error::ModelLabel {
            fingerprint: self.fingerprint.clone(),
            latents: Some((self.latent_len, self.hidden_size)),
        }
    }
}

/// Store-wide metadata (`meta` tree, key `store`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaRecord {
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Bound by the first ingest; `None` for a store that has never held latents.
    pub model: Option<ModelRecord>,
}

/// One ingested document (`docs` tree, key = id).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DocRecord {
    pub id: u64,
    /// Canonical path, or `stdin:LABEL`.
    pub source: String,
    /// blake3 of the document bytes.
    pub content_hash: [u8; 32],
    pub size: u64,
    /// File modification time, unix milliseconds (None for stdin).
    pub mtime_ms: Option<i64>,
    pub chunk_count: u32,
    pub token_count: u64,
    /// Unix milliseconds.
    pub ingested_at_ms: i64,
    /// `text`, `markdown` or `code:LANG`.
    pub kind: String,
    /// Window size the document was chunked with.
    pub chunk_tokens: u32,
}

/// One window of a document (`chunks` tree, key = doc id ++ ordinal).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    pub doc_id: u64,
    pub ordinal: u32,
    /// Byte range in the document.
    pub start: u64,
    pub end: u64,
    pub tokens: u32,
    /// zstd frame of the chunk's exact text.
    pub text_zstd: Vec<u8>,
}

/// Raw encoder states of one chunk (`latents` tree, same key as its chunk).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LatentRecord {
    /// `bf16`, `f16` or `f32` (little-endian element bytes in `data`).
    pub dtype: String,
    pub shape: Vec<u32>,
    pub data: Vec<u8>,
}

/// One metadata value as stored.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum StoredValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// One key of a document's metadata.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MetaEntryRecord {
    pub key: String,
    pub value: StoredValue,
}

/// A document's metadata (`doc_meta` tree, key = doc id; schema version
/// 3), keys in sorted order. A document without metadata has no record.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DocMetaRecord {
    pub doc_id: u64,
    pub entries: Vec<MetaEntryRecord>,
}
