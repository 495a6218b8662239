//! Which chunks go into a prompt: all, or the BM25 top K, cut to the
//! decoder's position budget. Pure functions over scores and costs.

use serde::Serialize;

use super::index::Hit;
use crate::{Error, Result};

/// How chunks are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Every chunk of the selected documents (best-scoring ones when they do not fit).
    All,
    /// The K chunks that score best against the question.
    TopK(usize),
}

/// A chunk that may go into the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Candidate {
    pub doc: u64,
    pub chunk: u32,
    /// BM25 score against the question (0 when no term matched).
    pub score: f32,
    /// Prompt positions its block takes (latent slots plus `<img>`/`</img>`,
    /// or its text tokens).
    #[serde(skip)]
    pub cost: usize,
}

/// Prompt length as a function of the blocks in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Positions of the frame and question without any block.
    pub base: usize,
    /// Positions between two blocks (the newline).
    pub separator: usize,
    /// Most positions the prompt may take: max positions − max new tokens.
    pub limit: usize,
}

impl Budget {
    /// Prompt positions for blocks whose costs sum to `cost`.
    pub fn prompt_len(&self, blocks: usize, cost: usize) -> usize {
        self.base + cost + self.separator * blocks.saturating_sub(1)
    }

    fn fits(&self, blocks: usize, cost: usize) -> bool {
        self.prompt_len(blocks, cost) <= self.limit
    }
}

/// The chosen chunks, in document order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub chunks: Vec<Candidate>,
    /// Chunks the pick wanted but the budget left out.
    pub dropped: usize,
}

/// Chooses chunks. `candidates` are every chunk of the selected documents
/// in document order (scores filled in from `hits` where they matched).
pub fn plan(candidates: &[Candidate], pick: Pick, budget: &Budget) -> Result<Plan> {
    if candidates.is_empty() {
        return Err(Error::Input("no chunks to choose from".into()));
    }
    let wanted: Vec<Candidate> = match pick {
        Pick::All => candidates.to_vec(),
        Pick::TopK(0) => return Err(Error::Input("--top-k must be at least 1".into())),
        Pick::TopK(k) => {
            let ranked: Vec<Candidate> = rank(candidates)
                .into_iter()
                .filter(|c| c.score > 0.0)
                .take(k)
                .collect();
            if ranked.is_empty() {
                return Err(Error::Input(
                    "no stored chunk shares a word with the question (try --all)".into(),
                ));
            }
            ranked
        }
    };
    let cost: usize = wanted.iter().map(|c| c.cost).sum();
    if budget.fits(wanted.len(), cost) {
        return Ok(Plan {
            chunks: in_doc_order(wanted),
            dropped: 0,
        });
    }
    let chosen = fit(&rank(&wanted), budget);
    if chosen.is_empty() {
        return Err(Error::Input(format!(
            "not even one chunk fits: the prompt may take {} positions and a chunk needs {} \
             (lower --max-new-tokens)",
            budget.limit,
            budget.base + wanted.iter().map(|c| c.cost).min().unwrap_or(0)
        )));
    }
    Ok(Plan {
        dropped: wanted.len() - chosen.len(),
        chunks: in_doc_order(chosen),
    })
}

/// Best score first; equal scores (e.g. the unmatched ones) in document order.
fn rank(c: &[Candidate]) -> Vec<Candidate> {
    let mut r = c.to_vec();
    r.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.doc.cmp(&b.doc))
            .then(a.chunk.cmp(&b.chunk))
    });
    r
}

/// Takes chunks in rank order while they fit; a chunk too big to fit is
/// skipped so smaller lower-ranked ones still get in.
pub fn fit(ranked: &[Candidate], budget: &Budget) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut cost = 0;
    for c in ranked {
        if budget.fits(out.len() + 1, cost + c.cost) {
            cost += c.cost;
            out.push(*c);
        }
    }
    out
}

fn in_doc_order(mut c: Vec<Candidate>) -> Vec<Candidate> {
    c.sort_by(|a, b| a.doc.cmp(&b.doc).then(a.chunk.cmp(&b.chunk)));
    c
}

/// Fills in BM25 scores of `hits` on `candidates`.
pub fn apply_scores(candidates: &mut [Candidate], hits: &[Hit]) {
    let by_key: std::collections::HashMap<(u64, u32), f32> =
        hits.iter().map(|h| ((h.doc, h.chunk), h.score)).collect();
    for c in candidates {
        c.score = by_key.get(&(c.doc, c.chunk)).copied().unwrap_or(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(doc: u64, chunk: u32, score: f32, cost: usize) -> Candidate {
        Candidate {
            doc,
            chunk,
            score,
            cost,
        }
    }

    const B: Budget = Budget {
        base: 10,
        separator: 1,
        limit: 100,
    };

    #[test]
    fn all_fits_in_document_order() {
        let c = [
            cand(1, 0, 0.0, 20),
            cand(1, 1, 5.0, 20),
            cand(2, 0, 1.0, 20),
        ];
        let p = plan(&c, Pick::All, &B).unwrap();
        assert_eq!(p.dropped, 0);
        assert_eq!(p.chunks, c.to_vec());
    }

    #[test]
    fn all_falls_back_to_best_scores_in_document_order() {
        // 10 + 3*30 + 2 = 102 > 100: one must go, the lowest score.
        let c = [
            cand(1, 0, 2.0, 30),
            cand(1, 1, 0.5, 30),
            cand(2, 0, 3.0, 30),
        ];
        let p = plan(&c, Pick::All, &B).unwrap();
        assert_eq!(p.dropped, 1);
        assert_eq!(p.chunks, vec![c[0], c[2]]);
        assert_eq!(B.prompt_len(2, 60), 71);
    }

    #[test]
    fn top_k_takes_best_matches_only() {
        let c = [
            cand(1, 0, 0.0, 5),
            cand(1, 1, 4.0, 5),
            cand(1, 2, 9.0, 5),
            cand(2, 0, 1.0, 5),
        ];
        let p = plan(&c, Pick::TopK(2), &B).unwrap();
        assert_eq!(p.chunks, vec![c[1], c[2]]);
        let p = plan(&c, Pick::TopK(10), &B).unwrap();
        assert_eq!(
            p.chunks,
            vec![c[1], c[2], c[3]],
            "unmatched chunks never count"
        );
    }

    #[test]
    fn skips_a_big_chunk_for_smaller_ones() {
        let c = [
            cand(1, 0, 9.0, 95),
            cand(1, 1, 1.0, 30),
            cand(1, 2, 0.5, 30),
        ];
        let p = plan(&c, Pick::All, &B).unwrap();
        assert_eq!(p.chunks, vec![c[1], c[2]]);
    }

    #[test]
    fn errors_are_clear() {
        let c = [cand(1, 0, 0.0, 500)];
        assert!(plan(&c, Pick::All, &B).is_err());
        assert!(plan(&[], Pick::All, &B).is_err());
        assert!(plan(&c, Pick::TopK(3), &B).is_err(), "nothing matched");
        assert!(plan(&c, Pick::TopK(0), &B).is_err());
    }
}
