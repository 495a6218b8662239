//! The LCLM cascade family ("End-to-End Context Compression at Scale",
//! arXiv 2606.09659): a Qwen3 encoder reads memory text in windows of W
//! tokens, every N final states are mean-pooled into one latent, an MLP
//! adapter maps it to the decoder's width, and a Qwen3 decoder trained for
//! answering reads one latent per position. Beside the C3 family
//! (`cascade::c3`); both run on the shared Qwen forward in `model`.
//!
//! Invariant: this room never imports `cascade::c3` (nor it this one).
//!
//! Modules: `config` (model_config.json), `checkpoint` (layout, tokenizers,
//! memory ids, fingerprint), `adapter`, `encoder` (windows + pooling),
//! `decoder` (prompt + generation).

pub mod adapter;
pub mod checkpoint;
pub mod config;
pub mod decoder;
pub mod encoder;

pub use checkpoint::{is_lclm_dir, LclmCheckpoint, MemoryIds};
pub use config::LclmConfig;
pub use decoder::LclmDecoder;
pub use encoder::LclmEncoder;
