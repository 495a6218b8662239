//! Read a large file in sections of bounded size, cut at paragraph or line
//! ends, so a multi-GB document never has to sit in memory at once.
//!
//! Sections tile the file exactly; each is chunked on its own, so chunk
//! boundaries at section edges fall on a paragraph or line end anyway.

use std::io::Read;

pub struct Sections<R> {
    reader: R,
    max: usize,
    carry: Vec<u8>,
    eof: bool,
}

impl<R: Read> Sections<R> {
    /// Sections hold at most `max` bytes; a line longer than that is cut at
    /// a UTF-8 character boundary.
    pub fn new(reader: R, max: usize) -> Self {
        Sections {
            reader,
            max: max.max(8),
            carry: Vec::new(),
            eof: false,
        }
    }

    /// The next section, or `None` at the end of the input.
    pub fn next_section(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut buf = std::mem::take(&mut self.carry);
        while buf.len() < self.max && !self.eof {
            let start = buf.len();
            buf.resize(self.max, 0);
            let n = self.reader.read(&mut buf[start..])?;
            buf.truncate(start + n);
            if n == 0 {
                self.eof = true;
            }
        }
        if buf.is_empty() {
            return Ok(None);
        }
        if self.eof && buf.len() <= self.max {
            return Ok(Some(buf));
        }
        let cut = cut_point(&buf);
        self.carry = buf.split_off(cut);
        Ok(Some(buf))
    }
}

/// Where to end a full buffer: after the last blank line in its second half,
/// else after the last newline, else before the last UTF-8 character start.
fn cut_point(buf: &[u8]) -> usize {
    let half = buf.len() / 2;
    if let Some(i) = buf[half..].windows(2).rposition(|w| w == b"\n\n") {
        return half + i + 2;
    }
    if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
        return i + 1;
    }
    // Keep whole characters: find where the last one starts (continuation
    // bytes look like 0b10xxxxxx) and leave it for the next section if the
    // buffer ends inside it.
    let Some(i) = buf.iter().rposition(|&b| b & 0xC0 != 0x80) else {
        return buf.len();
    };
    let len = match buf[i] {
        b if b < 0x80 => 1,
        b if b >> 5 == 0b110 => 2,
        b if b >> 4 == 0b1110 => 3,
        _ => 4,
    };
    if buf.len() - i >= len || i == 0 {
        buf.len()
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut s = Sections::new(text, max);
        let mut out = Vec::new();
        while let Some(sec) = s.next_section().unwrap() {
            out.push(sec);
        }
        out
    }

    #[test]
    fn sections_tile_and_cut_at_line_ends() {
        let text =
            "para one line\nline two\n\npara two\nmore text here\n\nlast para without newline";
        for max in [8, 16, 30, 1000] {
            let secs = all(text.as_bytes(), max);
            assert_eq!(secs.concat(), text.as_bytes(), "max {max}");
            for s in &secs[..secs.len() - 1] {
                assert!(s.ends_with(b"\n") || s.len() >= max, "max {max}: {s:?}");
            }
        }
    }

    #[test]
    fn long_lines_are_cut_on_char_boundaries() {
        let text = "ééééééééééééééééééééé".repeat(3);
        let secs = all(text.as_bytes(), 9);
        assert_eq!(secs.concat(), text.as_bytes());
        assert!(secs.iter().all(|s| std::str::from_utf8(s).is_ok()));
        assert!(secs.iter().all(|s| s.len() <= 9));
    }
}
