//! `model_config.json` of an LCLM checkpoint: the six keys LCLM's loader
//! reads, with every value this implementation does not run refused by name.

use std::path::Path;

use serde_json::{Map, Value};

use crate::{Error, Result};

/// The compression settings of an LCLM cascade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LclmConfig {
    /// N: encoder states mean-pooled into one latent.
    pub compression_ratio: usize,
    /// W: tokens per encoder window (windows are separate forwards).
    pub encoder_window_size: usize,
}

impl LclmConfig {
    /// Latents of `tokens` memory tokens: ceil(T / N) (W % N == 0, so
    /// window ends never split a group).
    pub fn latent_rows(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.compression_ratio)
    }

    /// Most latents one window gives.
    pub fn rows_per_window(&self) -> usize {
        self.encoder_window_size / self.compression_ratio
    }

    /// `[start, len)` of each window of `tokens` ids.
    pub fn windows(&self, tokens: usize) -> Vec<(usize, usize)> {
        (0..tokens)
            .step_by(self.encoder_window_size)
            .map(|s| (s, self.encoder_window_size.min(tokens - s)))
            .collect()
    }
}

fn bad(path: &Path, msg: String) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg,
    }
}

/// A positive integer key (JSON integers only: `4.0` or `"4"` is refused).
fn positive(path: &Path, m: &Map<String, Value>, key: &str) -> Result<Option<usize>> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(Some(n as usize)),
            _ => Err(bad(
                path,
                format!("`{key}` must be a positive integer, found {v}"),
            )),
        },
    }
}

/// A string key that must have the one value implemented; absent means the
/// release's value.
fn only(path: &Path, m: &Map<String, Value>, key: &str, allowed: &str, others: &str) -> Result<()> {
    match m.get(key) {
        None => Ok(()),
        Some(Value::String(s)) if s == allowed => Ok(()),
        Some(v) => Err(bad(
            path,
            format!(
                "unsupported `{key}` {v} (only {allowed:?} is implemented; LCLM also has {others})"
            ),
        )),
    }
}

/// Reads and validates `model_config.json`. Unknown keys are ignored (older
/// copies carry `model_type`, `schema_version`, ...).
pub fn read_model_config(path: &Path) -> Result<LclmConfig> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    parse_model_config(&text, path)
}

/// [`read_model_config`] on the file's text; `path` names it in errors.
pub fn parse_model_config(text: &str, path: &Path) -> Result<LclmConfig> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| bad(path, format!("invalid JSON: {e}")))?;
    let m = v
        .as_object()
        .ok_or_else(|| bad(path, "expected a JSON object".into()))?;
    // Older copies named the ratio `chunk_size`.
    let ratio = match positive(path, m, "compression_ratio")? {
        Some(n) => n,
        None => positive(path, m, "chunk_size")?.ok_or_else(|| {
            bad(
                path,
                "missing `compression_ratio` (tokens per latent)".into(),
            )
        })?,
    };
    let window = positive(path, m, "encoder_window_size")?
        .ok_or_else(|| bad(path, "missing `encoder_window_size`".into()))?;
    if !window.is_multiple_of(ratio) {
        return Err(bad(
            path,
            format!(
                "`encoder_window_size` {window} is not a multiple of `compression_ratio` {ratio}"
            ),
        ));
    }
    only(path, m, "pooling", "mean", "\"eos\" and \"concat\"")?;
    only(path, m, "encoder_mask_type", "causal", "\"bidirectional\"")?;
    only(
        path,
        m,
        "adapter_type",
        "mlp",
        "\"mlp_attn\" and \"attn_mlp\"",
    )?;
    match m.get("boundary_overlap") {
        None => {}
        Some(v) if v.as_u64() == Some(0) => {}
        Some(v) => {
            return Err(bad(
                path,
                format!(
                    "unsupported `boundary_overlap` {v} (only 0: windows without neighbour context)"
                ),
            ))
        }
    }
    Ok(LclmConfig {
        compression_ratio: ratio,
        encoder_window_size: window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<LclmConfig> {
        parse_model_config(s, Path::new("model_config.json"))
    }

    const RELEASE: &str = r#"{"compression_ratio": 4, "encoder_window_size": 1024, "pooling": "mean",
        "encoder_mask_type": "causal", "boundary_overlap": 0, "adapter_type": "mlp"}"#;

    #[test]
    fn release_values_parse_and_count_latents() {
        let c = parse(RELEASE).unwrap();
        assert_eq!(c.compression_ratio, 4);
        // The spec's examples: 1388 tokens -> 256 + 91 latents at 4x.
        assert_eq!(c.windows(1388), vec![(0, 1024), (1024, 364)]);
        assert_eq!(c.latent_rows(1388), 347);
        assert_eq!(c.windows(1025), vec![(0, 1024), (1024, 1)]);
        let c16 = parse(&RELEASE.replace("\"compression_ratio\": 4", "\"compression_ratio\": 16"))
            .unwrap();
        assert_eq!(c16.latent_rows(1388), 87);
    }

    #[test]
    fn refused_values_name_the_key() {
        for (from, to, key) in [
            ("\"mean\"", "\"eos\"", "pooling"),
            ("\"mean\"", "\"concat\"", "pooling"),
            ("\"causal\"", "\"bidirectional\"", "encoder_mask_type"),
            (
                "\"boundary_overlap\": 0",
                "\"boundary_overlap\": 64",
                "boundary_overlap",
            ),
            ("\"mlp\"", "\"mlp_attn\"", "adapter_type"),
            ("\"mlp\"", "\"attn_mlp\"", "adapter_type"),
            ("1024", "1022", "encoder_window_size"),
            (
                "\"compression_ratio\": 4",
                "\"compression_ratio\": 0",
                "compression_ratio",
            ),
        ] {
            let e = parse(&RELEASE.replace(from, to)).unwrap_err().to_string();
            assert!(e.contains(key), "{to}: {e}");
            assert!(e.contains("model_config.json"), "{e}");
        }
        let e = parse(r#"{"encoder_window_size": 1024}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("compression_ratio"), "{e}");
        // The old name of the ratio still works.
        assert_eq!(
            parse(r#"{"chunk_size": 8, "encoder_window_size": 1024}"#)
                .unwrap()
                .compression_ratio,
            8
        );
    }
}
