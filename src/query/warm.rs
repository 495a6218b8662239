//! `warm`: fill the prefix cache for a selection of documents without a
//! question, so the first question over them is as fast as a second one.
//!
//! The selection is what `ask` reads by default over the same documents
//! (every chunk, in document order, one memory group per document), so its
//! blocks are the prefix of that ask's prompt. When the chunks do not all
//! fit the decoder's positions, the longest run that fits (in document
//! order) is warmed and the rest counted as left out.

use std::time::Instant;

use serde::Serialize;

use super::ask::{read_memory, selected_docs};
use crate::cascade::LatentReader;
use crate::kvcache::PrefixCache;
use crate::store::{LatentLayout, Store};
use crate::{Error, Result};

/// Most positions one warm-up forward prefills: the prefill runs in steps
/// of whole blocks up to this, each step's blocks stored before the next
/// (so an interrupted warm-up keeps what it finished, and a server can
/// cancel between steps).
pub const WARM_STEP: usize = 1024;

/// What to warm.
#[derive(Debug, Clone)]
pub struct WarmRequest {
    /// Documents (ids); empty: every document, as `ask` without `--doc`.
    pub docs: Vec<u64>,
    /// Positions `ask` leaves for the answer (its `--max-new-tokens`), so
    /// the warmed selection is the one `ask` reads.
    pub max_new_tokens: usize,
}

/// What a warm-up did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WarmReport {
    pub documents: usize,
    /// Chunks warmed (their blocks are in the cache now).
    pub chunks: usize,
    /// Chunks of the documents past the positions that fit.
    pub left_out: usize,
    /// Positions of the memory part (every warmed block).
    pub positions: usize,
    /// Positions that were in the cache already.
    pub cached_positions: usize,
    /// Positions prefilled now.
    pub prefilled_positions: usize,
    pub blocks_hit: usize,
    pub blocks_written: usize,
    pub bytes_written: u64,
    /// Block files removed to stay under the cap.
    pub evicted: u64,
    /// Damaged block files found (removed, recomputed).
    pub corrupt: u64,
    /// Stopped before the end (cancelled).
    pub stopped: bool,
    pub ms: f64,
}

/// Fills `cache` for `req`'s selection. `keep_going(done, total)` is asked
/// before each prefill step with the blocks done so far; `false` stops
/// (what is stored stays).
pub fn warm(
    store: &Store,
    reader: &dyn LatentReader,
    cache: &PrefixCache,
    req: &WarmRequest,
    keep_going: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<WarmReport> {
    let t = Instant::now();
    let docs = selected_docs(store, &req.docs)?;
    let layout = store
        .meta()?
        .model
        .map(|m| LatentLayout::of(&m))
        .ok_or_else(|| {
            Error::Input(format!(
                "store {} holds no latents yet (run `c3 ingest` first)",
                store.dir().display()
            ))
        })?;
    let max = reader.max_positions();
    let limit = max
        .checked_sub(req.max_new_tokens)
        .filter(|&l| l > 0)
        .ok_or_else(|| {
            Error::Input(format!(
                "--max-new-tokens {} leaves no room for a prompt in the model's {max} positions",
                req.max_new_tokens
            ))
        })?;
    let (budget, per_block) = reader.latent_budget("", limit)?;
    let mut chosen = Vec::new();
    let (mut cost, mut total) = (0usize, 0usize);
    let mut full = false;
    for d in &docs {
        for ord in 0..d.chunk_count {
            total += 1;
            if full {
                continue;
            }
            let rows = match layout {
                LatentLayout::Fixed { rows } => rows,
                _ => layout.rows(store.chunk_record(d.id, ord)?.tokens),
            } as usize;
            if budget.prompt_len(chosen.len() + 1, cost + per_block + rows) > limit {
                full = true;
                continue;
            }
            cost += per_block + rows;
            chosen.push((d.id, ord));
        }
    }
    let mut report = WarmReport {
        documents: docs.len(),
        chunks: chosen.len(),
        left_out: total - chosen.len(),
        ..WarmReport::default()
    };
    if chosen.is_empty() {
        report.ms = t.elapsed().as_secs_f64() * 1e3;
        return Ok(report);
    }
    let memory = read_memory(store, reader, &chosen, "")?;
    // The memory part alone: what follows the last block is the question's.
    let segs = memory.prompt.segments();
    let end = segs.last().map_or(0, |s| s.end);
    let prompt = &crate::cascade::Prompt {
        ids: memory.prompt.ids[..end].to_vec(),
        latent_starts: memory.prompt.latent_starts.clone(),
        latent_lens: memory.prompt.latent_lens.clone(),
    };
    let keys = cache.keys(prompt, &memory.digests);
    report.positions = end;
    if cache.present(prompt, &keys) == keys.len() {
        // Everything is there: nothing to read or compute.
        report.blocks_hit = keys.len();
        report.cached_positions = end;
        report.ms = t.elapsed().as_secs_f64() * 1e3;
        return Ok(report);
    }
    let resumed = cache.resume(prompt, &keys, 0)?;
    let mut kv = resumed.kv;
    report.blocks_hit = resumed.blocks;
    report.cached_positions = resumed.positions;
    report.corrupt = resumed.corrupt;
    let llm = reader.llm();
    let mut a = resumed.whole;
    let mut at = resumed.positions;
    while a < segs.len() {
        if !keep_going(a, segs.len()) {
            report.stopped = true;
            break;
        }
        // Whole blocks, at least one, up to WARM_STEP positions; a rest
        // shorter than the prefill floor joins this step, so every step
        // runs the products a whole prefill would.
        let mut b = a + 1;
        while b < segs.len() && segs[b].end - segs[a].start <= WARM_STEP {
            b += 1;
        }
        if end - segs[b - 1].end < llm.prefill_rows_floor() {
            b = segs.len();
        }
        let latents = memory.raw[a..b]
            .iter()
            .map(|r| reader.adapt(r))
            .collect::<Result<Vec<_>>>()?;
        let x = prompt.embeddings_range(llm, &latents, at, segs[b - 1].end)?;
        llm.forward_tail(&x.unsqueeze(0)?, Some(&mut kv), 1)?;
        let stored = cache.store(prompt, &keys[..b], a, &kv)?;
        cache.count_prefilled(segs[b - 1].end - at);
        report.prefilled_positions += segs[b - 1].end - at;
        at = segs[b - 1].end;
        report.blocks_written += stored.blocks;
        report.bytes_written += stored.bytes;
        report.evicted += stored.evicted;
        a = b;
    }
    report.ms = t.elapsed().as_secs_f64() * 1e3;
    Ok(report)
}
