//! c3: Context Cascade Compression memory.
//!
//! Pipeline: tokenize → chunk → encode → store → retrieve → decode.
pub mod tokenize;
