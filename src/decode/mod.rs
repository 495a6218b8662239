//! Decode: latents (+ a prompt) → text with the C3 decoder.
pub mod decoder;
pub mod ngram;
pub mod prompt;
pub mod sampling;
pub mod token_loop;

pub use decoder::{clean_output, C3Decoder, GenOptions, Generation};
pub use prompt::{build_prompt, Prompt};
pub use sampling::Sampling;
