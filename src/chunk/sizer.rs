//! Chunk sizes in C3 tokens: the count the encoder will see for the chunk.

use text_splitter::ChunkSizer;

use crate::tokenize::C3Tokenizer;

impl ChunkSizer for C3Tokenizer {
    fn size(&self, chunk: &str) -> usize {
        // `encode_text` is the encoder's own path; the `tokenizers` pipeline
        // gives the same ids and is only a fallback for text it rejects.
        match self.encode_text(chunk) {
            Ok(ids) => ids.len(),
            Err(_) => self.inner().size(chunk),
        }
    }
}

impl ChunkSizer for crate::tokenize::HfTokenizer {
    /// LCLM chunks are sized in the encoder's own plain-BPE ids.
    fn size(&self, chunk: &str) -> usize {
        self.encode_text(chunk).map_or(chunk.len(), |ids| ids.len())
    }
}
