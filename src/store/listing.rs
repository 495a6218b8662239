//! A document as every front end lists it (`c3 ls --json`, `GET
//! /v1/documents`, MCP `list`): one JSON shape in one place.

use serde_json::{json, Value};

use super::export::hex;
use super::records::DocRecord;
use crate::docmeta::Metadata;

/// Unix milliseconds as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The document's fields and its metadata.
pub fn doc_json(d: &DocRecord, metadata: &Metadata) -> Value {
    json!({
        "id": d.id,
        "source": d.source,
        "chunks": d.chunk_count,
        "bytes": d.size,
        "tokens": d.token_count,
        "kind": d.kind,
        "content_hash": hex(&d.content_hash),
        "mtime_ms": d.mtime_ms,
        "ingested_at": rfc3339(d.ingested_at_ms),
        "chunk_tokens": d.chunk_tokens,
        "metadata": metadata,
    })
}
