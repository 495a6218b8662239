//! Rank-based byte-pair encoding, the way tiktoken defines it.
//!
//! This is `encode_text`'s hot path: working on raw bytes with a rank table
//! avoids the per-token `String`s and offset bookkeeping of the `tokenizers`
//! pipeline (several times faster), and it follows the reference semantics
//! directly: a piece that is itself a token is emitted as is; otherwise the
//! adjacent pair whose concatenation has the lowest rank (leftmost on ties) is
//! joined until no joinable pair is left.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::rankfile::Ranks;
use super::table::{HotCache, PairTable, RankTable};
use crate::{Error, Result};

/// Sentinel in `Scratch::next` for a part that was merged into its left neighbour.
const DEAD: usize = usize::MAX;

/// Reusable buffers for [`RankBpe::split`], so encoding a long text does not
/// allocate per piece.
#[derive(Default)]
pub struct Scratch {
    /// `next[s]`: start of the part after the part starting at `s` (or the piece length).
    next: Vec<usize>,
    /// `prev[s]`: start of the part before the live part starting at `s`.
    prev: Vec<usize>,
    /// `id[s]`: token id of the live part starting at `s`.
    id: Vec<u32>,
    /// Candidate joins `(rank, left start, right start, right end)`, lowest rank
    /// then leftmost first; entries made stale by an earlier join are skipped.
    heap: BinaryHeap<Reverse<(u32, usize, usize, usize)>>,
    /// Result of the last `split`: part starts followed by the piece length.
    pub bounds: Vec<usize>,
    /// Result of the last `split`: the parts' token ids.
    pub ids: Vec<u32>,
}

/// Rank tables with the BPE merge loop on top.
pub struct RankBpe {
    /// Whole token bytes -> rank, for pre-tokens that are a token outright.
    ranks: RankTable,
    /// Every pair of tokens whose concatenation is a token. The merge loop
    /// only ever holds tokens, so joins are looked up by id pair: an 8-byte
    /// key instead of hashing and comparing byte strings.
    pairs: PairTable,
    /// Rank of each single byte.
    byte_rank: [u32; 256],
}

impl RankBpe {
    /// Index the ranks, rejecting duplicate tokens and a missing single byte
    /// (byte-level BPE must be able to spell any input).
    pub fn new(ranks: &Ranks, origin: &str) -> Result<Self> {
        let mut map = RankTable::with_capacity(ranks.len());
        for (rank, bytes) in ranks.iter().enumerate() {
            if let Some(other) = map.insert(bytes, rank as u32) {
                return Err(Error::Tokenize(format!(
                    "{origin}: ranks {other} and {rank} have the same bytes"
                )));
            }
        }
        let mut byte_rank = [0u32; 256];
        for b in 0..=255u8 {
            byte_rank[b as usize] = map.get(&[b]).ok_or_else(|| {
                Error::Tokenize(format!("{origin}: no token for the single byte 0x{b:02x}"))
            })?;
        }
        // One pass over every split point of every token.
        let mut pairs = PairTable::with_capacity(ranks.len() * 2);
        for (rank, bytes) in ranks.iter().enumerate() {
            for k in 1..bytes.len() {
                let Some(l) = map.get(&bytes[..k]) else {
                    continue;
                };
                if let Some(r) = map.get(&bytes[k..]) {
                    pairs.insert(l, r, rank as u32);
                }
            }
        }
        Ok(Self {
            ranks: map,
            pairs,
            byte_rank,
        })
    }

    /// Encode a sequence of pre-tokens, appending their ids; `size_hint`
    /// (bytes of text) sizes the per-call cache of whole-token pieces. Pieces
    /// that need merging recur in long texts (names, `."\r\n\r\n`), so their
    /// ids are memoised for the duration of the call too.
    pub fn encode_pieces<'t>(
        &self,
        pieces: impl Iterator<Item = &'t [u8]>,
        size_hint: usize,
        out: &mut Vec<u32>,
    ) {
        let mut hot = HotCache::new(size_hint / 4);
        // Keys come from user text, so this map keeps std's randomised hasher.
        let mut memo: HashMap<&'t [u8], (usize, usize)> = HashMap::new();
        let mut memo_ids: Vec<u32> = Vec::new();
        let mut scratch = Scratch::default();
        for piece in pieces {
            if let Some(r) = hot.rank(&self.ranks, piece) {
                out.push(r);
            } else if let Some(&(start, end)) = memo.get(piece) {
                out.extend_from_slice(&memo_ids[start..end]);
            } else {
                self.split(piece, u32::MAX, &mut scratch);
                out.extend_from_slice(&scratch.ids);
                let start = memo_ids.len();
                memo_ids.extend_from_slice(&scratch.ids);
                memo.insert(piece, (start, memo_ids.len()));
            }
        }
    }

    /// Run the merge loop on `piece` using only ranks below `limit`; the part
    /// boundaries and ids are left in `scratch.bounds` and `scratch.ids`.
    /// Uses a heap, so a huge piece (minified code, a long run of symbols)
    /// costs O(n log n), not O(n^2).
    pub fn split(&self, piece: &[u8], limit: u32, scratch: &mut Scratch) {
        let n = piece.len();
        let Scratch {
            next,
            prev,
            id,
            heap,
            bounds,
            ids,
        } = scratch;
        bounds.clear();
        ids.clear();
        if n < 2 {
            bounds.push(0);
            if let Some(&b) = piece.first() {
                bounds.push(n);
                ids.push(self.byte_rank[b as usize]);
            }
            return;
        }
        next.clear();
        next.extend(1..=n);
        prev.clear();
        prev.extend((0..n).map(|i| i.wrapping_sub(1)));
        id.clear();
        id.extend(piece.iter().map(|&b| self.byte_rank[b as usize]));
        heap.clear();
        let joinable = |l: u32, r: u32| self.pairs.get(l, r).filter(|&rank| rank < limit);
        for s in 0..n - 1 {
            if let Some(r) = joinable(id[s], id[s + 1]) {
                heap.push(Reverse((r, s, s + 1, s + 2)));
            }
        }
        while let Some(Reverse((rank, s, m, e))) = heap.pop() {
            // Stale if either side was joined elsewhere since this entry was pushed.
            if next[s] != m || next[m] != e {
                continue;
            }
            next[s] = e;
            next[m] = DEAD;
            id[s] = rank;
            if e < n {
                prev[e] = s;
            }
            if s > 0 {
                let p = prev[s];
                if let Some(r) = joinable(id[p], rank) {
                    heap.push(Reverse((r, p, s, e)));
                }
            }
            if e < n {
                let f = next[e];
                if let Some(r) = joinable(rank, id[e]) {
                    heap.push(Reverse((r, s, e, f)));
                }
            }
        }
        let mut s = 0;
        while s < n {
            bounds.push(s);
            ids.push(id[s]);
            s = next[s];
        }
        bounds.push(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bpe(tokens: &[&[u8]]) -> RankBpe {
        let mut ranks: Ranks = (0..=255u8).map(|b| vec![b]).collect();
        ranks.extend(tokens.iter().map(|t| t.to_vec()));
        RankBpe::new(&ranks, "t").unwrap()
    }

    fn encode(b: &RankBpe, s: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        b.encode_pieces(std::iter::once(s), s.len(), &mut out);
        out
    }

    #[test]
    fn joins_lowest_rank_first_and_leftmost_on_ties() {
        let b = bpe(&[b"aa", b"aaa"]);
        // "aaaa": both "aa" joins (leftmost first), then "aa"+"aa" is no token.
        assert_eq!(encode(&b, b"aaaa"), vec![256, 256]);
        // "aaaaa": aa|aa|a, then "aa"+"a" joins into "aaa".
        assert_eq!(encode(&b, b"aaaaa"), vec![256, 257]);
        // A whole piece that is a token wins outright.
        assert_eq!(encode(&b, b"aaa"), vec![257]);
    }

    #[test]
    fn later_join_can_beat_pending_pair() {
        // ranks: "bc"=256, "abc"=257, "cd"=258: "abcd" -> bc, then abc (257) before cd (258)?
        // After joining bc, pairs are a+bc (257) and bc+d (none); cd is stale.
        let b = bpe(&[b"bc", b"abc", b"cd"]);
        assert_eq!(encode(&b, b"abcd"), vec![257, 100]);
    }

    #[test]
    fn limit_restricts_joins() {
        let b = bpe(&[b"ab", b"abc"]);
        let mut s = Scratch::default();
        b.split(b"abc", 257, &mut s);
        assert_eq!(s.bounds, vec![0, 2, 3]);
        b.split(b"abc", 256, &mut s);
        assert_eq!(s.bounds, vec![0, 1, 2, 3]);
        b.split(b"", 256, &mut s);
        assert_eq!(s.bounds, vec![0]);
    }

    #[test]
    fn memoised_pieces_repeat_their_ids() {
        let b = bpe(&[b"ab", b"abc"]);
        let mut out = Vec::new();
        let pieces: [&[u8]; 4] = [b"abab", b"x", b"abab", b"abc"];
        b.encode_pieces(pieces.into_iter(), 16, &mut out);
        assert_eq!(out, vec![256, 256, 120, 256, 256, 257]);
    }

    #[test]
    fn long_piece_is_fast_enough() {
        let b = bpe(&[b"ab"]);
        let piece = b"ab".repeat(200_000);
        assert_eq!(encode(&b, &piece).len(), 200_000);
    }
}
