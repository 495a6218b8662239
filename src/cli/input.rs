//! Reading a user's text from a file or stdin, with errors that name the source.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// Reads `FILE` or `-` (stdin) as UTF-8 text; refuses empty input.
pub fn read_text(source: &Path) -> Result<String> {
    let (label, bytes) = if source == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        ("stdin".to_string(), buf)
    } else {
        let bytes =
            std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
        (source.display().to_string(), bytes)
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => bail!(
            "{label}: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    };
    if text.trim().is_empty() {
        bail!("{label}: the text is empty");
    }
    Ok(text)
}
