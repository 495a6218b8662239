//! The token-by-token loop every generator shares: prefill, then pick one
//! id at a time with no-repeat n-gram bans and the chosen sampling, feeding
//! each back through the KV cache.

use super::ngram::NoRepeatNgram;
use super::sampling::Sampler;
use super::GenOptions;
use crate::model::{KvCache, Qwen2};
use crate::Result;
use candle_core::{IndexOp, Tensor};

/// Runs `llm` over the prompt embeddings `x` [T, H] (whose ids, `prompt`,
/// seed the n-gram bans), then generates at most `max_new` ids.
/// `on_token(id, step)` sees each id as it is chosen and returns whether to
/// go on (the caller's stop tokens and streaming live there). Returns the
/// chosen ids, the one that stopped the run included.
pub fn generate_ids(
    llm: &Qwen2,
    x: &Tensor,
    prompt: &[u32],
    max_new: usize,
    opts: &GenOptions,
    on_token: impl FnMut(u32, usize) -> Result<bool>,
) -> Result<Vec<u32>> {
    let mut cache = KvCache::new();
    generate_ids_cached(llm, x, prompt, &mut cache, max_new, opts, on_token)
}

/// [`generate_ids`] resumed from `cache`, which already holds the keys and
/// values of the prompt's first `cache.len()` positions (a stored prefix):
/// `x` [T, H] holds the embeddings of the positions after them only, while
/// `prompt` is still the whole prompt (it seeds the n-gram bans). On return
/// `cache` holds every prompt position (and the generated ones).
pub fn generate_ids_cached(
    llm: &Qwen2,
    x: &Tensor,
    prompt: &[u32],
    cache: &mut KvCache,
    max_new: usize,
    opts: &GenOptions,
    on_token: impl FnMut(u32, usize) -> Result<bool>,
) -> Result<Vec<u32>> {
    let vocab = llm.config().vocab_size;
    // Only the prompt's last row is read: the prefill's last layer computes
    // just that one.
    let h = llm.forward_tail(&x.unsqueeze(0)?, Some(&mut *cache), 1)?;
    let last = h.i((0, 0))?.unsqueeze(0)?;
    let first = llm.logits(&last)?.squeeze(0)?.to_vec1::<f32>()?;
    let next = |tok: u32| -> Result<Vec<f32>> {
        let x = llm.embed(&[tok])?.unsqueeze(0)?;
        let last = llm.forward(&x, Some(&mut *cache))?.squeeze(0)?;
        Ok(llm.logits(&last)?.squeeze(0)?.to_vec1::<f32>()?)
    };
    choose_ids(vocab, first, next, prompt, max_new, opts, on_token)
}

/// The choice loop on its own, for any model that gives the next logits:
/// `first` are the logits after the prompt, `next(id)` feeds one id and
/// gives the logits after it. Bans, penalties and sampling as
/// [`generate_ids`]; logits past `vocab` (padding rows) are never chosen.
pub fn choose_ids(
    vocab: usize,
    first: Vec<f32>,
    mut next: impl FnMut(u32) -> Result<Vec<f32>>,
    prompt: &[u32],
    max_new: usize,
    opts: &GenOptions,
    mut on_token: impl FnMut(u32, usize) -> Result<bool>,
) -> Result<Vec<u32>> {
    let mut ngram = NoRepeatNgram::new(opts.no_repeat_ngram, prompt);
    let mut sampler = Sampler::new(opts.sampling);
    let mut ids: Vec<u32> = Vec::new();
    let penalty = opts.repetition_penalty.unwrap_or(1.0);
    let mut seen = std::collections::HashSet::new();
    let mut logits = first;
    for step in 0..max_new {
        logits.truncate(vocab);
        if penalty != 1.0 {
            penalize(&mut logits, &seen, penalty);
        }
        for b in ngram.banned() {
            if let Some(l) = logits.get_mut(b as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        let Some(tok) = sampler.pick(&logits) else {
            break;
        };
        ids.push(tok);
        seen.insert(tok);
        ngram.push(tok);
        // The last allowed id needs no forward pass after it.
        if !on_token(tok, step)? || step + 1 == max_new {
            break;
        }
        logits = next(tok)?;
    }
    Ok(ids)
}

/// transformers' `RepetitionPenaltyLogitsProcessor`: every distinct id in
/// `seen` has its logit divided by `penalty` when positive, multiplied
/// otherwise.
fn penalize(logits: &mut [f32], seen: &std::collections::HashSet<u32>, penalty: f32) {
    for &id in seen {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::penalize;

    #[test]
    fn penalty_shrinks_positive_and_grows_negative_logits_once_per_id() {
        let mut l = [2.2, -1.0, 0.5, 3.0];
        let seen = [0u32, 1, 9].into_iter().collect();
        penalize(&mut l, &seen, 1.1);
        assert!((l[0] - 2.0).abs() < 1e-6);
        assert!((l[1] + 1.1).abs() < 1e-6);
        assert_eq!(l[2], 0.5);
        assert_eq!(l[3], 3.0);
    }
}
