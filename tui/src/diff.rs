//! Which words of an original and of its reconstruction differ, as flags
//! per whitespace-separated word, from `c3::eval::diff::word_diff` (the diff
//! `c3 expand` prints).

use c3::eval::diff::{word_diff, Op};

/// `true` marks a differing word, indexed like `text.split_whitespace()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WordDiff {
    pub original: Vec<bool>,
    pub reconstruction: Vec<bool>,
}

impl WordDiff {
    pub fn of(original: &str, reconstruction: &str) -> Self {
        let mut d = WordDiff::default();
        for op in word_diff(original, reconstruction) {
            match op {
                Op::Same(w) => {
                    d.original.extend(std::iter::repeat_n(false, w.len()));
                    d.reconstruction.extend(std::iter::repeat_n(false, w.len()));
                }
                Op::Removed(w) => d.original.extend(std::iter::repeat_n(true, w.len())),
                Op::Added(w) => d.reconstruction.extend(std::iter::repeat_n(true, w.len())),
            }
        }
        d
    }

    pub fn changed_original(&self) -> usize {
        self.original.iter().filter(|&&d| d).count()
    }

    pub fn changed_reconstruction(&self) -> usize {
        self.reconstruction.iter().filter(|&&d| d).count()
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
