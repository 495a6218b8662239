//! Incremental decoding for streamed generation.

use super::C3Tokenizer;

/// The bytes each id stands for (control tokens: their spelling).
pub trait TokenBytes {
    fn token_slice(&self, id: u32) -> Option<&[u8]>;
}

impl TokenBytes for C3Tokenizer {
    fn token_slice(&self, id: u32) -> Option<&[u8]> {
        C3Tokenizer::token_slice(self, id)
    }
}

/// Feeds ids one at a time and hands back only complete UTF-8 text.
///
/// A character split across tokens (emoji, CJK) is held back until its last
/// byte arrives. Bytes that can never form a character become U+FFFD exactly
/// where [`C3Tokenizer::decode`] would put them, so the concatenation of every
/// [`push`](Self::push) plus [`finish`](Self::finish) equals `decode(all ids)`.
/// An id outside the vocabulary (which `decode` rejects) streams as U+FFFD.
pub struct StreamDecoder<'a> {
    tok: &'a dyn TokenBytes,
    /// Bytes not yet emitted: at most the start of one incomplete character.
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    pub fn new(tok: &'a dyn TokenBytes) -> Self {
        Self {
            tok,
            pending: Vec::new(),
        }
    }

    /// Add one id; return the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        match self.tok.token_slice(id) {
            Some(bytes) => self.pending.extend_from_slice(bytes),
            // 0xFF never occurs in UTF-8, so it decodes as one U+FFFD and
            // also terminates any character left incomplete before it.
            None => self.pending.push(0xFF),
        }
        self.drain_complete()
    }

    /// End of stream: whatever is left is an incomplete character (U+FFFD).
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    /// Emit everything up to a trailing incomplete character, replacing
    /// invalid sequences the same way `String::from_utf8_lossy` does.
    fn drain_complete(&mut self) -> String {
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(valid) => {
                    out.push_str(valid);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let good = start + e.valid_up_to();
                    // The prefix was just validated by from_utf8.
                    out.push_str(std::str::from_utf8(&self.pending[start..good]).unwrap_or(""));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start = good + bad;
                        }
                        // Truncated character at the end: wait for more bytes.
                        None => {
                            start = good;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }
}
