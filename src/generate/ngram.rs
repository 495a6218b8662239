//! `no_repeat_ngram_size`: bans any token that would complete an n-gram
//! already present in the sequence (prompt + generated).

use std::collections::{HashMap, HashSet};

pub struct NoRepeatNgram {
    n: usize,
    /// (n-1)-gram → tokens that have followed it.
    seen: HashMap<Vec<u32>, HashSet<u32>>,
    seq: Vec<u32>,
}

impl NoRepeatNgram {
    /// `n == 0` disables the rule.
    pub fn new(n: usize, prompt: &[u32]) -> Self {
        let mut s = Self {
            n,
            seen: HashMap::new(),
            seq: Vec::with_capacity(prompt.len() + 256),
        };
        for &t in prompt {
            s.push(t);
        }
        s
    }

    pub fn push(&mut self, token: u32) {
        self.seq.push(token);
        if self.n == 0 || self.seq.len() < self.n {
            return;
        }
        let gram = &self.seq[self.seq.len() - self.n..];
        self.seen
            .entry(gram[..self.n - 1].to_vec())
            .or_default()
            .insert(gram[self.n - 1]);
    }

    /// Tokens banned as the next token.
    pub fn banned(&self) -> impl Iterator<Item = u32> + '_ {
        let prefix = if self.n >= 1 && self.seq.len() + 1 >= self.n {
            self.seen.get(&self.seq[self.seq.len() + 1 - self.n..])
        } else {
            None
        };
        prefix.into_iter().flat_map(|s| s.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_token_completing_seen_trigram() {
        let g = NoRepeatNgram::new(3, &[1, 2, 3, 4, 1, 2]);
        assert_eq!(g.banned().collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn nothing_banned_for_new_prefix() {
        let g = NoRepeatNgram::new(3, &[1, 2, 3, 4, 2, 1]);
        assert_eq!(g.banned().count(), 0);
    }

    #[test]
    fn run_of_one_token_is_capped_at_n() {
        // After n copies of 7, the n-gram (7,...,7) exists; the next 7 is banned.
        let mut g = NoRepeatNgram::new(4, &[]);
        for _ in 0..3 {
            assert_eq!(g.banned().count(), 0);
            g.push(7);
        }
        g.push(7);
        assert_eq!(g.banned().collect::<Vec<_>>(), vec![7]);
    }

    #[test]
    fn disabled_when_zero() {
        let g = NoRepeatNgram::new(0, &[1, 1, 1, 1]);
        assert_eq!(g.banned().count(), 0);
    }
}
