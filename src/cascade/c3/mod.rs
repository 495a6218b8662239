//! The C3 family (Context Cascade Compression, arXiv 2511.15244): a Qwen2
//! encoder reads a chunk followed by 32 learned query rows (`Q`); its final
//! states at those rows, through `mm_projector`, replace the `<imgpad>`
//! embeddings of the Qwen2 decoder's prompt.
//!
//! Invariant: this room never imports `cascade::lclm` (nor it this one); what
//! both share lives in `cascade`, `generate`, `model` and `kernels`.
//!
//! - `checkpoint`: the released layout (`config.json`, `llm1/`, tensor names,
//!   fingerprint).
//! - `encoder`: text → 32 raw rows; implements `Compressor`.
//! - `projector`: raw rows → decoder width.
//! - `prompt`: the reconstruction and latent prompt frame.
//! - `decoder`: generation with the release's rules; implements `LatentReader`.
pub mod checkpoint;
pub mod decoder;
pub mod encoder;
pub mod projector;
pub mod prompt;

pub use checkpoint::{C3Checkpoint, ENCODER_DIR};
pub use decoder::C3Decoder;
pub use encoder::{C3Encoder, TRAINED_TOKENS};
