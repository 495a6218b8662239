//! Streaming an answer so that what is printed equals the final answer.
//!
//! The final answer is [`clean_text`] of the decoded generated ids:
//! whitespace-trimmed, one trailing `<|im_end|>` dropped, trimmed again (a
//! final end-of-text id is never text). A streamer
//! therefore holds back leading whitespace, trailing whitespace and a tail
//! that is, or may still become, that `<|im_end|>`; everything else is
//! printed as soon as its characters are complete. The concatenation of all
//! pieces handed out equals the cleaned answer exactly.

use crate::generate::{clean_text, Generation, IM_END};
use crate::tokenize::{StreamDecoder, TokenBytes};
use crate::Result;

/// Turns the growing decoded text into printable pieces.
#[derive(Debug, Default)]
pub struct AnswerStream {
    /// Everything decoded so far.
    buf: String,
    /// Bytes of `buf.trim_start()` already handed out.
    emitted: usize,
}

impl AnswerStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds decoded text (complete characters); returns what may be printed now.
    pub fn push(&mut self, text: &str) -> String {
        self.buf.push_str(text);
        let t = self.buf.trim_start();
        let stable = stable_len(t);
        self.take(stable)
    }

    /// End of the answer: `tail` is whatever the decoder still held (an
    /// incomplete character); returns the rest of the cleaned answer.
    pub fn finish(&mut self, tail: &str) -> String {
        self.buf.push_str(tail);
        let end = clean_text(&self.buf).len();
        self.take(end)
    }

    /// The cleaned answer so far as printed.
    pub fn printed(&self) -> &str {
        &self.buf.trim_start()[..self.emitted]
    }

    fn take(&mut self, upto: usize) -> String {
        let t = self.buf.trim_start();
        if upto <= self.emitted {
            return String::new();
        }
        let piece = t[self.emitted..upto].to_string();
        self.emitted = upto;
        piece
    }
}

/// Length of the prefix of `t` (already start-trimmed) that no later text
/// can remove: it excludes trailing whitespace and a trailing `<|im_end|>`
/// or prefix of it, with the whitespace before that.
fn stable_len(t: &str) -> usize {
    let r = t.trim_end();
    if let Some(before) = r.strip_suffix(IM_END) {
        return before.trim_end().len();
    }
    if r.len() < t.len() {
        // Ends in whitespace: a partial marker before it can no longer complete.
        return r.len();
    }
    for k in (1..IM_END.len()).rev() {
        if t.ends_with(&IM_END[..k]) {
            return t[..t.len() - k].trim_end().len();
        }
    }
    t.len()
}

/// Runs a generation and streams its clean text: ids become UTF-8 pieces
/// (never half a character), whitespace and a partial `<|im_end|>` are held
/// back, and `end_signal` (C3's final `<|endoftext|>`) is not text. `on_id`
/// sees every id first (timings, cancellation: `false` stops at once, even
/// when the id adds no printable text yet); `generate` runs the decoder
/// with the callback.
pub(crate) fn stream_generation(
    tok: &dyn TokenBytes,
    end_signal: Option<u32>,
    mut on_id: impl FnMut(u32) -> bool,
    on_text: &mut dyn FnMut(&str) -> bool,
    generate: impl FnOnce(&mut dyn FnMut(u32) -> bool) -> Result<Generation>,
) -> Result<Generation> {
    let mut pieces = StreamDecoder::new(tok);
    let mut stream = AnswerStream::new();
    let gen = generate(&mut |id| {
        if !on_id(id) {
            return false;
        }
        if Some(id) == end_signal {
            return true;
        }
        let piece = stream.push(&pieces.push(id));
        piece.is_empty() || on_text(&piece)
    })?;
    let rest = stream.finish(&pieces.finish());
    if !rest.is_empty() {
        on_text(&rest);
    }
    Ok(gen)
}

/// [`stream_generation`] for a cascade's decoder, its end signal included.
pub fn stream_text(
    reader: &dyn crate::cascade::LatentReader,
    on_text: &mut dyn FnMut(&str) -> bool,
    generate: impl FnOnce(&mut dyn FnMut(u32) -> bool) -> Result<Generation>,
) -> Result<Generation> {
    stream_generation(
        reader.token_bytes(),
        reader.end_signal(),
        |_| true,
        on_text,
        generate,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(pieces: &[&str]) -> (String, Vec<String>) {
        let mut s = AnswerStream::new();
        let mut out: Vec<String> = pieces.iter().map(|p| s.push(p)).collect();
        out.push(s.finish(""));
        (out.concat(), out)
    }

    #[test]
    fn hand_made_cases() {
        assert_eq!(run(&["  Hello", " ", "world", "\n"]).0, "Hello world");
        assert_eq!(run(&["a", " ", "<|im_end|>"]).0, "a");
        assert_eq!(run(&["a", "<|im", "_end|>", " "]).0, "a");
        assert_eq!(run(&["a <|im", " b"]).0, "a <|im b");
        assert_eq!(run(&["<|im_end|>", "x"]).0, "<|im_end|>x");
        assert_eq!(run(&["<|im_end|>"]).0, "");
        assert_eq!(run(&[" ", "\n"]).0, "");
        // Printed early: "Hello" does not wait for the end.
        let (_, parts) = run(&["Hello", " ", "there"]);
        assert_eq!(parts[0], "Hello");
    }

    proptest! {
        #[test]
        fn streamed_equals_cleaned(pieces in proptest::collection::vec(
            prop::sample::select(vec!["a", "b c", " ", "\n", "\t", "<|im_end|>", "<|", "im_",
                                      "end|>", "<", "|>", "é", "字", " <|im_end|>"]), 0..14)) {
            let (streamed, _) = run(&pieces);
            let whole = pieces.concat();
            prop_assert_eq!(streamed, clean_text(&whole).to_string());
        }
    }
}
