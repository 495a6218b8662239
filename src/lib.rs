//! c3: Context Cascade Compression memory.
//!
//! Pipeline: tokenize → chunk → encode → store → retrieve → decode.
pub mod chunk;
pub mod encode;
pub mod error;
pub mod ingest;
pub mod store;
pub mod tokenize;

pub use error::{Error, Result};
