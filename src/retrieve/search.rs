//! `c3 search`: the chunks that match a query best (BM25), with where they
//! are and a short snippet of their stored text. No model is involved.

use serde::Serialize;

use super::ChunkIndex;
use crate::store::Store;
use crate::{Error, Result};

/// Characters of a snippet (about).
const SNIPPET_CHARS: usize = 240;

/// One chunk found.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub doc: u64,
    pub source: String,
    pub chunk: u32,
    /// BM25 score against the query.
    pub score: f32,
    /// Byte range of the chunk in its document.
    pub start: u64,
    pub end: u64,
    /// Up to ~240 characters of the chunk's text around the first query
    /// word it contains (whitespace runs shown as one space).
    pub snippet: String,
}

/// The `top_k` best chunks for `query` among `docs` (every document when
/// `docs` is `None`; none when it is `Some` and empty), best first.
pub fn search(
    store: &Store,
    query: &str,
    docs: Option<&[u64]>,
    top_k: usize,
) -> Result<Vec<SearchHit>> {
    if query.trim().is_empty() {
        return Err(Error::Input("the query is empty".into()));
    }
    if top_k == 0 {
        return Err(Error::Input("top_k must be at least 1".into()));
    }
    let restrict = match docs {
        Some([]) => return Ok(Vec::new()),
        Some(ids) => ids,
        None => &[][..],
    };
    let (ix, _) = ChunkIndex::open_synced(store, false)?;
    let hits = ix.search(query, restrict, top_k)?;
    hits.into_iter()
        .map(|h| {
            let d = store.document(h.doc)?.ok_or_else(|| Error::NoDocument {
                spec: h.doc.to_string(),
                store: store.dir().to_path_buf(),
            })?;
            let c = store.chunk_record(h.doc, h.chunk)?;
            let text = store.chunk_text(&c)?;
            Ok(SearchHit {
                doc: h.doc,
                source: d.source,
                chunk: h.chunk,
                score: h.score,
                start: c.start,
                end: c.end,
                snippet: snippet(&text, query),
            })
        })
        .collect()
}

/// About [`SNIPPET_CHARS`] characters of `text` around the first word of
/// `query` (3 letters or more, any case) it contains, else its start.
pub fn snippet(text: &str, query: &str) -> String {
    let lower = text.to_lowercase();
    // Lower-casing may change byte lengths: search it, cut the original
    // only where the two agree (plain ASCII), else from the start.
    let at = if lower.len() == text.len() {
        query
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 3)
            .filter_map(|w| lower.find(&w.to_lowercase()))
            .min()
            .unwrap_or(0)
    } else {
        0
    };
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let pos = chars.partition_point(|(i, _)| *i < at);
    let from = pos.saturating_sub(SNIPPET_CHARS / 3);
    let to = (from + SNIPPET_CHARS).min(chars.len());
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    let mut space = false;
    for &(_, c) in &chars[from..to] {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() && !out.ends_with('…') {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    if to < chars.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_centre_on_the_first_query_word() {
        let text = format!(
            "{} The White Rabbit ran.\n\n  Away {}",
            "x ".repeat(200),
            "y ".repeat(200)
        );
        let s = snippet(&text, "who is the white rabbit?");
        assert!(s.contains("The White Rabbit ran. Away"), "{s}");
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.chars().count() <= SNIPPET_CHARS + 2);
        assert_eq!(snippet("short text", "nothing"), "short text");
        // Multi-byte text is cut on character boundaries.
        let zh = "猫".repeat(500);
        assert!(snippet(&zh, "猫猫猫").chars().count() <= SNIPPET_CHARS + 2);
    }
}
