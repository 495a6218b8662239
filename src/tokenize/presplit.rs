//! Pre-tokenisation for the fast encode path: the spec's split regex on
//! `regex-automata` (a lazy DFA, roughly an order of magnitude faster than the
//! backtracking engine the `tokenizers` pipeline uses). Searches are anchored
//! at the end of the previous piece, which skips the reverse scan an
//! unanchored search needs to find where a match starts.
//!
//! A DFA has no look-ahead, so the branch `\s+(?!\S)` is dropped and
//! emulated: it differs from the final `\s+` only on a whitespace run of two
//! or more chars followed by a non-space, where it stops one char short so
//! the last space can lead the next word (" word").

use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};

use crate::{Error, Result};

/// [`super::SPLIT_REGEX`] without `\s+(?!\S)`.
pub const SPLIT_REGEX_NO_LOOKAHEAD: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+";

pub struct PreSplitter {
    re: Regex,
}

impl PreSplitter {
    pub fn new() -> Result<Self> {
        let re = Regex::new(SPLIT_REGEX_NO_LOOKAHEAD)
            .map_err(|e| Error::Tokenize(format!("compiling split regex: {e}")))?;
        Ok(Self { re })
    }

    /// Split `text` into consecutive pieces that cover it exactly.
    pub fn pieces<'t>(&'t self, text: &'t str) -> impl Iterator<Item = &'t str> + 't {
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= text.len() {
                return None;
            }
            let input = Input::new(text).range(pos..).anchored(Anchored::Yes);
            let end = match self.re.search(&input) {
                // Every char is matched by some branch, so a match always starts
                // here and is non-empty; should that ever fail, the next char
                // becomes a piece of its own rather than being lost.
                Some(m) if m.end() > pos => lookahead_fix(text, pos, m.end()),
                _ => pos + text[pos..].chars().next().map_or(1, char::len_utf8),
            };
            let piece = &text[pos..end];
            pos = end;
            Some(piece)
        })
    }
}

/// Where `\s+(?!\S)` would have ended the match `text[start..end]`.
fn lookahead_fix(text: &str, start: usize, end: usize) -> usize {
    // Of the branches, only `\s*[\r\n]+` and the final `\s+` can end in
    // whitespace, and the former ends in a line break. So a match ending in
    // other whitespace came from `\s+`: all whitespace, no line break, and
    // (being greedy) followed by a non-space unless the text ends here.
    if end == text.len() {
        return end;
    }
    match text[start..end].char_indices().next_back() {
        Some((last, c)) if last > 0 && c.is_whitespace() && c != '\r' && c != '\n' => start + last,
        _ => end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        let sp = PreSplitter::new().unwrap();
        sp.pieces(s).map(str::to_string).collect()
    }

    #[test]
    fn pattern_is_the_spec_minus_lookahead() {
        assert_eq!(
            super::super::SPLIT_REGEX.replace(r"|\s+(?!\S)", ""),
            SPLIT_REGEX_NO_LOOKAHEAD
        );
    }

    #[test]
    fn whitespace_runs() {
        assert_eq!(split("a  b"), ["a", " ", " b"]);
        assert_eq!(split("a\t\tb"), ["a", "\t", "\tb"]);
        assert_eq!(split("a \u{3000}b"), ["a", " ", "\u{3000}b"]);
        assert_eq!(split("a 1"), ["a", " ", "1"]);
        assert_eq!(split("x   "), ["x", "   "]);
        assert_eq!(split("x  \n  y"), ["x", "  \n", " ", " y"]);
        assert_eq!(split("He's 12!\r\n"), ["He", "'s", " ", "1", "2", "!\r\n"]);
        assert_eq!(split("a.  \t b"), ["a", ".", "  \t", " b"]);
        assert_eq!(split(" \u{85}x"), [" ", "\u{85}x"]);
    }
}
