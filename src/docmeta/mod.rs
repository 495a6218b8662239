//! Per-document metadata and the filters that select documents by it.
//!
//! A document's metadata is a flat object of string, number and bool values
//! ([`Metadata`]), set when it is ingested (`--meta key=value`, an HTTP or
//! MCP `metadata` object) and kept with it in the store, its exports and
//! merges. A [`Filter`] is a list of conditions on keys, all of which must
//! hold (`--where key=value` repeated; a `where` JSON object over HTTP and
//! MCP).
//!
//! Invariant: every [`Metadata`] value went through [`Metadata::insert`]'s
//! checks (key syntax, sizes, no control characters, finite numbers),
//! whether it came from a flag, a request, the store or an export.
//! Invariant: a condition holds only for a document that has its key; so a
//! filter on a key no document has selects nothing.

mod filter;
mod value;

pub use filter::{Cond, Filter, Op};
pub use value::{MetaValue, Metadata, MAX_KEYS, MAX_KEY_BYTES, MAX_STRING_BYTES, MAX_TOTAL_BYTES};
