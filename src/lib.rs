//! c3: Context Cascade Compression memory.
//!
//! Pipeline: tokenize → chunk → encode → store → retrieve → decode.
pub mod encode;
pub mod error;
pub mod tokenize;

pub use error::{Error, Result};
