//! Version 3: per-document metadata.
//!
//! | tree       | key             | value                                   |
//! |------------|-----------------|-----------------------------------------|
//! | `doc_meta` | doc id (u64 BE) | rkyv `DocMetaRecord` + XXH3-64 trailer  |
//!
//! A document's metadata (a flat object of string, number and bool values)
//! lives beside its `docs` record, written and removed in the same
//! transaction; a document without metadata has no entry, so existing
//! documents need no rewrite and the step only creates the tree. The
//! version still changes: a program that does not know the tree would
//! leave a removed or replaced document's metadata behind, and must
//! refuse the store (it is newer than it supports).

/// The tree of document metadata.
pub const DOC_META: &str = "doc_meta";

/// The migration step: create the tree (idempotent).
pub fn add_doc_meta(db: &sled::Db) -> sled::Result<()> {
    db.open_tree(DOC_META)?;
    Ok(())
}
