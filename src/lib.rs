//! c3: Context Cascade Compression memory.
//!
//! Pipeline: tokenize → chunk → encode → store → retrieve → decode.
//! `model` holds what encode and decode share (checkpoint, Qwen2 forward).
pub mod chunk;
pub mod decode;
pub mod encode;
pub mod error;
pub mod eval;
pub mod ingest;
pub mod model;
pub mod npy;
pub mod options;
pub mod query;
pub mod retrieve;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod tokenize;

pub use error::{Error, Result};
