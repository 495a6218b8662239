//! Derive BPE merge rules from tiktoken ranks.
//!
//! tiktoken stores no merge list: at every step it joins the adjacent pair
//! whose concatenation has the lowest rank. A merge list for `tokenizers`
//! is recovered per token: replay that procedure on the token's own bytes,
//! allowing only lower ranks; the two pieces left over are the pair that
//! BPE joins into this token, and the token's rank is the merge priority.

use super::bpe::{RankBpe, Scratch};
use super::rankfile::Ranks;

/// Merge rules as `(left rank, right rank)`, highest priority first
/// (i.e. ordered by the rank of the merged token).
pub type RankMerges = Vec<(u32, u32)>;

/// Derive the merges in one pass over the ranks.
///
/// Tokens that the replay does not reduce to exactly two lower-rank pieces
/// get no merge: BPE can only produce them when a whole pre-token equals them,
/// and both encoders look whole pre-tokens up before merging.
pub fn derive(ranks: &Ranks, bpe: &RankBpe) -> RankMerges {
    let mut merges = Vec::with_capacity(ranks.len());
    let mut scratch = Scratch::default();
    for (rank, bytes) in ranks.iter().enumerate() {
        if bytes.len() < 2 {
            continue;
        }
        bpe.split(bytes, rank as u32, &mut scratch);
        if let [left, right] = scratch.ids[..] {
            merges.push((left, right));
        }
    }
    merges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(tokens: &[&[u8]]) -> Ranks {
        let mut ranks: Ranks = (0..=255u8).map(|b| vec![b]).collect();
        ranks.extend(tokens.iter().map(|t| t.to_vec()));
        ranks
    }

    fn merges_of(tokens: &[&[u8]]) -> RankMerges {
        let ranks = table(tokens);
        derive(&ranks, &RankBpe::new(&ranks, "t").unwrap())
    }

    #[test]
    fn picks_the_pair_bpe_would_join() {
        // "ab"=256, "bc"=257, "abc"=258: replaying "abc" joins "ab" first, so abc = ab + c.
        assert_eq!(
            merges_of(&[b"ab", b"bc", b"abc"]),
            vec![(97, 98), (98, 99), (256, 99)]
        );
    }

    #[test]
    fn lower_rank_wins_over_position() {
        // "bc" outranks "ab", so abc = a + bc.
        assert_eq!(merges_of(&[b"bc", b"ab", b"abc"])[2], (97, 256));
    }

    #[test]
    fn unreachable_token_gets_no_merge() {
        // "abc" with no two-byte tokens cannot be built pairwise.
        assert!(merges_of(&[b"abc"]).is_empty());
    }

    #[test]
    fn rejects_duplicates() {
        let ranks = table(&[b"ab", b"ab"]);
        assert!(RankBpe::new(&ranks, "t").is_err());
    }
}
