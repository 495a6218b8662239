//! `expand`: a stored chunk back to text with "Repeat the text: ".

use super::stream::stream_generation;
use crate::decode::{C3Decoder, GenOptions, Generation};
use crate::store::Store;
use crate::{Error, Result};

/// Reconstructs chunk `chunk` of document `doc` from its stored latents
/// with "Repeat the text: " (the paper's task). Streams printable pieces to
/// `on_text`; their concatenation equals the returned `text`.
pub fn expand_chunk(
    store: &Store,
    dec: &C3Decoder,
    doc: u64,
    chunk: u32,
    opts: &GenOptions,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<Generation> {
    let d = store.document(doc)?.ok_or_else(|| {
        Error::Input(format!(
            "no document {doc} in store {}",
            store.dir().display()
        ))
    })?;
    if chunk >= d.chunk_count {
        return Err(Error::Input(format!(
            "document {doc} has {} chunks (0..={}); there is no chunk {chunk}",
            d.chunk_count,
            d.chunk_count.saturating_sub(1)
        )));
    }
    let raw = store.latent(doc, chunk)?;
    stream_generation(
        dec.tokenizer(),
        Some(crate::tokenize::special::ENDOFTEXT),
        |_| true,
        &mut on_text,
        |cb| dec.repeat(&raw, opts, cb),
    )
}
