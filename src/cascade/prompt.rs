//! A decoder prompt with latent slots: the ids, and where each block's
//! latent rows replace the embeddings of its placeholder ids.

use std::ops::Range;

use crate::generate::token_loop::generate_ids_cached;
use crate::generate::{check_room, GenOptions, StopReason};
use crate::model::{KvCache, Qwen2};
use crate::{Error, Result};
use candle_core::Tensor;

/// Prompt ids plus where each block's latent rows go.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// Index in `ids` of the first latent slot of each block.
    pub latent_starts: Vec<usize>,
    /// Slots of each block (C3: always its latent length; LCLM: the
    /// chunk's pooled rows).
    pub latent_lens: Vec<usize>,
}

impl Prompt {
    /// Latent positions in the prompt.
    pub fn latent_positions(&self) -> usize {
        self.latent_lens.iter().sum()
    }

    /// The memory part of the prompt cut into one segment per block: block
    /// `i`'s segment runs from the end of block `i - 1`'s slots (0 for the
    /// first block: the frame before it is part of it) to the end of its
    /// own slots. So a segment is the frame ids between two blocks (C3:
    /// `</img>`, newline, `<img>`; LCLM: nothing, or `<|memory_end|>`,
    /// newline, `<|memory_start|>` where a document's span begins) followed
    /// by one chunk's latents. What follows the last segment (a closing
    /// marker, the question, the assistant turn) belongs to no segment.
    pub fn segments(&self) -> Vec<Range<usize>> {
        let mut at = 0;
        self.latent_starts
            .iter()
            .zip(&self.latent_lens)
            .map(|(&s, &n)| {
                let r = at..s + n;
                at = s + n;
                r
            })
            .collect()
    }

    /// Embeddings [len, H] of the prompt through `llm`, each block's slots
    /// replaced by its latents (one tensor [slots, H] per block, in order).
    pub fn embeddings(&self, llm: &Qwen2, latents: &[Tensor]) -> Result<Tensor> {
        if latents.len() != self.latent_starts.len() {
            return Err(Error::Input(format!(
                "{} latent blocks for a prompt with {} slots",
                latents.len(),
                self.latent_starts.len()
            )));
        }
        self.embeddings_range(llm, latents, 0, self.ids.len())
    }

    /// Embeddings [to - from, H] of positions `from..to`: `latents` holds
    /// the blocks whose slots end after `from`, in order (those starting at
    /// or after `to` are not read). A block cut by `from` gives its rows
    /// from there on (a stored prefix may end inside a block); one cut by
    /// `to` is an error.
    pub fn embeddings_range(
        &self,
        llm: &Qwen2,
        latents: &[Tensor],
        from: usize,
        to: usize,
    ) -> Result<Tensor> {
        if from >= to || to > self.ids.len() {
            return Err(Error::Input(format!(
                "positions {from}..{to} of a prompt of {}",
                self.ids.len()
            )));
        }
        let mut parts = Vec::with_capacity(2 * latents.len() + 1);
        let mut at = from;
        let mut given = latents.iter();
        for (&start, &len) in self.latent_starts.iter().zip(&self.latent_lens) {
            if start + len <= from {
                continue;
            }
            if start >= to {
                break;
            }
            if start + len > to {
                return Err(Error::Input(format!(
                    "positions {from}..{to} cut the latent block at {start}..{}",
                    start + len
                )));
            }
            let lat = given.next().ok_or_else(|| {
                Error::Input(format!("no latents for the block at position {start}"))
            })?;
            if lat.dims().first() != Some(&len) {
                return Err(Error::Input(format!(
                    "latent block of shape {:?} for {len} slots",
                    lat.dims()
                )));
            }
            if start > at {
                parts.push(llm.embed(&self.ids[at..start])?);
            }
            // Rows before `from` are already in the cache.
            let skip = from.saturating_sub(start);
            parts.push(lat.narrow(0, skip, len - skip)?.to_dtype(llm.dtype())?);
            at = start + len;
        }
        if at < to {
            parts.push(llm.embed(&self.ids[at..to])?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// Generates after this prompt on `llm` (at most `limit` positions),
    /// resumed from the first `cache.len()` positions already in `cache`:
    /// refuses what the positions cannot hold, stops on the first id
    /// `is_stop(id, step)` names or when `on_token` returns `false`, and
    /// says why it stopped. Both families' decoders generate through here;
    /// only their stop rules differ.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn generate_on(
        &self,
        llm: &Qwen2,
        latents: &[Tensor],
        cache: &mut KvCache,
        opts: &GenOptions,
        limit: usize,
        is_stop: impl Fn(u32, usize) -> bool,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<(Vec<u32>, StopReason)> {
        let n = self.ids.len();
        if n >= limit {
            return Err(Error::Input(format!(
                "prompt of {n} positions does not fit the decoder's {limit}"
            )));
        }
        let x = self.embeddings_range(llm, latents, cache.len(), n)?;
        // More new ids than the positions leave is refused, not clamped.
        let max_new = opts.max_new_tokens;
        check_room(max_new, n, limit)?;
        let (mut ended, mut cancelled) = (false, false);
        let ids = generate_ids_cached(llm, &x, &self.ids, cache, max_new, opts, |tok, step| {
            let go_on = on_token(tok);
            let stop = is_stop(tok, step);
            ended |= stop;
            cancelled |= !go_on && !stop;
            Ok(go_on && !stop)
        })?;
        let stop = StopReason::of(ended, cancelled, ids.len(), max_new, n, limit);
        Ok((ids, stop))
    }
}

#[cfg(test)]
mod tests {
    use super::Prompt;

    #[test]
    fn segments_end_at_each_block_and_leave_the_tail_out() {
        let p = Prompt {
            ids: vec![0; 20],
            latent_starts: vec![3, 9],
            latent_lens: vec![4, 2],
        };
        assert_eq!(p.segments(), vec![0..7, 7..11]);
        let none = Prompt {
            ids: vec![0; 5],
            latent_starts: vec![],
            latent_lens: vec![],
        };
        assert!(none.segments().is_empty());
    }
}
