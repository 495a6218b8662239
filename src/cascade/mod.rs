//! Cascade: the two model families side by side, and the one interface the
//! rest of c3 uses to compress text and to read latents.
//!
//! A cascade is an encoder that turns a chunk of text into a few latent rows
//! and a decoder that reads those rows in place of the text. C3 (`c3/`)
//! gives every chunk 32 rows from learned queries and was trained to
//! reconstruct; LCLM (`lclm/`) mean-pools every N encoder states into one row
//! and was trained to answer.
//!
//! Invariants:
//! - Nothing outside this room names a family's encoder or decoder: front
//!   ends and the library's other rooms go through [`Compressor`],
//!   [`LatentReader`], [`AnyEncoder`] and [`AnyDecoder`]. The one exception is
//!   `train/`, C3's trainer, which reads and writes C3's checkpoint layout
//!   (`cascade::c3::checkpoint`) and never names `cascade::lclm`.
//! - `c3/` and `lclm/` never import each other; what both use is here
//!   (`interface`, `prompt`, `text_frame`, `batch`) or in `generate`,
//!   `model` and `kernels`.
//! - Every text a family encodes is plain text: no document, question or
//!   instruction becomes a control id.
//!
//! Files: `interface` (the traits and [`Family`]), `loaded` (detecting and
//! loading either family), `prompt` (a prompt with latent slots),
//! `text_frame` (the chat frame of text prompts), `batch` (padded forwards).
pub mod c3;
pub mod lclm;

mod batch;
mod interface;
mod loaded;
mod prompt;
mod text_frame;

pub use interface::{Compressor, Family, LatentReader};
pub use loaded::{decoder_files, detect, tokenize, AnyDecoder, AnyEncoder, Encoded, TextTokenizer};
pub use prompt::Prompt;
pub use text_frame::{text_budget, text_prompt, Frame, C3_FRAME, SYSTEM};
