//! c3: Context Cascade Compression memory.
//!
//! Pipeline: `tokenize` → `chunk` → encode (`cascade`) → `store` →
//! `retrieve` → decode (`cascade`, `generate`), with `query` assembling the
//! last three for a question and `ingest` the first four for a document.
//!
//! Rooms beside the pipeline: `cascade` (the two model families, `c3/` and
//! `lclm/`, behind one interface), `model` (the Qwen forward and checkpoint
//! tensors every family runs on), `kernels` (CPU products and fused ops),
//! `generate` (token choice), `serve` (HTTP), `mcp` (the Model Context
//! Protocol on serve's state), `docmeta` (document metadata and filters), `merge`, `hub`, `eval`, and
//! `term` (escaping what reaches a terminal).
//! ARCHITECTURE.md at the repository root is the map.
pub mod cascade;
pub mod chunk;
pub mod docmeta;
pub mod error;
pub mod eval;
pub mod generate;
pub mod hub;
pub mod ingest;
pub mod kernels;
pub mod kvcache;
pub mod mcp;
pub mod merge;
pub mod model;
pub mod npy;
pub mod options;
pub mod query;
pub mod retrieve;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod term;
pub mod tokenize;
pub mod train;

pub use error::{Error, Result};
