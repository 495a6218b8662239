//! Word-level difference between an original text and its reconstruction:
//! which words of each side are not part of their longest common subsequence.

use crate::metrics::words;
use std::collections::HashSet;

/// Above this many cells (|a| x |b|) the LCS table is skipped and words are
/// marked by set membership instead.
const MAX_LCS_CELLS: usize = 6_000_000;

/// `true` marks a differing word, indexed like [`words`] of each text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WordDiff {
    pub original: Vec<bool>,
    pub reconstruction: Vec<bool>,
}

impl WordDiff {
    pub fn of(original: &str, reconstruction: &str) -> Self {
        let a = words(original);
        let b = words(reconstruction);
        if a.len().saturating_mul(b.len()) > MAX_LCS_CELLS {
            return by_membership(&a, &b);
        }
        let (n, m) = (a.len(), b.len());
        // table[i][j] = LCS length of a[i..] and b[j..]
        let w = m + 1;
        let mut table = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                table[i * w + j] = if a[i] == b[j] {
                    table[(i + 1) * w + j + 1] + 1
                } else {
                    table[(i + 1) * w + j].max(table[i * w + j + 1])
                };
            }
        }
        let mut diff = WordDiff {
            original: vec![true; n],
            reconstruction: vec![true; m],
        };
        let (mut i, mut j) = (0, 0);
        while i < n && j < m {
            if a[i] == b[j] {
                diff.original[i] = false;
                diff.reconstruction[j] = false;
                i += 1;
                j += 1;
            } else if table[(i + 1) * w + j] >= table[i * w + j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
        diff
    }

    pub fn changed_original(&self) -> usize {
        self.original.iter().filter(|&&d| d).count()
    }

    pub fn changed_reconstruction(&self) -> usize {
        self.reconstruction.iter().filter(|&&d| d).count()
    }
}

fn by_membership(a: &[&str], b: &[&str]) -> WordDiff {
    let sa: HashSet<&str> = a.iter().copied().collect();
    let sb: HashSet<&str> = b.iter().copied().collect();
    WordDiff {
        original: a.iter().map(|w| !sb.contains(w)).collect(),
        reconstruction: b.iter().map(|w| !sa.contains(w)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_words_outside_the_common_subsequence() {
        let d = WordDiff::of("the cat sat on the mat", "the dog sat on mat");
        assert_eq!(d.original, vec![false, true, false, false, true, false]);
        assert_eq!(d.reconstruction, vec![false, true, false, false, false]);
        assert_eq!(d.changed_original(), 2);
    }

    #[test]
    fn identical_and_empty() {
        let d = WordDiff::of("a b", "a b");
        assert_eq!(d.changed_original() + d.changed_reconstruction(), 0);
        let d = WordDiff::of("", "x");
        assert_eq!(d.reconstruction, vec![true]);
        assert!(d.original.is_empty());
    }
}
