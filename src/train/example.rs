//! One training record as the model sees it: encoder ids, decoder ids and
//! labels, built exactly as upstream's dataset builds them (C3-TRAIN.md,
//! "Ids and labels"), except that every character of every turn is plain
//! text: only the `<image>` placeholder of the human turn becomes control ids.

use crate::cascade::SYSTEM;
use crate::tokenize::{special, C3Tokenizer};
use crate::Result;

/// The label of a position that is not trained.
pub const IGNORE: i32 = -100;

/// The human turn's one placeholder for the latents.
pub const IMAGE: &str = "<image>";

/// A record's three turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The text the encoder compresses.
    pub context: String,
    /// The instruction, holding `<image>` once.
    pub human: String,
    /// The decoder's target.
    pub gpt: String,
}

/// The model's view of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// `encode(context) ++ <img> ++ <imgpad> × L ++ </img>`.
    pub enc_ids: Vec<u32>,
    /// Index of the first `<imgpad>` in `enc_ids` (rows replaced by `Q`).
    pub query_start: usize,
    /// The chat frame with the latent block and the target.
    pub dec_ids: Vec<u32>,
    /// Index of the first `<imgpad>` in `dec_ids` (rows replaced by latents).
    pub latent_start: usize,
    /// `IGNORE` up to and including `assistant\n`, then `dec_ids`.
    pub labels: Vec<i32>,
}

impl Example {
    /// Positions whose label trains.
    pub fn target_count(&self) -> usize {
        self.labels.iter().skip(1).filter(|&&l| l != IGNORE).count()
    }
}

fn slots(latent_len: usize) -> impl Iterator<Item = u32> {
    std::iter::once(special::IMG_START)
        .chain(std::iter::repeat_n(special::IMG_PAD, latent_len))
        .chain(std::iter::once(special::IMG_END))
}

/// Builds the ids and labels of `r`. The human turn must hold `<image>`
/// exactly once (records are checked when read).
pub fn build(tok: &C3Tokenizer, latent_len: usize, r: &Record) -> Result<Example> {
    let ctx = tok.encode_text(&r.context)?;
    let query_start = ctx.len() + 1;
    let mut enc_ids = ctx;
    enc_ids.extend(slots(latent_len));

    // Upstream tokenizes the whole conversation at once, so plain text is
    // cut only at control ids: "user\n" + the human text up to <image> is
    // one piece, "assistant\n" + gpt another.
    let mut dec = vec![special::IM_START];
    dec.extend(tok.encode_text(&format!("system\n{SYSTEM}"))?);
    dec.push(special::IM_END);
    dec.push(special::IM_START);
    let user = format!("user\n{}", r.human);
    let mut latent_start = None;
    for (i, piece) in user.split(IMAGE).enumerate() {
        if i > 0 {
            latent_start.get_or_insert(dec.len() + 1);
            dec.extend(slots(latent_len));
        }
        dec.extend(tok.encode_text(piece)?);
    }
    dec.push(special::IM_END);
    dec.push(special::IM_START);
    // Everything up to the third <|im_start|> inclusive, then the length
    // of encode("assistant\n") (which may hide a token that merged with the
    // target's first newline: upstream's behaviour).
    let masked = dec.len() + tok.encode_text("assistant\n")?.len();
    dec.extend(tok.encode_text(&format!("assistant\n{}", r.gpt))?);
    dec.push(special::IM_END);
    let labels = dec
        .iter()
        .enumerate()
        .map(|(i, &id)| if i < masked { IGNORE } else { id as i32 })
        .collect();
    Ok(Example {
        enc_ids,
        query_start,
        latent_start: latent_start.unwrap_or(0),
        dec_ids: dec,
        labels,
    })
}
