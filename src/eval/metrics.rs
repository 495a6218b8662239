//! The two fidelity metrics of the spec (Fox benchmark style).
//!
//! - `precision`: |set(pred words) ∩ set(gt words)| / |set(gt words)|, as
//!   the Fox tool computes it (a set, so repeats and order do not count).
//! - `edit_similarity`: 1 − levenshtein(pred chars, gt chars) / max(len).
//!
//! Words are whitespace-separated; CJK characters are words on their own
//! (Fox uses jieba for Chinese; one character per word is the closest rule
//! that needs no dictionary).

use std::collections::HashSet;

/// Han, kana, Hangul and CJK punctuation: scripts written without spaces.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F | 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF |
        0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF | 0x20000..=0x2FA1F)
}

/// Words of a text: whitespace split, with each CJK character a word.
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

/// Fox precision. Both empty: 1; only the ground truth empty: 0.
pub fn precision(pred: &str, gt: &str) -> f64 {
    let gt: HashSet<&str> = words(gt).into_iter().collect();
    let pred: HashSet<&str> = words(pred).into_iter().collect();
    if gt.is_empty() {
        return if pred.is_empty() { 1.0 } else { 0.0 };
    }
    gt.intersection(&pred).count() as f64 / gt.len() as f64
}

/// Levenshtein distance over characters (two rows, O(n·m) time).
pub fn levenshtein(a: &[char], b: &[char]) -> usize {
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

/// 1 − char edit distance / longer length; two empty texts are identical (1).
pub fn edit_similarity(pred: &str, gt: &str) -> f64 {
    let a: Vec<char> = pred.chars().collect();
    let b: Vec<char> = gt.chars().collect();
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    1.0 - levenshtein(&a, &b) as f64 / longest as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical() {
        let t = "The quick brown fox jumps over the lazy dog.";
        assert_eq!(precision(t, t), 1.0);
        assert_eq!(edit_similarity(t, t), 1.0);
    }

    #[test]
    fn empty() {
        assert_eq!(precision("", ""), 1.0);
        assert_eq!(precision("", "some words"), 0.0);
        assert_eq!(precision("extra", ""), 0.0);
        assert_eq!(edit_similarity("", ""), 1.0);
        assert_eq!(edit_similarity("abc", ""), 0.0);
        assert_eq!(edit_similarity("", "abcd"), 0.0);
    }

    #[test]
    fn one_word_changed() {
        let gt = "one two three four";
        let pred = "one two tree four";
        // 3 of 4 distinct gt words recovered; one char deleted of 18.
        assert_eq!(precision(pred, gt), 0.75);
        assert!((edit_similarity(pred, gt) - (1.0 - 1.0 / 18.0)).abs() < 1e-12);
    }

    #[test]
    fn precision_is_over_distinct_words_and_ignores_order() {
        assert_eq!(precision("b a", "a b a b"), 1.0);
        assert_eq!(precision("a a a", "a b"), 0.5);
    }

    #[test]
    fn cjk_characters_are_words() {
        assert_eq!(
            words("我爱北京 abc天安门"),
            vec!["我", "爱", "北", "京", "abc", "天", "安", "门"]
        );
        // 4 distinct chars in gt, 3 recovered.
        assert_eq!(precision("我爱北", "我爱北京"), 0.75);
        // Edit similarity counts characters, not bytes: one of four differs.
        assert_eq!(edit_similarity("我爱北海", "我爱北京"), 0.75);
    }

    #[test]
    fn levenshtein_known_values() {
        let c = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(levenshtein(&c("kitten"), &c("sitting")), 3);
        assert_eq!(levenshtein(&c(""), &c("abc")), 3);
        assert_eq!(levenshtein(&c("flaw"), &c("lawn")), 2);
    }
}
