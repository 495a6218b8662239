//! Records made from the user's own memory: the current store's chunks
//! (`--from-store`) or files chunked as `c3 ingest` chunks them
//! (`--from-text`), each chunk becoming a reconstruction record or a
//! continuation record (`--mix reconstruct=0.7,continue=0.3`).

use super::example::Record;
use super::records::Origin;
use super::rng::Rng;
use crate::chunk::{Chunker, DocKind};
use crate::ingest::{discover, Input};
use crate::store::Store;
use crate::tokenize::C3Tokenizer;
use crate::{Error, Result};
use std::path::PathBuf;

/// The paper's reconstruction instruction, as upstream's records hold it.
pub const REPEAT_HUMAN: &str = "<image>\nRepeat the text: ";
/// A continuation record's human turn: the latents alone.
pub const CONTINUE_HUMAN: &str = "<image>";

/// Shares of reconstruction and continuation records.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mix {
    pub reconstruct: f64,
    pub continuation: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            reconstruct: 0.7,
            continuation: 0.3,
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;
    /// `reconstruct=0.7,continue=0.3` (either may be left out: 0).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut m = Mix {
            reconstruct: 0.0,
            continuation: 0.0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected NAME=SHARE"))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the share is not a number"))?;
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("`{part}`: the share must be 0 or more"));
            }
            match k.trim() {
                "reconstruct" => m.reconstruct = v,
                "continue" => m.continuation = v,
                other => {
                    return Err(format!(
                        "unknown record kind `{other}` (expected reconstruct, continue)"
                    ))
                }
            }
        }
        if m.reconstruct + m.continuation <= 0.0 {
            return Err("the shares add up to 0".into());
        }
        Ok(m)
    }
}

/// A chunk of text and where it came from.
pub struct Chunk {
    pub label: String,
    pub text: String,
}

/// Every chunk of every document of `store`, in document order.
pub fn store_chunks(store: &Store) -> Result<Vec<Chunk>> {
    let mut out = Vec::new();
    for doc in store.documents() {
        let doc = doc?;
        for ord in 0..doc.chunk_count {
            let rec = store.chunk_record(doc.id, ord)?;
            out.push(Chunk {
                label: format!("store:{}#{ord}", doc.source),
                text: store.chunk_text(&rec)?,
            });
        }
    }
    Ok(out)
}

/// The files under `paths` (walked as `c3 ingest` walks them) chunked into
/// windows of at most `chunk_tokens` tokens.
pub fn text_chunks(
    paths: &[PathBuf],
    tok: &C3Tokenizer,
    chunk_tokens: usize,
) -> Result<Vec<Chunk>> {
    let inputs: Vec<Input> = paths.iter().cloned().map(Input::Path).collect();
    let (files, problems) = discover(&inputs);
    if let Some(p) = problems.iter().find(|p| p.fatal) {
        return Err(Error::Input(format!(
            "--from-text {}: {}",
            p.source, p.error
        )));
    }
    let chunker = Chunker::new(tok, chunk_tokens)?;
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f.path).map_err(Error::io(&f.path))?;
        let Ok(text) = String::from_utf8(bytes) else {
            // A binary file in a walked directory is left out, as ingest does;
            // one named on the command line is an error.
            if f.explicit {
                return Err(Error::Input(format!(
                    "--from-text {}: not UTF-8 text",
                    f.path.display()
                )));
            }
            continue;
        };
        for (i, c) in chunker
            .split(&text, DocKind::from_path(&f.path))
            .iter()
            .enumerate()
        {
            let piece = &text[c.start..c.end];
            if piece.trim().is_empty() {
                continue;
            }
            out.push(Chunk {
                label: format!("{}#{i}", f.path.display()),
                text: piece.to_string(),
            });
        }
    }
    Ok(out)
}

/// Splits `text` at a token boundary at a fraction `frac` of its tokens,
/// moved forward until the first part is whole UTF-8; None when it cannot
/// be split into two non-blank parts.
fn split_at_token(tok: &C3Tokenizer, text: &str, frac: f64) -> Result<Option<(String, String)>> {
    let ids = tok.encode_text(text)?;
    if ids.len() < 2 {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    let mut ends = Vec::with_capacity(ids.len());
    for &id in &ids {
        bytes.extend(tok.token_bytes(id).unwrap_or_default());
        ends.push(bytes.len());
    }
    let first = ((ids.len() as f64 * frac) as usize).clamp(1, ids.len() - 1);
    for k in first..ids.len() {
        let (a, b) = bytes.split_at(ends[k - 1]);
        if let (Ok(a), Ok(b)) = (std::str::from_utf8(a), std::str::from_utf8(b)) {
            if a.trim().is_empty() || b.is_empty() {
                return Ok(None);
            }
            return Ok(Some((a.to_string(), b.to_string())));
        }
    }
    Ok(None)
}

/// Records from chunks: a seeded choice of `round(share × n)` chunks become
/// continuation records (the context is the first U(0.4, 0.7) of the
/// chunk's tokens, the target the rest), the others reconstruction records.
pub fn chunk_records(
    chunks: Vec<Chunk>,
    tok: &C3Tokenizer,
    mix: Mix,
    seed: u64,
) -> Result<Vec<(Origin, Record)>> {
    let n = chunks.len();
    let share = mix.continuation / (mix.reconstruct + mix.continuation);
    let continued = (share * n as f64).round() as usize;
    let mut rng = Rng::new(seed, "mix");
    let mut is_cont = vec![false; n];
    for &i in rng.permutation(n).iter().take(continued) {
        is_cont[i] = true;
    }
    let mut out = Vec::with_capacity(n);
    for (index, (c, cont)) in chunks.into_iter().zip(is_cont).enumerate() {
        let frac = 0.4 + 0.3 * rng.next_f64();
        let split = match cont {
            true => split_at_token(tok, &c.text, frac)?,
            false => None,
        };
        let rec = match split {
            Some((context, gpt)) => Record {
                context,
                human: CONTINUE_HUMAN.into(),
                gpt,
            },
            None => Record {
                context: c.text.clone(),
                human: REPEAT_HUMAN.into(),
                gpt: c.text,
            },
        };
        let origin = Origin {
            source: c.label,
            line: 0,
            index,
        };
        out.push((origin, rec));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Mix;

    #[test]
    fn mix_parses_and_refuses_nonsense() {
        let m: Mix = "reconstruct=0.7,continue=0.3".parse().unwrap();
        assert_eq!((m.reconstruct, m.continuation), (0.7, 0.3));
        assert_eq!("continue=1".parse::<Mix>().unwrap().reconstruct, 0.0);
        assert!("reconstruct=0".parse::<Mix>().is_err());
        assert!("qa=1".parse::<Mix>().is_err());
        assert!("reconstruct=-1,continue=1".parse::<Mix>().is_err());
    }
}
