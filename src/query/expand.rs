//! `expand`: a stored chunk back to text with "Repeat the text: ".

use super::stream::stream_generation;
use crate::cascade::LatentReader;
use crate::generate::{GenOptions, Generation};
use crate::store::Store;
use crate::{Error, Result};

/// Reconstructs chunk `chunk` of document `doc` from its stored latents
/// with the family's reconstruction prompt (C3: "Repeat the text: ", the
/// paper's task; a family without one refuses). Streams printable pieces to
/// `on_text`; their concatenation equals the returned `text`.
pub fn expand_chunk(
    store: &Store,
    reader: &dyn LatentReader,
    doc: u64,
    chunk: u32,
    opts: &GenOptions,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<Generation> {
    let d = store.document(doc)?.ok_or_else(|| Error::NoDocument {
        spec: doc.to_string(),
        store: store.dir().to_path_buf(),
    })?;
    if chunk >= d.chunk_count {
        return Err(Error::NoChunk {
            doc,
            chunk,
            count: d.chunk_count,
        });
    }
    let raw = store.latent(doc, chunk)?;
    stream_generation(
        reader.token_bytes(),
        reader.end_signal(),
        |_| true,
        &mut on_text,
        |cb| reader.reconstruct(&raw, opts, cb),
    )
}
