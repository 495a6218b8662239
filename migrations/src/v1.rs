//! Version 1: the first store layout.
//!
//! | tree      | key                                  | value                           |
//! |-----------|--------------------------------------|---------------------------------|
//! | `meta`    | `schema_version`                     | u32 BE (see crate docs)         |
//! | `meta`    | `store`                              | rkyv `MetaRecord` (created-at, model) |
//! | `meta`    | `next_doc_id`, `generation`          | u64 BE counters                 |
//! | `docs`    | doc id (u64 BE)                      | rkyv `DocRecord`                |
//! | `sources` | source string (UTF-8)                | doc id (u64 BE)                 |
//! | `chunks`  | doc id (u64 BE) ++ ordinal (u32 BE)  | rkyv `ChunkRecord` (zstd text)  |
//! | `latents` | doc id (u64 BE) ++ ordinal (u32 BE)  | rkyv `LatentRecord` (raw states)|
//!
//! Every rkyv value carries an 8-byte XXH3-64 (little-endian) checksum trailer (version 2
//! adds one to the counters and `sources` entries too: `v2.rs`). Latents live in
//! their own tree so they can be loaded without touching chunk text.

pub const META: &str = crate::META_TREE;
pub const DOCS: &str = "docs";
pub const SOURCES: &str = "sources";
pub const CHUNKS: &str = "chunks";
pub const LATENTS: &str = "latents";

/// Meta key of the store record.
pub const STORE_KEY: &[u8] = b"store";
/// Meta key of the id the next committed document gets.
pub const NEXT_DOC_ID_KEY: &[u8] = b"next_doc_id";
/// Meta key of the change counter, bumped by every committed change.
pub const GENERATION_KEY: &[u8] = b"generation";

/// Create the version-1 trees. Records are written by the program itself.
pub fn create(db: &sled::Db) -> sled::Result<()> {
    for name in [META, DOCS, SOURCES, CHUNKS, LATENTS] {
        db.open_tree(name)?;
    }
    Ok(())
}
