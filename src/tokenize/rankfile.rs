//! Parse a tiktoken rank file: one `base64(token-bytes) rank` per line.

use base64::Engine as _;

use super::special::NUM_RANKS;
use crate::{Error, Result};

/// Token bytes indexed by rank (`ranks[r]` is the token whose id is `r`).
pub type Ranks = Vec<Vec<u8>>;

/// Parse the whole file. `origin` names it in errors ("FILE:LINE: ...").
///
/// The file must hold exactly the ranks `0..151643`, each once: the control
/// ids are hard-wired right after them, so a shorter or longer table would
/// silently shift their meaning.
pub fn parse(data: &[u8], origin: &str) -> Result<Ranks> {
    let err = |line: usize, msg: String| Error::Tokenize(format!("{origin}:{line}: {msg}"));
    let mut ranks: Ranks = vec![Vec::new(); NUM_RANKS];
    let mut seen = vec![false; NUM_RANKS];
    let mut count = 0usize;

    for (index, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        // Blank lines (e.g. a trailing newline) carry nothing; tiktoken skips them too.
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = std::str::from_utf8(line)
            .map_err(|_| err(line_no, "line is not ASCII/UTF-8 text".into()))?;
        let mut fields = text.split_ascii_whitespace();
        let (Some(b64), Some(rank_str), None) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(err(
                line_no,
                format!("expected `BASE64 RANK`, found {:?}", truncate(text)),
            ));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| err(line_no, format!("bad base64 {:?}: {e}", truncate(b64))))?;
        if bytes.is_empty() {
            return Err(err(line_no, "empty token".into()));
        }
        let rank: usize = rank_str
            .parse()
            .map_err(|_| err(line_no, format!("bad rank {:?}", truncate(rank_str))))?;
        if rank >= NUM_RANKS {
            return Err(err(
                line_no,
                format!("rank {rank} out of range (expected < {NUM_RANKS})"),
            ));
        }
        if std::mem::replace(&mut seen[rank], true) {
            return Err(err(line_no, format!("rank {rank} appears twice")));
        }
        ranks[rank] = bytes;
        count += 1;
    }

    if count != NUM_RANKS {
        let missing = seen.iter().position(|&s| !s).unwrap_or(0);
        return Err(Error::Tokenize(format!(
            "{origin}: {count} ranks, expected {NUM_RANKS} (first missing rank: {missing})"
        )));
    }
    Ok(ranks)
}

/// Keep error messages short when a line is garbage.
fn truncate(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_line_of_bad_rank() {
        let e = parse(b"IQ== 0\nIg== x\n", "f.tiktoken").unwrap_err();
        assert!(e.to_string().contains("f.tiktoken:2:"), "{e}");
    }

    #[test]
    fn reports_short_table() {
        let e = parse(b"IQ== 0\n\n", "f.tiktoken").unwrap_err();
        assert!(e.to_string().contains("1 ranks"), "{e}");
    }
}
