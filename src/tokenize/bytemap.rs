//! The GPT-2 byte <-> char table used by byte-level BPE.
//!
//! `tokenizers`' ByteLevel pre-tokenizer rewrites every input byte as one
//! printable char before BPE, so vocab entries must be spelled the same way.
//! Printable Latin-1 bytes stand for themselves; the other 68 bytes are
//! assigned U+0100, U+0101, ... in byte order.

/// True for the bytes that GPT-2 keeps as their own code point.
fn is_self_mapped(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// `BYTE_TO_CHAR[b]` is the char standing for byte `b`.
pub fn byte_to_char() -> &'static [char; 256] {
    static TABLE: std::sync::OnceLock<[char; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut next = 0x100u32;
        for b in 0..=255u8 {
            table[b as usize] = if is_self_mapped(b) {
                char::from(b)
            } else {
                let c = char::from_u32(next).expect("U+0100..U+0143 are valid chars");
                next += 1;
                c
            };
        }
        table
    })
}

/// Spell raw token bytes in the byte-level alphabet.
pub fn encode_bytes(bytes: &[u8]) -> String {
    let table = byte_to_char();
    bytes.iter().map(|&b| table[b as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_points() {
        let t = byte_to_char();
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[0], '\u{100}');
        assert_eq!(t[b' ' as usize], '\u{120}'); // the familiar "Ġ"
        assert_eq!(t[b'\n' as usize], '\u{10A}'); // "Ċ"
        assert_eq!(t[0xAD], '\u{143}');
        let distinct: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }
}
