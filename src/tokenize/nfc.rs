//! NFC normalisation for the fast encode path, identical to the pipeline's.

use std::borrow::Cow;

use tokenizers::normalizers::NFC;
use tokenizers::{NormalizedString, Normalizer};
use unicode_normalization_alignments::{is_nfc_quick, IsNormalized};

use crate::{Error, Result};

/// `text` in NFC, borrowed when it already is (the common case).
pub fn to_nfc(text: &str) -> Result<Cow<'_, str>> {
    // Every char below U+0300 is NFC-stable and cannot combine with a
    // neighbour below U+0300; such chars have UTF-8 lead bytes below 0xCC.
    if text.bytes().all(|b| b < 0xCC) {
        return Ok(Cow::Borrowed(text));
    }
    if is_nfc_quick(text.chars()) == IsNormalized::Yes {
        return Ok(Cow::Borrowed(text));
    }
    // Rare: use the very normalizer the tokenizers pipeline runs.
    let mut n = NormalizedString::from(text);
    NFC.normalize(&mut n)
        .map_err(|e| Error::Tokenize(format!("NFC: {e}")))?;
    Ok(Cow::Owned(n.get().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes_only_when_needed() {
        assert!(matches!(to_nfc("plain ascii").unwrap(), Cow::Borrowed(_)));
        assert!(matches!(to_nfc("中文 é 🙂").unwrap(), Cow::Borrowed(_)));
        assert_eq!(to_nfc("e\u{301}").unwrap(), "\u{e9}");
        assert_eq!(to_nfc("x\u{301}").unwrap(), "x\u{301}");
    }
}
