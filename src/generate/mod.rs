//! Generate: choosing tokens, shared by every decoder (both cascade families
//! and the GGUF answer models).
//!
//! Invariant: nothing here knows a model family; a decoder hands in its own
//! forward (`token_loop`) and its own stop rule (the `on_token` callback).
//!
//! - `token_loop`: prefill, then one id at a time through the KV cache.
//! - `sampling`: greedy or seeded temperature / top-k / top-p.
//! - `ngram`: the no-repeat n-gram ban.
//! - `limits`: the one validation of `max_new_tokens` and sampling values
//!   (CLI, HTTP and TUI alike), the room check and why a generation stopped.
//! - this file: the options and result every decoder shares, and the text
//!   clean-up rule of a finished answer.
pub mod limits;
pub mod ngram;
pub mod sampling;
pub mod token_loop;

pub use limits::{check_room, GenRequest, Knob, StopReason};
pub use sampling::Sampling;

/// Default most tokens to generate (the release's `max_new_tokens`).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 4096;
/// The release's `no_repeat_ngram_size`.
pub const NO_REPEAT_NGRAM: usize = 20;

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub max_new_tokens: usize,
    pub no_repeat_ngram: usize,
    pub sampling: Sampling,
    /// transformers' repetition penalty over the ids generated so far (not
    /// the prompt): a logit > 0 is divided by it, others multiplied. `None`:
    /// the model family's default (C3: none; LCLM: 1.1, as its CLI).
    pub repetition_penalty: Option<f32>,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            no_repeat_ngram: NO_REPEAT_NGRAM,
            sampling: Sampling::Greedy,
            repetition_penalty: None,
        }
    }
}

/// What one generation produced.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated ids, the stop token included when one ended the run.
    pub ids: Vec<u32>,
    /// Cleaned text (see [`clean_text`]).
    pub text: String,
    pub prompt_tokens: usize,
    /// Why it ended (a stop id, the limits, the caller).
    pub stop: StopReason,
}

/// The control text the release strips from the end of an answer.
pub const IM_END: &str = "<|im_end|>";

/// The release's text rule for a finished answer: trim, drop one trailing
/// `<|im_end|>`, trim.
pub fn clean_text(text: &str) -> &str {
    let t = text.trim();
    t.strip_suffix(IM_END).unwrap_or(t).trim()
}
