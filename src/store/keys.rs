//! Key layout. Big-endian integers so that sled's byte order is numeric order:
//! a document's chunks are one contiguous, ordered key range.

use c3_migrations::v1;

pub fn doc_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub fn chunk_key(doc: u64, ordinal: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&doc.to_be_bytes());
    k[8..].copy_from_slice(&ordinal.to_be_bytes());
    k
}

/// Decode a document id key.
pub fn parse_doc_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Decode a chunk/latent key into (doc id, ordinal).
pub fn parse_chunk_key(key: &[u8]) -> Option<(u64, u32)> {
    if key.len() != 12 {
        return None;
    }
    let doc = u64::from_be_bytes(key[..8].try_into().ok()?);
    let ord = u32::from_be_bytes(key[8..].try_into().ok()?);
    Some((doc, ord))
}

/// Human-readable key for messages, e.g. `doc 3 chunk 7`.
pub fn describe(tree: &str, key: &[u8]) -> String {
    let shown = match tree {
        t if t == v1::DOCS || t == c3_migrations::v3::DOC_META => {
            parse_doc_key(key).map(|d| format!("doc {d}"))
        }
        t if t == v1::CHUNKS || t == v1::LATENTS => {
            parse_chunk_key(key).map(|(d, o)| format!("doc {d} chunk {o}"))
        }
        _ => std::str::from_utf8(key).ok().map(|s| format!("{s:?}")),
    };
    shown.unwrap_or_else(|| {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}")
    })
}
