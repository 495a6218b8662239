//! Questions over a document's latents, straight on the decoder: the chunks
//! around the selected one that fit the decoder's positions, one latent block
//! each, and the question as the instruction. To be replaced by the query
//! API (`c3 ask`) once it lands.

use c3::decode::{build_prompt, C3Decoder, GenOptions};
use c3::store::Store;

/// New tokens an answer may take by default.
pub const ANSWER_TOKENS: usize = 512;

/// Which chunks may be read: those of `doc`, nearest to `around` first.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    pub doc: u64,
    pub chunk_count: u32,
    pub around: u32,
    /// Most new tokens for the answer.
    pub max_new_tokens: usize,
}

/// How many latent blocks fit beside a prompt of `base` positions (no
/// blocks) and an answer, with `per_block` positions each.
pub fn blocks_that_fit(
    max_positions: usize,
    base: usize,
    answer: usize,
    per_block: usize,
) -> usize {
    max_positions.saturating_sub(base + answer) / per_block.max(1)
}

/// A window of `n` ordinals out of `count`, centred on `around` where possible.
pub fn window(count: u32, around: u32, n: usize) -> Vec<u32> {
    let n = (n as u32).min(count);
    let start = around.saturating_sub(n / 2).min(count.saturating_sub(n));
    (start..start + n).collect()
}

/// Answers `question`; `on_chunks` hears the ordinals read before generation
/// starts, `on_token` each generated id (returning `false` stops).
pub fn answer(
    dec: &C3Decoder,
    store: &Store,
    scope: Scope,
    question: &str,
    on_chunks: impl FnOnce(Vec<u32>),
    on_token: impl FnMut(u32) -> bool,
) -> c3::Result<String> {
    let tok = dec.tokenizer();
    let latent_len = dec.latent_len();
    let base = build_prompt(tok, 0, latent_len, question)?.ids.len();
    let one = build_prompt(tok, 1, latent_len, question)?.ids.len();
    let per_block = (one - base) + 1; // + the newline between blocks
    let fit = blocks_that_fit(dec.max_positions(), base, scope.max_new_tokens, per_block);
    let ordinals = window(scope.chunk_count, scope.around, fit);
    if ordinals.is_empty() {
        return Err(c3::Error::Input(
            "no chunk fits the decoder's positions beside the question".into(),
        ));
    }
    let latents = ordinals
        .iter()
        .map(|&o| dec.project(&store.latent(scope.doc, o)?))
        .collect::<c3::Result<Vec<_>>>()?;
    on_chunks(ordinals.clone());
    let prompt = build_prompt(tok, ordinals.len(), latent_len, question)?;
    let opts = GenOptions {
        max_new_tokens: scope.max_new_tokens,
        ..GenOptions::default()
    };
    Ok(dec.generate(&prompt, &latents, &opts, on_token)?.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_centred_and_clamped() {
        assert_eq!(window(10, 5, 3), vec![4, 5, 6]);
        assert_eq!(window(10, 0, 3), vec![0, 1, 2]);
        assert_eq!(window(10, 9, 4), vec![6, 7, 8, 9]);
        assert_eq!(window(3, 1, 100), vec![0, 1, 2]);
        assert!(window(0, 0, 5).is_empty());
    }

    #[test]
    fn fitting_blocks() {
        assert_eq!(blocks_that_fit(1000, 88, 512, 35), 11);
        assert_eq!(blocks_that_fit(100, 88, 512, 35), 0);
    }
}
