//! Reconstruction fidelity, as the Fox benchmark tool measures it.
//!
//! Kept small and local until a shared metric module lands in `c3`; then the
//! TUI should call that one instead (same definitions).

use std::collections::HashSet;

/// Both fidelity numbers of one reconstruction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fidelity {
    /// |set(pred words) ∩ set(gt words)| / |set(gt words)|.
    pub precision: f64,
    /// 1 - levenshtein(pred chars, gt chars) / max(len).
    pub edit_similarity: f64,
}

impl Fidelity {
    pub fn of(pred: &str, gt: &str) -> Self {
        Fidelity {
            precision: word_precision(pred, gt),
            edit_similarity: edit_similarity(pred, gt),
        }
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

/// Whitespace-separated words; each CJK character counts as a word of its own.
pub fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for w in text.split_whitespace() {
        let mut start = 0;
        for (i, c) in w.char_indices() {
            if is_cjk(c) {
                if start < i {
                    out.push(&w[start..i]);
                }
                out.push(&w[i..i + c.len_utf8()]);
                start = i + c.len_utf8();
            }
        }
        if start < w.len() {
            out.push(&w[start..]);
        }
    }
    out
}

/// Share of the distinct ground-truth words that the prediction contains.
/// An empty ground truth is matched perfectly only by an empty prediction.
pub fn word_precision(pred: &str, gt: &str) -> f64 {
    let gt: HashSet<&str> = words(gt).into_iter().collect();
    let pred: HashSet<&str> = words(pred).into_iter().collect();
    if gt.is_empty() {
        return if pred.is_empty() { 1.0 } else { 0.0 };
    }
    gt.intersection(&pred).count() as f64 / gt.len() as f64
}

/// Character-level Levenshtein distance (Unicode scalar values).
pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() {
        return b.len();
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

pub fn edit_similarity(pred: &str, gt: &str) -> f64 {
    let len = pred.chars().count().max(gt.chars().count());
    if len == 0 {
        return 1.0;
    }
    1.0 - levenshtein(pred, gt) as f64 / len as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_counts_distinct_gt_words() {
        assert_eq!(word_precision("a b c", "a b c"), 1.0);
        assert_eq!(word_precision("a a x", "a b"), 0.5);
        assert_eq!(word_precision("", "a b"), 0.0);
        assert_eq!(word_precision("", ""), 1.0);
        assert_eq!(word_precision("x", ""), 0.0);
    }

    #[test]
    fn cjk_characters_are_words() {
        assert_eq!(words("ab中文 c"), vec!["ab", "中", "文", "c"]);
        assert_eq!(word_precision("中", "中文"), 0.5);
    }

    #[test]
    fn edit_similarity_is_levenshtein_over_max_len() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert!((edit_similarity("kitten", "sitting") - (1.0 - 3.0 / 7.0)).abs() < 1e-12);
        assert_eq!(edit_similarity("", ""), 1.0);
        assert_eq!(edit_similarity("héllo", "héllo"), 1.0);
    }
}
