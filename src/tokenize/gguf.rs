//! A Qwen tokenizer rebuilt from a GGUF file's metadata (`tokenizer.ggml.*`,
//! as llama.cpp writes it): the same byte-level BPE as the checkpoint's
//! `tokenizer.json`, assembled as one and loaded through `tokenizers`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde_json::json;

use super::{HfTokenizer, SPLIT_REGEX};
use crate::{Error, Result};

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// The tokenizer in `md` (a GGUF file's metadata); `origin` names the file.
pub fn from_gguf_metadata(md: &HashMap<String, Value>, origin: &Path) -> Result<HfTokenizer> {
    HfTokenizer::from_json(&tokenizer_json(md, origin)?, origin)
}

fn bad(origin: &Path, msg: String) -> Error {
    Error::Checkpoint {
        path: origin.to_path_buf(),
        msg,
    }
}

fn strings(md: &HashMap<String, Value>, key: &str, origin: &Path) -> Result<Vec<String>> {
    let v = md
        .get(key)
        .ok_or_else(|| bad(origin, format!("no {key} in the GGUF metadata")))?;
    let arr = v
        .to_vec()
        .map_err(|_| bad(origin, format!("{key} is not an array")))?;
    arr.iter()
        .enumerate()
        .map(|(i, s)| {
            s.to_string()
                .cloned()
                .map_err(|_| bad(origin, format!("{key}[{i}] is not a string")))
        })
        .collect()
}

/// `tokenizer.json` text for the metadata's vocabulary, merges and added
/// tokens, with Qwen's normalizer, split regex and byte-level steps.
pub fn tokenizer_json(md: &HashMap<String, Value>, origin: &Path) -> Result<String> {
    let model = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str);
    if model != Some("gpt2") {
        return Err(bad(
            origin,
            format!(
                "tokenizer.ggml.model is {model:?}: c3 reads Qwen GGUF files, whose \
                 tokenizer is byte-level BPE (\"gpt2\")"
            ),
        ));
    }
    if let Some(pre) = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
    {
        if pre != "qwen2" {
            return Err(bad(
                origin,
                format!(
                    "tokenizer.ggml.pre is {pre:?}: c3 reads Qwen GGUF files (pre-tokenizer \
                     \"qwen2\")"
                ),
            ));
        }
    }
    let tokens = strings(md, "tokenizer.ggml.tokens", origin)?;
    let merges = strings(md, "tokenizer.ggml.merges", origin)?;
    let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
        None => vec![NORMAL; tokens.len()],
        Some(v) => v
            .to_vec()
            .map_err(|_| bad(origin, "tokenizer.ggml.token_type is not an array".into()))?
            .iter()
            .map(|t| t.to_i32().unwrap_or(NORMAL))
            .collect(),
    };
    if types.len() != tokens.len() {
        return Err(bad(
            origin,
            format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                types.len(),
                tokens.len()
            ),
        ));
    }
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (id, (tok, &ty)) in tokens.iter().zip(&types).enumerate() {
        match ty {
            NORMAL => {
                vocab.insert(tok.clone(), json!(id));
            }
            CONTROL | USER_DEFINED => added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty == CONTROL,
            })),
            // Unused / padding entries have no spelling to match.
            _ => {}
        }
    }
    let merges: Vec<[&str; 2]> = merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| [a, b])
                .ok_or_else(|| bad(origin, format!("tokenizer.ggml.merges[{i}] is not \"a b\"")))
        })
        .collect::<Result<_>>()?;
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                            "trim_offsets": false, "use_regex": false});
    let t = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Isolated",
             "invert": false},
            byte_level,
        ]},
        "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    Ok(t.to_string())
}
