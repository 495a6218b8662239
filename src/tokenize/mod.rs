//! Tokenizer: Qwen's byte-level BPE (from `qwen.tiktoken`) plus C3's control tokens.
//!
//! Two encoders are built from the one rank file. [`C3Tokenizer::inner`] is
//! the standard `tokenizers` pipeline (NFC -> split regex -> byte level -> BPE
//! with merges derived from the ranks). [`C3Tokenizer::encode_text`] runs the
//! same steps on raw bytes (`nfc`, `presplit`, `bpe`), several times faster;
//! tests check that both give identical ids.
//!
//! Modules: `rankfile` parses the rank file, `table` holds the hash tables,
//! `bpe` is the merge loop, `merges` derives the merge list, `bytemap` spells bytes for the
//! pipeline, `pipeline` assembles it, [`special`] names the control ids and
//! `stream` decodes incrementally.

mod bpe;
mod bytemap;
pub mod gguf;
pub mod hf;
mod merges;
mod nfc;
mod pipeline;
mod presplit;
mod rankfile;
pub mod special;
mod stream;
mod table;

use std::path::Path;

pub use hf::HfTokenizer;
pub use pipeline::SPLIT_REGEX;
pub use stream::{StreamDecoder, TokenBytes};

use crate::{Error, Result};

/// The C3 tokenizer: 151,643 BPE ranks followed by 217 control tokens.
///
/// Text is NFC-normalised before splitting, so `decode(encode_text(t)) == t`
/// holds for NFC text; other text comes back in its NFC form.
pub struct C3Tokenizer {
    tok: tokenizers::Tokenizer,
    bpe: bpe::RankBpe,
    splitter: presplit::PreSplitter,
    /// Raw bytes of every id, concatenated; id `i` is `bytes[offsets[i]..offsets[i + 1]]`.
    /// Decoding straight from bytes skips the byte-level char round trip.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
}

impl C3Tokenizer {
    /// Load `qwen.tiktoken`. Errors name the file (and the line, for a malformed line).
    pub fn from_tiktoken_file(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(Error::io(path))?;
        Self::from_tiktoken_bytes(&data, &path.display().to_string())
    }

    /// Build from the contents of a rank file; `origin` names it in errors.
    pub fn from_tiktoken_bytes(data: &[u8], origin: &str) -> Result<Self> {
        let ranks = rankfile::parse(data, origin)?;
        let bpe = bpe::RankBpe::new(&ranks, origin)?;
        let merges = merges::derive(&ranks, &bpe);
        let tok = pipeline::build(&ranks, &merges)?;
        let splitter = presplit::PreSplitter::new()?;

        let total: usize = ranks.iter().map(Vec::len).sum();
        let mut bytes = Vec::with_capacity(total + 4096);
        let mut offsets = Vec::with_capacity(special::VOCAB_SIZE + 1);
        offsets.push(0);
        for token in &ranks {
            bytes.extend_from_slice(token);
            offsets.push(bytes.len());
        }
        for (_, name) in special::all() {
            bytes.extend_from_slice(name.as_bytes());
            offsets.push(bytes.len());
        }
        Ok(Self {
            tok,
            bpe,
            splitter,
            bytes,
            offsets,
        })
    }

    /// Encode user or document text. It is always plain text: a literal
    /// `<img>` or `<|im_end|>` becomes ordinary tokens, never a control id.
    /// No BOS/EOS is added.
    ///
    /// The text is NFC-normalised first, so `decode(encode_text(t)) == t` only
    /// for NFC text (decomposed "e\u{301}" comes back as "é"). Line ends are
    /// kept as they are ("\r\n" stays "\r\n").
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        let text = nfc::to_nfc(text)?;
        // English averages about 4 bytes per token.
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        let pieces = self.splitter.pieces(&text).map(str::as_bytes);
        self.bpe.encode_pieces(pieces, text.len(), &mut ids);
        // Only ranks can come out of the rank table, never a control id.
        debug_assert!(ids.iter().all(|&id| (id as usize) < special::NUM_RANKS));
        Ok(ids)
    }

    /// Decode ids to text. Control ids decode to their names (e.g. `<|im_end|>`);
    /// byte sequences that are not valid UTF-8 become U+FFFD. Unknown ids are an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let bytes = self
                .token_slice(id)
                .ok_or_else(|| Error::Tokenize(format!("unknown token id {id}")))?;
            out.extend_from_slice(bytes);
        }
        Ok(match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Raw bytes of one token (for control ids, the bytes of its name).
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        self.token_slice(id).map(<[u8]>::to_vec)
    }

    pub(crate) fn token_slice(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (start, end) = (*self.offsets.get(i)?, *self.offsets.get(i + 1)?);
        self.bytes.get(start..end)
    }

    /// The underlying `tokenizers` pipeline (control tokens registered, and
    /// encoded as plain text when they appear in input).
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.tok
    }

    /// 151,860: ranks plus control tokens.
    pub fn vocab_size(&self) -> usize {
        special::VOCAB_SIZE
    }
}
