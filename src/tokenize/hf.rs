//! A Hugging Face `tokenizer.json` (LCLM's encoder and decoder, plain answer
//! models), with this project's rule that text is data: [`HfTokenizer::encode_text`]
//! runs normaliser, pre-tokeniser and BPE only, so no added token (special
//! or not) can be matched inside a document or a question.
//!
//! `encode_special_tokens(true)` is not enough for that: the `tokenizers`
//! crate still matches the non-special added tokens (`<think>`,
//! `<tool_call>`, ...) with it, so the added-token pass is skipped entirely.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::bytemap::byte_to_char;
use super::stream::TokenBytes;
use crate::{Error, Result};

/// Parses `tokenizer.json` text. The `tokenizers` crate panics on some
/// damaged sections (its decoder reader `expect`s its helper, issue 21's
/// property test found it with one NUL byte): the JSON's syntax is checked
/// first, and a panic left in the library becomes an error naming the file.
fn parse_tokenizer(json: &str, origin: &Path) -> Result<tokenizers::Tokenizer> {
    let err = |msg: String| Error::Checkpoint {
        path: origin.to_path_buf(),
        msg: format!("tokenizer: {msg}"),
    };
    serde_json::from_str::<serde::de::IgnoredAny>(json)
        .map_err(|e| err(format!("not valid JSON: {e}")))?;
    match std::panic::catch_unwind(|| json.parse::<tokenizers::Tokenizer>()) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(err(e.to_string())),
        Err(p) => {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a malformed section".into());
            Err(err(format!(
                "the tokenizers library could not read it ({why})"
            )))
        }
    }
}

pub struct HfTokenizer {
    tok: tokenizers::Tokenizer,
    path: PathBuf,
    /// Raw bytes of every id, concatenated (added tokens: their content);
    /// id `i` is `bytes[offsets[i]..offsets[i + 1]]` when `known[i]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    known: Vec<bool>,
    /// Added tokens by content.
    added: HashMap<String, u32>,
}

impl HfTokenizer {
    /// Loads `tokenizer.json`; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                msg: "missing tokenizer file".into(),
            });
        }
        let json = std::fs::read_to_string(path).map_err(Error::io(path))?;
        Self::from_json(&json, path)
    }

    /// A tokenizer given as `tokenizer.json` text (e.g. rebuilt from a GGUF
    /// file's metadata); `origin` names it in errors.
    pub fn from_json(json: &str, origin: &Path) -> Result<Self> {
        let tok = parse_tokenizer(json, origin)?;
        Ok(Self::from_tokenizer(tok, origin))
    }

    fn from_tokenizer(tok: tokenizers::Tokenizer, path: &Path) -> Self {
        let added: HashMap<String, u32> = tok
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, t)| (t.content, id))
            .collect();
        let chars: HashMap<char, u8> = byte_to_char()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let size = tok.get_vocab_size(true);
        let mut bytes = Vec::with_capacity(size * 7);
        let mut offsets = Vec::with_capacity(size + 1);
        let mut known = Vec::with_capacity(size);
        offsets.push(0);
        let decoder = tok.get_added_tokens_decoder();
        for id in 0..size as u32 {
            match (decoder.get(&id), tok.id_to_token(id)) {
                (Some(a), _) => {
                    bytes.extend_from_slice(a.content.as_bytes());
                    known.push(true);
                }
                (None, Some(spelled)) => {
                    for c in spelled.chars() {
                        match chars.get(&c) {
                            Some(&b) => bytes.push(b),
                            // Not byte-level: the char stands for itself.
                            None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                    known.push(true);
                }
                (None, None) => known.push(false),
            }
            offsets.push(bytes.len());
        }
        Self {
            tok,
            path: path.to_path_buf(),
            bytes,
            offsets,
            known,
            added,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ids of plain text: no added token is ever matched in it. No
    /// BOS/EOS and no post-processor template are applied.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        use tokenizers::{Model, Normalizer, OffsetType, PreTokenizedString, PreTokenizer};
        let err = |e: tokenizers::Error| Error::Tokenize(e.to_string());
        let mut pre = PreTokenizedString::from(text);
        if let Some(n) = self.tok.get_normalizer() {
            pre.normalize(|s| n.normalize(s)).map_err(err)?;
        }
        if let Some(p) = self.tok.get_pre_tokenizer() {
            p.pre_tokenize(&mut pre).map_err(err)?;
        }
        let model = self.tok.get_model();
        pre.tokenize(|s| model.tokenize(s.get())).map_err(err)?;
        let enc = pre.into_encoding(None, 0, OffsetType::Byte).map_err(err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids; added tokens come back as their content (e.g.
    /// `<|im_end|>`), invalid UTF-8 as U+FFFD. Unknown ids are an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let b = self
                .token_slice(id)
                .ok_or_else(|| Error::Tokenize(format!("unknown token id {id}")))?;
            out.extend_from_slice(b);
        }
        Ok(match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// The id of an added token, by its content.
    pub fn added_id(&self, content: &str) -> Option<u32> {
        self.added.get(content).copied()
    }

    /// Ids including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.known.len()
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.tok
    }
}

impl TokenBytes for HfTokenizer {
    fn token_slice(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        if !*self.known.get(i)? {
            return None;
        }
        self.bytes.get(self.offsets[i]..self.offsets[i + 1])
    }
}
