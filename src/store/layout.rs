//! How many latent rows a chunk has in a store, from the model record: C3
//! gives every chunk the same number; LCLM one per N tokens. The family is
//! carried by the fingerprint (`lclm/r{N}/w{W}/{hex}`; C3 fingerprints are
//! bare hex), so the record layout, and every existing store, is unchanged.

use super::records::ModelRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatentLayout {
    /// Every chunk has `rows` latents (C3's query rows).
    Fixed { rows: u32 },
    /// A chunk of T tokens has ceil(T / ratio) latents (LCLM's pooling).
    Pooled { ratio: u32 },
}

impl LatentLayout {
    pub fn of(model: &ModelRecord) -> Self {
        parse_ratio(&model.fingerprint)
            .map(|ratio| LatentLayout::Pooled { ratio })
            .unwrap_or(LatentLayout::Fixed {
                rows: model.latent_len,
            })
    }

    /// Latent rows of a chunk of `tokens` encoder tokens.
    pub fn rows(&self, tokens: u32) -> u32 {
        match *self {
            LatentLayout::Fixed { rows } => rows,
            LatentLayout::Pooled { ratio } => tokens.div_ceil(ratio.max(1)),
        }
    }
}

/// "a C3" or "an LCLM 4x", for messages.
pub fn family_label(fp: &str) -> String {
    match parse_ratio(fp) {
        Some(n) => format!("an LCLM {n}x"),
        None => "a C3".into(),
    }
}

fn parse_ratio(fp: &str) -> Option<u32> {
    let rest = fp.strip_prefix("lclm/r")?;
    let (n, _) = rest.split_once('/')?;
    n.parse().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(fp: &str) -> ModelRecord {
        ModelRecord {
            fingerprint: fp.into(),
            latent_len: 256,
            hidden_size: 16,
        }
    }

    #[test]
    fn family_from_fingerprint() {
        assert_eq!(
            LatentLayout::of(&model("abc123")),
            LatentLayout::Fixed { rows: 256 }
        );
        let l = LatentLayout::of(&model("lclm/r4/w1024/abc"));
        assert_eq!(l, LatentLayout::Pooled { ratio: 4 });
        assert_eq!(l.rows(1024), 256);
        assert_eq!(l.rows(25), 7);
        assert_eq!(
            LatentLayout::of(&model("lclm/rx/w1/a")),
            LatentLayout::Fixed { rows: 256 }
        );
    }
}
