//! Control tokens: the ids that follow the 151,643 BPE ranks.
//!
//! These ids are only ever inserted by the program (prompt frames, latent
//! slots); user text can never produce them (see `C3Tokenizer::encode_text`).

/// `<|endoftext|>`: end of document / generation stop.
pub const ENDOFTEXT: u32 = 151643;
/// `<|im_start|>`: opens a chat turn.
pub const IM_START: u32 = 151644;
/// `<|im_end|>`: closes a chat turn.
pub const IM_END: u32 = 151645;
/// `<img>`: opens the latent slots.
pub const IMG_START: u32 = 151857;
/// `</img>`: closes the latent slots.
pub const IMG_END: u32 = 151858;
/// `<imgpad>`: one latent slot.
pub const IMG_PAD: u32 = 151859;
/// Number of BPE ranks in `qwen.tiktoken`; control ids start here.
pub const NUM_RANKS: usize = 151643;
/// Whole vocabulary: ranks plus control tokens.
pub const VOCAB_SIZE: usize = 151860;

/// First `<|extra_N|>` id and how many there are.
const EXTRA_FIRST: u32 = 151646;
const EXTRA_COUNT: u32 = 205;

/// Names of the ids after the extras, in id order starting at 151851.
const TAIL: [&str; 9] = [
    "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<img>", "</img>", "<imgpad>",
];

/// `<|extra_0|>`..`<|extra_204|>` as static strings, built once.
fn extra_names() -> &'static [String] {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| (0..EXTRA_COUNT).map(|i| format!("<|extra_{i}|>")).collect())
}

/// The name of a control id (`id >= 151643`), e.g. `name(IM_END) == Some("<|im_end|>")`.
/// `None` for BPE ranks and for ids past the vocabulary.
pub fn name(id: u32) -> Option<&'static str> {
    match id {
        ENDOFTEXT => Some("<|endoftext|>"),
        IM_START => Some("<|im_start|>"),
        IM_END => Some("<|im_end|>"),
        _ if (EXTRA_FIRST..EXTRA_FIRST + EXTRA_COUNT).contains(&id) => {
            Some(extra_names()[(id - EXTRA_FIRST) as usize].as_str())
        }
        _ => {
            let tail_first = EXTRA_FIRST + EXTRA_COUNT;
            let i = id.checked_sub(tail_first)? as usize;
            TAIL.get(i).copied()
        }
    }
}

/// Every control id with its name, in id order.
pub fn all() -> impl Iterator<Item = (u32, &'static str)> {
    (NUM_RANKS as u32..VOCAB_SIZE as u32).filter_map(|id| name(id).map(|n| (id, n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_dense_and_matches_constants() {
        assert_eq!(all().count(), VOCAB_SIZE - NUM_RANKS);
        assert_eq!(name(151646), Some("<|extra_0|>"));
        assert_eq!(name(151850), Some("<|extra_204|>"));
        assert_eq!(name(151851), Some("<ref>"));
        assert_eq!(name(IMG_START), Some("<img>"));
        assert_eq!(name(IMG_END), Some("</img>"));
        assert_eq!(name(IMG_PAD), Some("<imgpad>"));
        assert_eq!(name(VOCAB_SIZE as u32), None);
        assert_eq!(name(151642), None);
    }
}
