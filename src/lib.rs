//! c3: Context Cascade Compression memory.
//!
//! Pipeline: tokenize → chunk → encode → store → retrieve → decode.
//! `model` holds what every family shares (checkpoint loading, the Qwen2 /
//! Qwen3 forward); `encode` + `decode` are the C3 family, `lclm` the LCLM
//! family, `family` detects which one a checkpoint is and loads it behind
//! one interface.
pub mod chunk;
pub mod decode;
pub mod encode;
pub mod error;
pub mod eval;
pub mod family;
pub mod hub;
pub mod ingest;
pub mod lclm;
pub mod merge;
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
