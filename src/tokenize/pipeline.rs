//! Assemble the `tokenizers::Tokenizer` (NFC -> regex split -> byte level -> BPE).

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::bytemap::encode_bytes;
use super::merges::RankMerges;
use super::rankfile::Ranks;
use super::special;
use crate::{Error, Result};

/// The pre-split regex of the spec (Qwen's), applied after NFC.
pub const SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn tk_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenize(format!("{what}: {e}"))
}

/// Build the full tokenizer from parsed ranks and their derived merges.
pub fn build(ranks: &Ranks, merges: &RankMerges) -> Result<Tokenizer> {
    // Vocab and merges spelled in the byte-level alphabet, as ByteLevel feeds BPE.
    let spelled: Vec<String> = ranks.iter().map(|b| encode_bytes(b)).collect();
    let merge_list: Merges = merges
        .iter()
        .map(|&(l, r)| (spelled[l as usize].clone(), spelled[r as usize].clone()))
        .collect();
    let vocab: Vocab = spelled.into_iter().zip(0u32..).collect();

    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merge_list)
        // tiktoken emits a pre-token that is itself a token as that token
        // before trying any merge; `ignore_merges` does the same (and is faster).
        .ignore_merges(true)
        .build()
        .map_err(|e| tk_err("building BPE model", e))?;

    let split = Split::new(
        SplitPattern::Regex(SPLIT_REGEX.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| tk_err("compiling split regex", e))?;
    // use_regex=false: the Split above already did the splitting.
    let byte_level = ByteLevel::new(false, false, false);

    let mut tok = Tokenizer::new(bpe);
    tok.with_normalizer(Some(NFC))
        .map_err(|e| tk_err("setting normalizer", e))?;
    tok.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), byte_level.into()])));
    tok.with_decoder(Some(ByteLevelDecoder::new(false, false, false)));

    add_control_tokens(&mut tok)?;
    Ok(tok)
}

/// Register the control tokens at their fixed ids, and make the tokenizer
/// treat their spellings in input as plain text.
fn add_control_tokens(tok: &mut Tokenizer) -> Result<()> {
    let tokens: Vec<AddedToken> = special::all()
        .map(|(_, name)| AddedToken::from(name, true))
        .collect();
    tok.add_special_tokens(tokens)
        .map_err(|e| tk_err("adding control tokens", e))?;
    // Without this, a literal "<img>" in a document would become id 151857:
    // a prompt-injection hole. Control ids are inserted by the program only.
    tok.set_encode_special_tokens(true);

    // add_special_tokens reuses an existing vocab id for a name that is also a
    // BPE token, and numbers the rest itself: check every id landed where the spec says.
    for (id, name) in special::all() {
        let got = tok.token_to_id(name);
        if got != Some(id) {
            return Err(Error::Tokenize(format!(
                "control token {name} got id {got:?}, expected {id}"
            )));
        }
    }
    if tok.get_vocab_size(true) != special::VOCAB_SIZE {
        return Err(Error::Tokenize(format!(
            "vocabulary has {} entries, expected {}",
            tok.get_vocab_size(true),
            special::VOCAB_SIZE
        )));
    }
    Ok(())
}
