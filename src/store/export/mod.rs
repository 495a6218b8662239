//! Portable export format (`c3 export FILE` / `c3 import FILE`).
//!
//! An export is one [safetensors] file, so any safetensors reader can load
//! the latents. Its header's `__metadata__` is
//! `{"format": "c3-export", "version": "3", "manifest_blake3": HEX}` (the
//! blake3 of the `c3.manifest` bytes) and it holds these tensors, data in
//! this order:
//!
//! - `c3.manifest` — `U8 [M]`: UTF-8 JSON Lines. Line 1 is the header
//!   `{"format":"c3-export","version":3,"model":{"fingerprint":HEX,
//!   "latent_len":32,"hidden_size":1536},"documents":N}`; then one line per
//!   document, in id order: `{"id", "source", "content_hash" (blake3 hex),
//!   "size", "mtime_ms" (or null), "ingested_at_ms", "kind", "chunk_tokens",
//!   "token_count", "latent_dtype", "latents_blake3" (blake3 of the
//!   document's latent bytes, hex), "chunks": [[start, end, tokens], ...],
//!   "metadata" (version 3; absent when the document has none)}`.
//!   Chunk ranges are byte ranges of the document and tile it exactly.
//! - `doc.{id}.text` — `U8 [size]`: the document's exact bytes (UTF-8).
//! - `doc.{id}.latents` — `BF16|F16|F32 [chunks, latent_len, hidden_size]`:
//!   the raw encoder states of each chunk, in the model's dtype.
//!
//! Every byte is covered: the manifest by `manifest_blake3`, each text by
//! its `content_hash`, each document's latents by `latents_blake3`, the
//! header by its own validation. Versions 1 (no `manifest_blake3`, no
//! `latents_blake3`) and 2 (no `metadata`) are still read; version 1's
//! latents are checked for finiteness and shape only.
//!
//! Times are unix milliseconds. Import into an empty store keeps ids, times
//! and bytes, so export → import → export reproduces the file exactly.
//! Import first verifies the whole file, then skips documents whose source
//! is already stored with the same content hash and replaces those whose
//! content differs: a damaged export changes nothing.
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

mod read;
mod write;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::docmeta::Metadata;
use crate::Error;
pub use read::{import, import_verified, verify, ExportDoc, ExportFile};
pub use write::{export, export_docs};

pub(super) const FORMAT: &str = "c3-export";
/// The version written. Versions 1 to 3 are read.
pub(super) const VERSION: u32 = 3;
pub(super) const MANIFEST: &str = "c3.manifest";

#[derive(Serialize, Deserialize)]
pub(super) struct Header {
    pub format: String,
    pub version: u32,
    pub model: ModelJson,
    pub documents: u64,
}

#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub(super) struct ModelJson {
    pub fingerprint: String,
    pub latent_len: u32,
    pub hidden_size: u32,
}

#[derive(Serialize, Deserialize)]
pub(super) struct DocJson {
    pub id: u64,
    pub source: String,
    pub content_hash: String,
    pub size: u64,
    pub mtime_ms: Option<i64>,
    pub ingested_at_ms: i64,
    pub kind: String,
    pub chunk_tokens: u32,
    pub token_count: u64,
    pub latent_dtype: String,
    /// blake3 of the document's latent bytes (version 2 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latents_blake3: Option<String>,
    pub chunks: Vec<(u64, u64, u32)>,
    /// The document's metadata (version 3 on; absent when empty).
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// What an export or import did.
#[derive(Debug, Default, Serialize)]
pub struct Transfer {
    pub documents: u64,
    pub chunks: u64,
    pub skipped_unchanged: u64,
    /// Documents whose text was stored already, with other metadata: only
    /// their metadata was replaced.
    pub metadata_updated: u64,
    pub bytes: u64,
}

pub(super) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        err: source,
    }
}

pub(super) fn st_dtype(name: &str) -> Option<&'static str> {
    Some(match name {
        "bf16" => "BF16",
        "f16" => "F16",
        "f32" => "F32",
        _ => return None,
    })
}

pub(super) fn from_st_dtype(name: &str) -> Option<&'static str> {
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

pub(super) fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
