//! Split a document into windows of at most N tokens with `text-splitter`.
//!
//! Chunks are never trimmed, so they tile the document exactly: every byte
//! belongs to one chunk, in order. That lets a document be rebuilt from its
//! chunks and lets `c3 check` verify it against the content hash.

mod lang;
mod sizer;

pub use lang::{DocKind, Lang};
use text_splitter::{ChunkConfig, ChunkSizer, CodeSplitter, MarkdownSplitter, TextSplitter};

use crate::{Error, Result};

/// Default window: C3 keeps ~99% fidelity up to ~1000 tokens per 32 latents.
pub const DEFAULT_CHUNK_TOKENS: usize = 1000;
/// Above this the end of a window is reconstructed poorly.
pub const WARN_CHUNK_TOKENS: usize = 1300;

/// One window: bytes `start..end` of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub start: usize,
    pub end: usize,
    pub tokens: usize,
}

/// Splits documents with a token-counting sizer.
pub struct Chunker<S> {
    sizer: S,
    max_tokens: usize,
}

impl<S: ChunkSizer> Chunker<S> {
    pub fn new(sizer: S, max_tokens: usize) -> Result<Self> {
        if max_tokens == 0 {
            return Err(Error::Input("chunk size must be at least 1 token".into()));
        }
        Ok(Chunker { sizer, max_tokens })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Split `text` according to `kind`. Code whose grammar cannot be loaded
    /// falls back to the text splitter.
    pub fn split(&self, text: &str, kind: DocKind) -> Vec<Chunk> {
        let config = ChunkConfig::new(self.max_tokens)
            .with_sizer(&self.sizer)
            .with_trim(false);
        let pieces: Vec<(usize, &str)> = match kind {
            DocKind::Text => TextSplitter::new(config).chunk_indices(text).collect(),
            DocKind::Markdown => MarkdownSplitter::new(config).chunk_indices(text).collect(),
            DocKind::Code(lang) => match CodeSplitter::new(lang.grammar(), config) {
                Ok(s) => s.chunk_indices(text).collect(),
                Err(_) => {
                    let config = ChunkConfig::new(self.max_tokens)
                        .with_sizer(&self.sizer)
                        .with_trim(false);
                    TextSplitter::new(config).chunk_indices(text).collect()
                }
            },
        };
        let chunks = pieces
            .into_iter()
            .map(|(start, s)| Chunk {
                start,
                end: start + s.len(),
                tokens: self.sizer.size(s),
            })
            .collect();
        self.merge_fragments(text, chunks)
    }

    /// Fold fragments (under a quarter window) into a neighbour when the
    /// union still fits. text-splitter never crosses a stronger boundary, so
    /// a heading between two such boundaries ("Chapter 3" after a chapter
    /// break) would otherwise cost a whole 32-latent encode on its own.
    fn merge_fragments(&self, text: &str, chunks: Vec<Chunk>) -> Vec<Chunk> {
        let small = self.max_tokens / 4;
        let joined = |a: &Chunk, b: &Chunk| {
            let tokens = self.sizer.size(&text[a.start..b.end]);
            (tokens <= self.max_tokens).then_some(Chunk {
                start: a.start,
                end: b.end,
                tokens,
            })
        };
        let mut out: Vec<Chunk> = Vec::with_capacity(chunks.len());
        let mut iter = chunks.into_iter().peekable();
        while let Some(mut c) = iter.next() {
            // Forward first: a heading belongs with what follows it.
            while c.tokens < small {
                match iter.peek().and_then(|n| joined(&c, n)) {
                    Some(m) => {
                        c = m;
                        iter.next();
                    }
                    None => break,
                }
            }
            if c.tokens < small {
                if let Some(m) = out.last().and_then(|p| joined(p, &c)) {
                    *out.last_mut().expect("checked by last()") = m;
                    continue;
                }
            }
            out.push(c);
        }
        out
    }
}
